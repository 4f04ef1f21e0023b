use super::*;
use crate::config::parse_str;

const SERVER: &str = "port 1194\nproto udp\ndev tun\ntopology subnet\nserver 10.8.0.0 255.255.255.0\nca ca.crt\ncert server.crt\nkey server.key\ndh none\n";
const CLIENT: &str = "client\ndev tun\nproto udp\nremote vpn.example.net 1194\nnobind\nca ca.crt\ncert client.crt\nkey client.key\nremote-cert-tls server\n";

fn server(extra: &str) -> Result<Options, ConfigError> {
    parse_str("s.conf", &format!("{SERVER}{extra}"))
}

fn client(extra: &str) -> Result<Options, ConfigError> {
    parse_str("c.conf", &format!("{CLIENT}{extra}"))
}

fn err(r: Result<Options, ConfigError>) -> ConfigError {
    match r {
        Ok(o) => panic!("expected an error, got {o:?}"),
        Err(e) => e,
    }
}

/// The error's text, checked to start with `file:line:`.
fn err_at(r: Result<Options, ConfigError>, line: u32) -> String {
    let e = err(r);
    assert_eq!(e.loc.line, line, "wrong line for: {e}");
    e.to_string()
}

const SERVER_LINES: u32 = 9;
const CLIENT_LINES: u32 = 9;

#[test]
fn minimal_server_pair_from_protocol_doc() {
    let o = server("data-ciphers AES-256-GCM:AES-128-GCM:CHACHA20-POLY1305\nkeepalive 10 60\ntls-crypt tc.key\nexplicit-exit-notify 1\n").unwrap();
    assert_eq!(o.role, Role::Server);
    assert_eq!(o.dev, "tun");
    assert_eq!(o.proto, Proto::Udp);
    assert_eq!(o.local_port, 1194);
    let s = o.server.unwrap();
    assert_eq!(
        (s.network, s.netmask, s.prefix_len, s.nopool),
        (
            Ipv4Addr::new(10, 8, 0, 0),
            Ipv4Addr::new(255, 255, 255, 0),
            24,
            false
        )
    );
    assert_eq!(o.server_ipv4(), Some(Ipv4Addr::new(10, 8, 0, 1)));
    assert_eq!(o.dh, Some(DhParam::None));
    assert_eq!(
        o.keepalive,
        Some(Keepalive {
            interval: 10,
            timeout: 60
        })
    );
    assert_eq!(
        o.ping_timers(),
        PingTimers {
            ping: Some(10),
            ping_restart: Some(120)
        }
    );
    assert_eq!(o.explicit_exit_notify, Some(1));
    assert_eq!(
        o.tls_wrap(),
        TlsWrap::Crypt {
            key: Source::File("tc.key".into())
        }
    );
    assert_eq!(o.data_ciphers, DataCipher::ALL.to_vec());
    assert_eq!(
        o.global_push_list(),
        [
            "route-gateway 10.8.0.1",
            "topology subnet",
            "ping 10",
            "ping-restart 60"
        ]
    );
    assert!(o.warnings.is_empty());
}

#[test]
fn minimal_client_pair_from_protocol_doc() {
    let o = client("tls-crypt tc.key\nexplicit-exit-notify\n").unwrap();
    assert_eq!(o.role, Role::Client);
    assert_eq!(
        o.remotes,
        vec![Remote {
            host: "vpn.example.net".into(),
            port: 1194,
            proto: Proto::Udp
        }]
    );
    assert!(o.nobind);
    assert_eq!(o.remote_cert_tls, Some(CertUsage::Server));
    assert_eq!(o.explicit_exit_notify, Some(1));
    assert!(o.global_push_list().is_empty());
}

#[test]
fn defaults_are_openvpn_26() {
    let o = server("").unwrap();
    assert_eq!(o.auth, Digest::Sha1);
    assert_eq!(o.tls_version_min, TlsVersion::V1_2);
    assert_eq!(
        (o.reneg_sec, o.reneg_bytes, o.reneg_pkts),
        (3600, None, None)
    );
    assert_eq!((o.tran_window, o.hand_window, o.tls_timeout), (3600, 60, 2));
    assert_eq!(
        (o.tun_mtu, o.max_packet_size, o.max_clients),
        (1500, 1250, 1024)
    );
    assert_eq!((o.replay_window, o.replay_time, o.verb), (64, 15, 1));
    assert_eq!(o.tls_wrap(), TlsWrap::None);
    assert_eq!(o.ping_timers(), PingTimers::default());
}

#[test]
fn roles() {
    let base = "ca a\ncert b\nkey c\n";
    let o = parse_str("t", &format!("{base}pull\ntls-client\nremote 1.2.3.4\n")).unwrap();
    assert_eq!(o.role, Role::Client);
    let o = parse_str(
        "t",
        &format!("{base}mode server\ntls-server\nserver 10.0.0.0 255.255.0.0\n"),
    )
    .unwrap();
    assert_eq!(o.role, Role::Server);
    let e = err_at(
        parse_str("t", &format!("{base}tls-client\nremote 1.2.3.4\n")),
        4,
    );
    assert!(
        e.contains("option tls-client is not supported: point-to-point"),
        "{e}"
    );
    let e = err_at(parse_str("t", &format!("{base}tls-server\n")), 4);
    assert!(e.contains("option tls-server is not supported"), "{e}");
    let e = err_at(parse_str("t", base), 0);
    assert_eq!(
        e,
        "t: server or client is missing: say which side this config runs"
    );
    let e = err(parse_str(
        "t",
        &format!("{base}client\nserver 10.0.0.0 255.255.255.0\nremote x\n"),
    ));
    assert!(matches!(e.kind, ConfigErrorKind::Conflict { .. }), "{e}");
    let e = err_at(parse_str("t", &format!("{base}mode server\n")), 0);
    assert!(
        e.contains("server network netmask (or server-ipv6) is missing"),
        "{e}"
    );
    let e = err_at(parse_str("t", &format!("{base}mode p2p\n")), 4);
    assert!(
        e.contains("option mode p2p is not supported: point-to-point mode"),
        "{e}"
    );
    let o = parse_str("t", &format!("{base}server-ipv6 fd00:1::/64\n")).unwrap();
    assert_eq!(o.role, Role::Server);
}

#[test]
fn dev_and_dev_type() {
    assert_eq!(server("dev tun3\n").unwrap().dev, "tun3");
    assert_eq!(server("dev vpn0\ndev-type tun\n").unwrap().dev, "vpn0");
    let e = err_at(server("dev tap0\n"), SERVER_LINES + 1);
    assert_eq!(
        e,
        format!(
            "s.conf:{}:5: option dev tap0 is not supported: layer-2 (TAP) devices are not supported by DCO (use dev tun)",
            SERVER_LINES + 1
        )
    );
    let e = err_at(server("dev-type tap\n"), SERVER_LINES + 1);
    assert!(
        e.contains("option dev-type tap is not supported: layer-2 (TAP)"),
        "{e}"
    );
    let e = err_at(server("dev null\n"), SERVER_LINES + 1);
    assert!(e.contains("null device"), "{e}");
    let e = err_at(server("dev a/b\n"), SERVER_LINES + 1);
    assert!(e.contains("interface name"), "{e}");
    let e = err_at(server("dev-type foo\n"), SERVER_LINES + 1);
    assert!(e.contains("only tun"), "{e}");
}

#[test]
fn proto_and_ports() {
    assert_eq!(server("proto udp6\n").unwrap().proto, Proto::Udp6);
    assert_eq!(server("proto udp4\n").unwrap().proto, Proto::Udp4);
    for tcp in ["tcp", "tcp-server", "tcp6-client", "TCP"] {
        let e = err_at(server(&format!("proto {tcp}\n")), SERVER_LINES + 1);
        assert!(
            e.contains(&format!(
                "option proto {tcp} is not supported: TCP transport is not supported yet"
            )),
            "{e}"
        );
        assert!(e.ends_with("(use proto udp on both sides)"), "{e}");
    }
    let e = err_at(server("proto sctp\n"), SERVER_LINES + 1);
    assert!(e.contains("unknown protocol"), "{e}");
    assert_eq!(server("port 443\n").unwrap().local_port, 443);
    assert_eq!(server("lport 5000\n").unwrap().local_port, 5000);
    let e = err_at(server("port 0\n"), SERVER_LINES + 1);
    assert!(
        e.contains("port: bad value '0': must be between 1 and 65535"),
        "{e}"
    );
    let e = err_at(server("port http\n"), SERVER_LINES + 1);
    assert!(e.contains("not a non-negative whole number"), "{e}");
    assert_eq!(
        server("local 192.0.2.1\n").unwrap().local.as_deref(),
        Some("192.0.2.1")
    );
}

#[test]
fn remotes() {
    let o =
        client("remote 192.0.2.2 443 udp6\nremote b.example\nport 1195\nremote-random\n").unwrap();
    assert_eq!(o.remotes.len(), 3);
    assert_eq!(
        o.remotes[1],
        Remote {
            host: "192.0.2.2".into(),
            port: 443,
            proto: Proto::Udp6
        }
    );
    assert_eq!(
        o.remotes[2],
        Remote {
            host: "b.example".into(),
            port: 1195,
            proto: Proto::Udp
        }
    );
    assert!(o.remote_random);
    let o = client("rport 2000\n").unwrap();
    assert_eq!(o.remotes[0].port, 1194); // the line's own port wins
    let e = err_at(client("remote a 1 udp x\n"), CLIENT_LINES + 1);
    assert!(
        e.contains("wrong arguments for remote; usage: remote host [port] [proto]"),
        "{e}"
    );
    let e = err_at(client("remote a 1 tcp\n"), CLIENT_LINES + 1);
    assert!(e.contains("option remote tcp is not supported"), "{e}");
    let e = err(parse_str("c", "client\nca a\ncert b\nkey c\n"));
    assert_eq!(
        e.to_string(),
        "c: remote is missing: the client needs a server to connect to"
    );
    let e = err_at(server("remote 1.2.3.4\n"), SERVER_LINES + 1);
    assert!(
        e.contains("option remote is not allowed here: it is a client option"),
        "{e}"
    );
}

#[test]
fn server_subnet_rules() {
    let o = server("server 10.9.0.0 255.255.0.0 nopool\n").unwrap();
    assert!(o.server.unwrap().nopool);
    assert_eq!(o.server.unwrap().prefix_len, 16);
    let e = err_at(server("server 10.8.0.1 255.255.255.0\n"), SERVER_LINES + 1);
    assert!(e.contains("has host bits set"), "{e}");
    let e = err_at(server("server 10.8.0.0 255.0.255.0\n"), SERVER_LINES + 1);
    assert!(e.contains("not a contiguous netmask"), "{e}");
    let e = err_at(
        server("server 10.8.0.0 255.255.255.252\n"),
        SERVER_LINES + 1,
    );
    assert!(e.contains("/16 to /29"), "{e}");
    let e = err_at(server("server 10.0.0.0 255.0.0.0\n"), SERVER_LINES + 1);
    assert!(e.contains("/16 to /29"), "{e}");
    let e = err_at(
        server("server 10.8.0.0 255.255.255.0 pool\n"),
        SERVER_LINES + 1,
    );
    assert!(e.contains("nopool"), "{e}");
    let e = err_at(server("server vpn 255.255.255.0\n"), SERVER_LINES + 1);
    assert!(e.contains("not an IPv4 address"), "{e}");
}

#[test]
fn server_ipv6() {
    let o = server("server-ipv6 fd00:8::/64\n").unwrap();
    assert_eq!(o.server_ipv6.unwrap().to_string(), "fd00:8::/64");
    assert_eq!(o.server_ipv6_addr(), Some("fd00:8::1".parse().unwrap()));
    assert_eq!(o.global_push_list()[0], "tun-ipv6");
    let e = err_at(server("server-ipv6 fd00::/48\n"), SERVER_LINES + 1);
    assert!(e.contains("/64 to /124"), "{e}");
    let e = err_at(server("server-ipv6 fd00::1/64\n"), SERVER_LINES + 1);
    assert!(e.contains("host bits"), "{e}");
    let e = err_at(server("server-ipv6 fd00::\n"), SERVER_LINES + 1);
    assert!(e.contains("prefix-length is required"), "{e}");
}

#[test]
fn topology() {
    assert!(server("topology subnet\n").is_ok());
    for t in ["net30", "p2p"] {
        let e = err_at(server(&format!("topology {t}\n")), SERVER_LINES + 1);
        assert!(
            e.contains(&format!(
                "option topology {t} is not supported: DCO requires topology subnet"
            )),
            "{e}"
        );
    }
}

#[test]
fn ifconfig_pool() {
    let o = server("ifconfig-pool 10.8.0.100 10.8.0.199\n").unwrap();
    assert_eq!(o.ifconfig_pool.unwrap().start, Ipv4Addr::new(10, 8, 0, 100));
    let e = err_at(
        server("ifconfig-pool 10.8.0.1 10.8.0.20\n"),
        SERVER_LINES + 1,
    );
    assert!(
        e.contains("leave out the network, broadcast and server (10.8.0.1)"),
        "{e}"
    );
    let e = err_at(
        server("ifconfig-pool 10.8.0.10 10.8.1.20\n"),
        SERVER_LINES + 1,
    );
    assert!(e.contains("inside 10.8.0.0/24"), "{e}");
    let e = err_at(
        server("ifconfig-pool 10.8.0.20 10.8.0.10\n"),
        SERVER_LINES + 1,
    );
    assert!(e.contains("the end is before the start"), "{e}");
    let e = err_at(
        server("ifconfig-pool 10.8.0.10 10.8.0.20 255.255.0.0\n"),
        SERVER_LINES + 1,
    );
    assert!(e.contains("the netmask must be the server's"), "{e}");
    let e = err_at(
        client("ifconfig-pool 10.8.0.10 10.8.0.20\n"),
        CLIENT_LINES + 1,
    );
    assert!(e.contains("it is a server option"), "{e}");
}

#[test]
fn credentials_files_and_inline() {
    let o = parse_str(
        "i.conf",
        "client\nremote x\n<ca>\n-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n</ca>\n<cert>\nC\n</cert>\n<key>\nK\n</key>\nextra-certs chain.pem\n",
    )
    .unwrap();
    match &o.ca {
        Some(Source::Inline(b)) => assert!(b.as_str().contains("BEGIN CERTIFICATE")),
        other => panic!("{other:?}"),
    }
    assert_eq!(o.key.as_ref().unwrap().describe(), "[inline]");
    assert_eq!(&*o.key.as_ref().unwrap().load().unwrap(), b"K\n");
    assert_eq!(
        o.extra_certs.as_ref().unwrap().path().unwrap().to_str(),
        Some("chain.pem")
    );
    // Debug never shows inline key text.
    assert!(!format!("{o:?}").contains("K\\n"));
    let e = err(parse_str("t", "client\nremote x\nca a\ncert b\n"));
    assert_eq!(
        e.to_string(),
        "t: key is missing: the private key of cert is needed"
    );
    let e = err(parse_str("t", "client\nremote x\nca a\nkey b\n"));
    assert!(e.to_string().contains("cert is missing"), "{e}");
    let e = err(parse_str("t", "client\nremote x\ncert a\nkey b\n"));
    assert!(
        e.to_string()
            .contains("ca (or peer-fingerprint) is missing"),
        "{e}"
    );
    let e = err_at(server("ca a b\n"), SERVER_LINES + 1);
    assert!(e.contains("usage: ca file"), "{e}");
    let e = err_at(server("ca [[inline]]\n"), SERVER_LINES + 1);
    assert!(e.contains("inline <tag> block"), "{e}");
}

#[test]
fn dh_variants() {
    assert_eq!(server("").unwrap().dh, Some(DhParam::None));
    let o = server("dh dh2048.pem\n").unwrap();
    assert_eq!(o.dh, Some(DhParam::File(Source::File("dh2048.pem".into()))));
    assert_eq!(o.warnings.len(), 1);
    assert!(o.warnings[0].message.contains("only ECDHE"));
}

#[test]
fn tls_auth_and_key_direction() {
    let o = server("tls-auth ta.key 0\nauth SHA256\n").unwrap();
    assert_eq!(
        o.tls_wrap(),
        TlsWrap::Auth {
            key: TlsAuthKey {
                key: Source::File("ta.key".into()),
                direction: Some(KeyDirection::Normal)
            },
            digest: Digest::Sha256
        }
    );
    let o =
        client("<tls-auth>\n-----BEGIN OpenVPN Static key V1-----\n</tls-auth>\nkey-direction 1\n")
            .unwrap();
    let Some(TlsAuthKey {
        key: Source::Inline(_),
        direction: Some(KeyDirection::Inverse),
    }) = o.tls_auth
    else {
        panic!("{:?}", o.tls_auth)
    };
    let o = client("tls-auth ta.key\n").unwrap();
    assert_eq!(o.tls_auth.unwrap().direction, None);
    let e = err_at(client("tls-auth ta.key 2\n"), CLIENT_LINES + 1);
    assert!(e.contains("key direction is 0 or 1"), "{e}");
    let e = err_at(client("key-direction x\n"), CLIENT_LINES + 1);
    assert!(e.contains("key direction is 0 or 1"), "{e}");
    let e = err(client("tls-auth ta.key 1\ntls-crypt tc.key\n"));
    assert_eq!(e.loc.line, CLIENT_LINES + 2);
    assert!(
        e.to_string()
            .contains("tls-crypt cannot be used together with tls-auth"),
        "{e}"
    );
}

#[test]
fn auth_digests() {
    assert_eq!(server("auth sha512\n").unwrap().auth, Digest::Sha512);
    assert_eq!(server("auth SHA1\n").unwrap().auth.output_len(), 20);
    let e = err_at(server("auth MD5\n"), SERVER_LINES + 1);
    assert!(
        e.contains("option auth MD5 is not supported: only SHA1, SHA256 and SHA512"),
        "{e}"
    );
}

#[test]
fn ciphers() {
    let o = server("data-ciphers chacha20-poly1305:AES-128-GCM\n").unwrap();
    assert_eq!(
        o.data_ciphers,
        vec![DataCipher::Chacha20Poly1305, DataCipher::Aes128Gcm]
    );
    let o = server("data-ciphers AES-256-GCM:?AES-192-GCM:?BF-CBC\n").unwrap();
    assert_eq!(o.data_ciphers, vec![DataCipher::Aes256Gcm]);
    assert_eq!(o.warnings.len(), 2);
    let e = err_at(
        server("data-ciphers AES-256-GCM:AES-256-CBC\n"),
        SERVER_LINES + 1,
    );
    assert!(
        e.contains("option data-ciphers AES-256-CBC is not supported: DCO only runs AEAD ciphers"),
        "{e}"
    );
    let e = err_at(server("data-ciphers AES-256-GCM:FOO\n"), SERVER_LINES + 1);
    assert!(e.contains("FOO: unknown cipher"), "{e}");
    let e = err_at(server("data-ciphers AES-192-GCM\n"), SERVER_LINES + 1);
    assert!(e.contains("AES-192-GCM is not implemented"), "{e}");
    let e = err_at(server("cipher AES-256-CBC\n"), SERVER_LINES + 1);
    assert!(e.contains("option cipher AES-256-CBC is not supported: DCO only runs AEAD ciphers (remove the line"), "{e}");
    let e = err_at(server("cipher BF-CBC\n"), SERVER_LINES + 1);
    assert!(e.contains("not supported"), "{e}");
    let e = err_at(server("cipher none\n"), SERVER_LINES + 1);
    assert!(e.contains("not supported"), "{e}");
    let o = server("data-ciphers AES-128-GCM\ncipher AES-256-GCM\n").unwrap();
    assert_eq!(
        o.data_ciphers,
        vec![DataCipher::Aes128Gcm, DataCipher::Aes256Gcm]
    );
    assert_eq!(o.cipher, Some(DataCipher::Aes256Gcm));
    assert!(o.warnings[0].message.contains("appending"));
    let o = server("data-ciphers-fallback AES-128-GCM\n").unwrap();
    assert_eq!(o.data_ciphers_fallback, Some(DataCipher::Aes128Gcm));
    let e = err_at(
        server("data-ciphers-fallback AES-128-CBC\n"),
        SERVER_LINES + 1,
    );
    assert!(
        e.contains("option data-ciphers-fallback AES-128-CBC is not supported"),
        "{e}"
    );
    assert!(
        server("ncp-ciphers AES-256-GCM\n").unwrap().warnings[0]
            .message
            .contains("old name")
    );
    assert_eq!(
        DataCipher::list_string(&DataCipher::ALL),
        "AES-256-GCM:AES-128-GCM:CHACHA20-POLY1305"
    );
}

#[test]
fn peer_checks() {
    let o = client("verify-x509-name server.example name\nremote-cert-tls server\ntls-version-min 1.3\ncrl-verify crl.pem\n").unwrap();
    assert_eq!(
        o.verify_x509_name,
        Some(X509NameCheck {
            name: "server.example".into(),
            kind: X509NameKind::Name
        })
    );
    assert_eq!(o.tls_version_min, TlsVersion::V1_3);
    assert_eq!(o.crl_verify, Some(Source::File("crl.pem".into())));
    let o = client("verify-x509-name 'C=US, O=Org, CN=srv'\n").unwrap();
    assert_eq!(o.verify_x509_name.unwrap().kind, X509NameKind::Subject);
    let o = client("verify-x509-name srv- name-prefix\n").unwrap();
    assert_eq!(o.verify_x509_name.unwrap().kind, X509NameKind::NamePrefix);
    let e = err_at(client("verify-x509-name x cn\n"), CLIENT_LINES + 1);
    assert!(e.contains("subject, name or name-prefix"), "{e}");
    let e = err_at(client("remote-cert-tls peer\n"), CLIENT_LINES + 1);
    assert!(e.contains("must be server or client"), "{e}");
    let e = err_at(client("crl-verify /etc/crl dir\n"), CLIENT_LINES + 1);
    assert!(
        e.contains("option crl-verify dir is not supported: CRL directories"),
        "{e}"
    );
    let o = client("tls-version-min 1.0\n").unwrap();
    assert_eq!(o.tls_version_min, TlsVersion::V1_2);
    assert_eq!(o.warnings.len(), 1);
    assert_eq!(
        client("tls-version-min 1.4 or-highest\n")
            .unwrap()
            .tls_version_min,
        TlsVersion::V1_3
    );
    let e = err_at(client("tls-version-min 1.4\n"), CLIENT_LINES + 1);
    assert!(e.contains("1.2 or 1.3"), "{e}");
}

#[test]
fn peer_fingerprints() {
    let fp = "AB:".repeat(31) + "CD";
    let o = parse_str(
        "f",
        &format!("client\nremote x\ncert c\nkey k\npeer-fingerprint {fp}\n"),
    )
    .unwrap();
    assert_eq!(o.peer_fingerprints.len(), 1);
    assert_eq!(o.peer_fingerprints[0][31], 0xcd);
    assert!(o.ca.is_none());
    let text = format!(
        "server 10.8.0.0 255.255.255.0\ncert c\nkey k\n<peer-fingerprint>\n# laptop\n{fp}\n\n{}\n</peer-fingerprint>\n",
        "01:".repeat(31) + "02"
    );
    let o = parse_str("f", &text).unwrap();
    assert_eq!(o.peer_fingerprints.len(), 2);
    let e = err(parse_str(
        "f",
        "client\nremote x\ncert c\nkey k\npeer-fingerprint AB:CD\n",
    ));
    assert_eq!(e.loc.line, 5);
    assert!(
        e.to_string()
            .contains("32 colon-separated hex bytes, this has 2"),
        "{e}"
    );
    let e = err(parse_str(
        "f",
        &format!(
            "client\nremote x\ncert c\nkey k\n<peer-fingerprint>\n{fp}\nzz\n</peer-fingerprint>\n"
        ),
    ));
    assert_eq!(e.loc.line, 7);
    assert!(parse_fingerprint(&("AB:".repeat(31) + "GG")).is_err());
    assert!(parse_fingerprint(&("AB:".repeat(32) + "CD")).is_err());
}

#[test]
fn renegotiation_and_timers() {
    let o = server("reneg-sec 600 300\nreneg-bytes 1000000\nreneg-pkts 0\ntran-window 120\nhand-window 30\ntls-timeout 4\n").unwrap();
    assert_eq!((o.reneg_sec, o.reneg_sec_min), (600, Some(300)));
    assert_eq!((o.reneg_bytes, o.reneg_pkts), (Some(1_000_000), None));
    assert_eq!((o.tran_window, o.hand_window, o.tls_timeout), (120, 30, 4));
    let e = err_at(server("reneg-sec 60 120\n"), SERVER_LINES + 1);
    assert!(e.contains("the minimum is larger than the maximum"), "{e}");
    let e = err_at(server("hand-window 0\n"), SERVER_LINES + 1);
    assert!(e.contains("between 1 and"), "{e}");
}

#[test]
fn keepalive_and_ping() {
    let e = err_at(server("keepalive 10 15\n"), SERVER_LINES + 1);
    assert!(e.contains("at least twice the interval"), "{e}");
    let e = err(server("keepalive 10 60\nping 5\n"));
    assert!(
        e.to_string()
            .contains("keepalive cannot be used together with ping/ping-restart"),
        "{e}"
    );
    let o = client("ping 15\nping-restart 90\n").unwrap();
    assert_eq!(
        o.ping_timers(),
        PingTimers {
            ping: Some(15),
            ping_restart: Some(90)
        }
    );
    let o = client("keepalive 10 60\n").unwrap();
    assert_eq!(
        o.ping_timers(),
        PingTimers {
            ping: Some(10),
            ping_restart: Some(60)
        }
    );
    assert_eq!(
        client("explicit-exit-notify 3\n")
            .unwrap()
            .explicit_exit_notify,
        Some(3)
    );
}

#[test]
fn push_lines() {
    let o = server("push \"route 192.168.1.0 255.255.255.0\"\npush \"dhcp-option DNS 10.8.0.1\"\nkeepalive 10 60\n").unwrap();
    assert_eq!(
        o.global_push_list(),
        [
            "route 192.168.1.0 255.255.255.0",
            "dhcp-option DNS 10.8.0.1",
            "route-gateway 10.8.0.1",
            "topology subnet",
            "ping 10",
            "ping-restart 60"
        ]
    );
    let e = err_at(server("push \"route a,b\"\n"), SERVER_LINES + 1);
    assert!(e.contains("cannot contain a comma"), "{e}");
    let e = err_at(server("push route 1.2.3.4\n"), SERVER_LINES + 1);
    assert!(e.contains("usage: push \"option args\""), "{e}");
    let e = err_at(client("push \"x\"\n"), CLIENT_LINES + 1);
    assert!(
        e.contains("option push is not allowed here: it is a server option"),
        "{e}"
    );
}

#[test]
fn server_client_management_options() {
    let o = server(
        "client-config-dir ccd\nccd-exclusive\nmax-clients 50\nduplicate-cn\nclient-to-client\n",
    )
    .unwrap();
    assert_eq!(
        o.client_config_dir.as_deref(),
        Some(std::path::Path::new("ccd"))
    );
    assert!(o.ccd_exclusive && o.duplicate_cn && o.client_to_client);
    assert_eq!(o.max_clients, 50);
    let e = err(server("ccd-exclusive\n"));
    assert!(
        e.to_string()
            .contains("client-config-dir is missing: ccd-exclusive needs"),
        "{e}"
    );
    let e = err_at(server("max-clients 0\n"), SERVER_LINES + 1);
    assert!(e.contains("between 1 and"), "{e}");
    let e = err_at(client("max-clients 3\n"), CLIENT_LINES + 1);
    assert!(e.contains("server option"), "{e}");
    for ccd in [
        "iroute 10.0.0.0 255.0.0.0",
        "ifconfig-push 10.8.0.5 255.255.255.0",
        "push-reset",
        "disable",
        "iroute-ipv6 fd00::/64",
        "ifconfig-ipv6-push fd00::5/64",
    ] {
        let e = err_at(server(&format!("{ccd}\n")), SERVER_LINES + 1);
        assert!(
            e.contains("is not allowed here: it belongs in a client-config-dir file"),
            "{e}"
        );
    }
}

#[test]
fn routes() {
    let o = server("route 192.168.10.0 255.255.255.0\nroute 10.20.0.0 255.255.0.0 10.8.0.2 5\nroute 1.2.3.4\nroute-ipv6 fd00:10::/64\nroute-ipv6 2001:db8::/32 fd00::2 10\n").unwrap();
    assert_eq!(o.routes.len(), 3);
    assert_eq!(o.routes[1].gateway.as_deref(), Some("10.8.0.2"));
    assert_eq!(o.routes[1].metric, Some(5));
    assert_eq!(o.routes[2].netmask, Ipv4Addr::BROADCAST);
    assert_eq!(o.routes_ipv6[1].gateway, Some("fd00::2".parse().unwrap()));
    assert_eq!(o.routes_ipv6[1].metric, Some(10));
    let e = err_at(
        server("route 192.168.10.1 255.255.255.0\n"),
        SERVER_LINES + 1,
    );
    assert!(e.contains("host bits"), "{e}");
    let e = err_at(
        server("route 192.168.10.0 255.255.255.0 gw\n"),
        SERVER_LINES + 1,
    );
    assert!(e.contains("vpn_gateway"), "{e}");
    let e = err_at(server("route-ipv6 fd00::/129\n"), SERVER_LINES + 1);
    assert!(e.contains("more than 128"), "{e}");
}

#[test]
fn mtu_and_packet_size() {
    let o = server("tun-mtu 1400\nmssfix 1360\nmax-packet-size 100\n").unwrap();
    assert_eq!(
        (o.tun_mtu, o.mssfix, o.max_packet_size),
        (1400, Some(1360), 154)
    );
    assert!(o.warnings[0].message.contains("using 154"));
    assert_eq!(server("tls-mtu 1400\n").unwrap().max_packet_size, 1400);
    assert_eq!(server("mssfix\n").unwrap().mssfix, None);
    let e = err_at(server("mssfix 1400 foo\n"), SERVER_LINES + 1);
    assert!(e.contains("mtu or fixed"), "{e}");
    let e = err_at(server("tun-mtu 100\n"), SERVER_LINES + 1);
    assert!(e.contains("between 576"), "{e}");
    assert_eq!(server("tun-mtu 1500 1400\n").unwrap().occ_mtu, Some(1400));
}

#[test]
fn auth_user_pass() {
    let o = client("auth-user-pass creds.txt\n").unwrap();
    assert_eq!(o.auth_user_pass, Some(Source::File("creds.txt".into())));
    let o = client("<auth-user-pass>\nalice\nsecret\n</auth-user-pass>\n").unwrap();
    assert!(matches!(o.auth_user_pass, Some(Source::Inline(_))));
    let e = err_at(client("auth-user-pass\n"), CLIENT_LINES + 1);
    assert!(e.contains("there is no terminal prompt"), "{e}");
    let e = err_at(server("auth-user-pass c.txt\n"), SERVER_LINES + 1);
    assert!(e.contains("client option"), "{e}");
    let e = err_at(
        server("auth-user-pass-verify /bin/check via-file\n"),
        SERVER_LINES + 1,
    );
    assert_eq!(
        e,
        format!(
            "s.conf:{}:1: option auth-user-pass-verify is not supported: username/password verification scripts are not supported (authenticate clients by certificate (ccd-exclusive gives an allow-list))",
            SERVER_LINES + 1
        )
    );
}

#[test]
fn process_and_logging_options() {
    let o = server("user nobody\ngroup nogroup\npersist-key\npersist-tun\nverb 4\nstatus /run/s.log 10\nstatus-version 2\nlog-append /var/log/o.log\nreplay-window 128 30\nscript-security 2\n").unwrap();
    assert_eq!(
        (o.user.as_deref(), o.group.as_deref()),
        (Some("nobody"), Some("nogroup"))
    );
    assert!(o.persist_key && o.persist_tun);
    assert_eq!(o.verb, 4);
    assert_eq!(
        o.status,
        Some(StatusFile {
            path: "/run/s.log".into(),
            interval: 10
        })
    );
    assert_eq!(
        o.log,
        Some(LogFile {
            path: "/var/log/o.log".into(),
            append: true
        })
    );
    assert_eq!((o.replay_window, o.replay_time), (128, 30));
    assert_eq!(o.script_security, 2);
    assert_eq!(
        server("status s.log\n").unwrap().status.unwrap().interval,
        60
    );
    assert!(!server("log o.log\n").unwrap().log.unwrap().append);
    let e = err_at(server("status-version 3\n"), SERVER_LINES + 1);
    assert!(
        e.contains("option status-version 3 is not supported"),
        "{e}"
    );
    let e = err_at(server("verb 12\n"), SERVER_LINES + 1);
    assert!(e.contains("between 0 and 11"), "{e}");
    let e = err_at(server("replay-window 70000\n"), SERVER_LINES + 1);
    assert!(e.contains("between 0 and 65536"), "{e}");
}

#[test]
fn dco_forbidden_options_say_so() {
    let cases = [
        (
            "comp-lzo",
            "compression is not allowed with data channel offload",
        ),
        ("comp-lzo no", "compression is not allowed"),
        ("compress lz4-v2", "compression is not allowed"),
        (
            "allow-compression yes",
            "option allow-compression yes is not supported: compression is not allowed",
        ),
        ("secret static.key", "static-key mode has no TLS handshake"),
        (
            "fragment 1300",
            "DCO does not fragment packets (use mssfix and tun-mtu)",
        ),
        ("server-bridge", "TAP"),
        ("http-proxy p 8080", "proxy"),
        (
            "management 127.0.0.1 7505",
            "there is no management interface (use ovpnctl",
        ),
        ("management-hold", "no management interface"),
        ("tls-crypt-v2 k", "not implemented yet"),
        ("plugin x.so", "plugins"),
        ("up /etc/up.sh", "scripts are not run"),
        ("pkcs12 a.p12", "PKCS#12"),
        ("pkcs11-id x", "hardware tokens"),
        ("tls-cipher DEFAULT", "TLS suites are fixed"),
        ("verify-client-cert none", "always required"),
        ("ns-cert-type server", "remote-cert-tls"),
        ("ifconfig 10.0.0.1 10.0.0.2", "manual point-to-point"),
        ("ncp-disable", "removed"),
    ];
    for (line, want) in cases {
        let e = err_at(server(&format!("{line}\n")), SERVER_LINES + 1);
        assert!(
            e.contains("is not supported:") && e.contains(want),
            "{line}: {e}"
        );
    }
    assert!(server("allow-compression no\n").is_ok());
    let e = err_at(parse_str("c", "<connection>\nremote x\n</connection>\n"), 1);
    assert!(e.contains("option connection is not supported"), "{e}");
}

#[test]
fn unknown_options_and_no_ops() {
    let e = err_at(server("frobnicate 3\n"), SERVER_LINES + 1);
    assert_eq!(
        e,
        format!(
            "s.conf:{}:1: option frobnicate is not supported: unknown option (see the supported options table in dco's README)",
            SERVER_LINES + 1
        )
    );
    let o = client("resolv-retry infinite\nmute 20\nauth-nocache\nfloat\ntun-ipv6\nmute-replay-warnings\nfast-io\n").unwrap();
    assert_eq!(o.warnings.len(), 1, "tun-ipv6 note");
    assert!(server("ifconfig-pool-persist ipp.txt\n").is_ok());
    let e = err_at(server("  --frob\n"), SERVER_LINES + 1);
    assert!(
        e.starts_with(&format!("s.conf:{}:5:", SERVER_LINES + 1)),
        "{e}"
    );
}

#[test]
fn client_side_text_options() {
    let o = client("redirect-gateway def1 bypass-dhcp\ndhcp-option DNS 10.8.0.1\n").unwrap();
    assert_eq!(
        o.redirect_gateway,
        Some(vec!["def1".to_string(), "bypass-dhcp".to_string()])
    );
    assert_eq!(o.dhcp_options, vec!["DNS 10.8.0.1".to_string()]);
    let e = err_at(server("redirect-gateway def1\n"), SERVER_LINES + 1);
    assert!(
        e.contains("push \\\"redirect-gateway def1\\\"")
            || e.contains("push \"redirect-gateway def1\""),
        "{e}"
    );
}

#[test]
fn inline_not_allowed_for_plain_options() {
    let e = err_at(server("<verb>\n3\n</verb>\n"), SERVER_LINES + 1);
    assert!(
        e.contains("option verb cannot be given as an inline <verb> block"),
        "{e}"
    );
}

#[test]
fn later_lines_override_earlier() {
    let o = server("verb 3\nverb 5\nport 1000\nport 2000\n").unwrap();
    assert_eq!((o.verb, o.local_port), (5, 2000));
}

#[test]
fn ipv6net_helpers() {
    let n = Ipv6Net::parse("fd00:1::5/64", None).unwrap();
    assert_eq!(n.network(), "fd00:1::".parse::<Ipv6Addr>().unwrap());
    assert!(n.contains("fd00:1::ffff".parse().unwrap()));
    assert!(!n.contains("fd00:2::1".parse().unwrap()));
    assert_eq!(Ipv6Net::parse("::1", Some(128)).unwrap().prefix_len, 128);
    assert!(Ipv6Net::parse("x/64", None).is_err());
}
