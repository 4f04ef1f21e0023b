//! From config files to a PUSH_REPLY, through this crate's public API only: a server
//! config loaded the way systemd starts OpenVPN (`--cd DIR --config NAME.conf`), a unified
//! client profile with inline blocks, TLS contexts built from both, an in-memory handshake,
//! key-method-2 records both ways, admission with client-config-dir, and the PUSH_REPLY the
//! client parses back.

use std::path::PathBuf;

use control::config::{self, DataCipher, Role, Source, TlsWrap};
use control::key_method::{
    Credentials, KeyMethod2, KeySource, OccParams, PeerInfo, PeerInfoBuilder, Sender,
};
use control::pool::{AdmitError, ClientAddressing};
use control::push::{
    ClientPush, ControlMessage, KeyDerivation, PushReplyAssembler, build_push_reply, negotiate,
    split_incoming,
};
use control::tls::{TlsContext, export_data_keys_any, peer_identity};
use rustls::Connection;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/config")
}

fn server_options() -> config::Options {
    let args = [
        "--cd".to_string(),
        dir().display().to_string(),
        "--config".into(),
        "server.conf".into(),
    ];
    config::load_args(&args).unwrap()
}

fn client_options(cert: &str, key: &str) -> config::Options {
    let text = std::fs::read_to_string(dir().join("client.ovpn")).unwrap();
    let tls = dir().join("../tls");
    let text = text
        .replace(
            &std::fs::read_to_string(tls.join("client1.crt")).unwrap(),
            &std::fs::read_to_string(tls.join(cert)).unwrap(),
        )
        .replace(
            &std::fs::read_to_string(tls.join("client1.key")).unwrap(),
            &std::fs::read_to_string(tls.join(key)).unwrap(),
        );
    config::parse_str("client.ovpn", &text).unwrap()
}

fn transfer(from: &mut Connection, to: &mut Connection) -> Result<(), rustls::Error> {
    let mut buf = Vec::new();
    while from.wants_write() {
        from.write_tls(&mut buf).unwrap();
    }
    let mut rd = &buf[..];
    while !rd.is_empty() {
        to.read_tls(&mut rd).unwrap();
        to.process_new_packets()?;
    }
    Ok(())
}

fn pump(c: &mut Connection, s: &mut Connection) -> Result<(), rustls::Error> {
    for _ in 0..64 {
        transfer(c, s)?;
        transfer(s, c)?;
        if !c.is_handshaking() && !s.is_handshaking() && !c.wants_write() && !s.wants_write() {
            return Ok(());
        }
    }
    panic!("handshake did not finish");
}

/// Writes plaintext on one side and returns what the other side reads.
fn send(from: &mut Connection, to: &mut Connection, data: &[u8]) -> Vec<u8> {
    use std::io::{Read, Write};
    from.writer().write_all(data).unwrap();
    pump(from, to).unwrap();
    let mut out = vec![0u8; 8192];
    let n = to.reader().read(&mut out).unwrap();
    out.truncate(n);
    out
}

#[test]
fn files_load_with_cd_and_inline_blocks() {
    let s = server_options();
    assert_eq!(s.role, Role::Server);
    assert_eq!(s.ca, Some(Source::File(dir().join("../tls/ca.crt"))));
    assert_eq!(s.client_config_dir, Some(dir().join("ccd")));
    assert!(matches!(s.tls_wrap(), TlsWrap::Crypt { .. }));
    assert_eq!(
        s.global_push_list(),
        [
            "route 192.168.10.0 255.255.255.0",
            "dhcp-option DNS 10.8.0.1",
            "tun-ipv6",
            "route-gateway 10.8.0.1",
            "topology subnet",
            "ping 10",
            "ping-restart 60"
        ]
    );
    let c = client_options("client1.crt", "client1.key");
    assert_eq!(c.role, Role::Client);
    assert!(matches!(c.ca, Some(Source::Inline(_))));
    assert!(matches!(
        c.tls_wrap(),
        TlsWrap::Crypt {
            key: Source::Inline(_)
        }
    ));
    assert_eq!(c.remotes[0].host, "127.0.0.1");
}

#[test]
fn config_to_push_reply_end_to_end() {
    let so = server_options();
    let co = client_options("client1.crt", "client1.key");
    let server_tls = TlsContext::from_options(&so).unwrap();
    let client_tls = TlsContext::from_options(&co).unwrap();
    let mut c = client_tls.new_session().unwrap();
    let mut s = server_tls.new_session().unwrap();
    pump(&mut c, &mut s).unwrap();
    assert_eq!(
        &export_data_keys_any(&c).unwrap()[..],
        &export_data_keys_any(&s).unwrap()[..]
    );
    let Connection::Server(sc) = &s else {
        unreachable!()
    };
    let cn = peer_identity(sc).unwrap().common_name;
    assert_eq!(cn, "client1");

    // Key method 2: the client's record first, then the server's.
    let client_occ = OccParams::from_options(&co);
    let rec = KeyMethod2 {
        key_source: KeySource::random(Sender::Client).unwrap(),
        options: client_occ.options_string(),
        credentials: Credentials::Absent,
        peer_info: Some(PeerInfoBuilder::client(&co.data_ciphers).build()),
    };
    let got = send(&mut c, &mut s, &rec.encode(Sender::Client).unwrap());
    let from_client = KeyMethod2::parse(&got, Sender::Client).unwrap();
    assert_eq!(
        from_client.options,
        OccParams::from_options(&so).expected_remote_string()
    );
    let srec = KeyMethod2 {
        key_source: KeySource::random(Sender::Server).unwrap(),
        options: OccParams::from_options(&so).options_string(),
        credentials: Credentials::Absent,
        peer_info: None,
    };
    let got = send(&mut s, &mut c, &srec.encode(Sender::Server).unwrap());
    assert_eq!(
        KeyMethod2::parse(&got, Sender::Server).unwrap().options,
        client_occ.expected_remote_string()
    );

    // The server admits client1 (ccd: fixed address + iroute) and pushes.
    let peer = PeerInfo::parse(from_client.peer_info.as_deref().unwrap());
    let n = negotiate(
        &so.data_ciphers,
        so.data_ciphers_fallback,
        &peer,
        &from_client.options,
    )
    .unwrap();
    assert_eq!(
        (n.cipher, n.key_derivation),
        (DataCipher::Aes256Gcm, KeyDerivation::TlsEkm)
    );
    let mut adm = ClientAddressing::from_options(&so).unwrap();
    let admitted = adm.admit(&cn).unwrap();
    assert_eq!(admitted.iroutes.len(), 1);
    let per = ClientPush {
        ifconfig_ipv6: admitted.ipv6,
        ifconfig: admitted.ipv4,
        peer_id: 1,
        negotiated: n,
        tun_mtu: so.tun_mtu,
    };
    let msgs = build_push_reply(&admitted.push, &per.options()).unwrap();
    assert_eq!(
        msgs,
        [
            "PUSH_REPLY,route 192.168.10.0 255.255.255.0,dhcp-option DNS 10.8.0.1,tun-ipv6,route-gateway 10.8.0.1,topology subnet,ping 10,ping-restart 60,route 192.168.60.0 255.255.255.0,ifconfig-ipv6 fd00:8::1000/64 fd00:8::1,ifconfig 10.8.0.10 255.255.255.0,peer-id 1,cipher AES-256-GCM,protocol-flags cc-exit tls-ekm,tun-mtu 1500"
        ]
    );

    // Over TLS to the client, which reads it back into typed options.
    let mut wire = Vec::new();
    for m in &msgs {
        wire.extend(ControlMessage::parse(m).encode().unwrap());
    }
    let got = send(&mut s, &mut c, &wire);
    let incoming = split_incoming(&got);
    let mut asm = PushReplyAssembler::new();
    let mut pushed = None;
    for m in incoming.messages {
        if let ControlMessage::PushReply(body) = ControlMessage::parse(&m) {
            pushed = asm.feed(&body).unwrap();
        }
    }
    let p = pushed.unwrap();
    assert_eq!(p.ifconfig.unwrap().0.to_string(), "10.8.0.10");
    assert_eq!(p.ifconfig_ipv6.unwrap().0.to_string(), "fd00:8::1000/64");
    assert_eq!(p.routes.len(), 2);
    assert_eq!(p.peer_id, Some(1));
    assert!(p.uses_tls_ekm() && p.protocol_flags.cc_exit);
    assert_eq!(p.ignored, ["tun-ipv6"]);
}

#[test]
fn revoked_and_disabled_clients_are_kept_out() {
    let so = server_options();
    let server_tls = TlsContext::from_options(&so).unwrap();
    // client2 is revoked in crl-revoked.pem: refused during the TLS handshake.
    let c2 = TlsContext::from_options(&client_options("client2.crt", "client2.key")).unwrap();
    let mut c = c2.new_session().unwrap();
    let mut s = server_tls.new_session().unwrap();
    assert_eq!(
        pump(&mut c, &mut s).unwrap_err(),
        rustls::Error::InvalidCertificate(rustls::CertificateError::Revoked)
    );
    // client3 passes TLS but its ccd file says disable.
    let c3 = TlsContext::from_options(&client_options("client3.crt", "client3.key")).unwrap();
    let mut c = c3.new_session().unwrap();
    let mut s = server_tls.new_session().unwrap();
    pump(&mut c, &mut s).unwrap();
    let Connection::Server(sc) = &s else {
        unreachable!()
    };
    let cn = peer_identity(sc).unwrap().common_name;
    let mut adm = ClientAddressing::from_options(&so).unwrap();
    assert_eq!(
        adm.admit(&cn).unwrap_err(),
        AdmitError::Disabled("client3".into())
    );
}
