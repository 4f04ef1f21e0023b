//! The server and client shells end to end in memory: config files → sessions → the exact
//! data-path command streams each side would send to its daemon.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use control::client::{Client, ClientState};
use control::config::parse_str;
use control::dataplane::{DaemonCmd, DaemonEvent, IfMode, Slot};
use control::server::Server;
use control::setup::session_config;
use control::tls::TlsContext;

fn fx(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/tls")
        .join(name)
        .display()
        .to_string()
}

/// A fresh tls-crypt key in its own file (tests run in parallel: one file per call).
fn key_file() -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!("dco-shells-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(format!("tc-{}.key", N.fetch_add(1, Ordering::Relaxed)));
    let k = control::static_key::StaticKey::generate().unwrap();
    std::fs::write(&p, k.to_file_string().as_bytes()).unwrap();
    p.display().to_string()
}

const SERVER: &str = "192.0.2.1:1194";
const CLIENT: &str = "198.51.100.7:40000";

fn setup(extra_server: &str, extra_client: &str) -> (Server, Client) {
    let (server, tc) = setup_server(extra_server);
    (server, new_client(&tc, "client1", extra_client))
}

/// A server and the tls-crypt key file its clients need.
fn setup_server(extra_server: &str) -> (Server, String) {
    let tc = key_file();
    let server_conf = format!(
        "port 1194\nproto udp\ndev tun\ntopology subnet\nserver 10.8.0.0 255.255.255.0\nserver-ipv6 fd00:8::/64\nca {}\ncert {}\nkey {}\ndh none\nkeepalive 10 60\ntls-crypt {tc}\n{extra_server}",
        fx("ca.crt"),
        fx("server.crt"),
        fx("server.key")
    );
    let so = Arc::new(parse_str("server.conf", &server_conf).unwrap());
    let st = Arc::new(TlsContext::from_options(&so).unwrap());
    let server = Server::new(
        so.clone(),
        session_config(&so, st, false, 1_700_000_000).unwrap(),
    )
    .unwrap();
    (server, tc)
}

/// A client with the certificate `cn` (client1..client3 in the fixtures).
fn new_client(tc: &str, cn: &str, extra_client: &str) -> Client {
    let client_conf = format!(
        "client\ndev tun\nproto udp\nremote 192.0.2.1 1194\nnobind\nca {}\ncert {}\nkey {}\nremote-cert-tls server\ntls-crypt {tc}\nexplicit-exit-notify 1\n{extra_client}",
        fx("ca.crt"),
        fx(&format!("{cn}.crt")),
        fx(&format!("{cn}.key"))
    );
    let co = Arc::new(parse_str("client.conf", &client_conf).unwrap());
    let ct = Arc::new(TlsContext::from_options(&co).unwrap());
    Client::new(
        co.clone(),
        session_config(&co, ct, false, 1_700_000_000).unwrap(),
        vec![SERVER.parse().unwrap()],
    )
}

/// Runs both shells, carrying SendControl between them; returns every other command.
fn run(
    server: &mut Server,
    client: &mut Client,
    now: &mut Instant,
    limit: Duration,
    done: impl FnMut(&Client) -> bool,
) -> (Vec<DaemonCmd>, Vec<DaemonCmd>) {
    run_at(server, client, CLIENT.parse().unwrap(), now, limit, done)
}

/// [`run`] for a client at `caddr`.
fn run_at(
    server: &mut Server,
    client: &mut Client,
    caddr: SocketAddr,
    now: &mut Instant,
    limit: Duration,
    mut done: impl FnMut(&Client) -> bool,
) -> (Vec<DaemonCmd>, Vec<DaemonCmd>) {
    let (mut scmds, mut ccmds) = (Vec::new(), Vec::new());
    let end = *now + limit;
    loop {
        let mut moved = false;
        while let Some(c) = client.poll_command() {
            moved = true;
            match c {
                DaemonCmd::SendControl { packet, .. } => server.handle_event(
                    *now,
                    DaemonEvent::ControlPacket {
                        remote: caddr,
                        local: None,
                        packet,
                    },
                ),
                other => ccmds.push(other),
            }
        }
        while let Some(c) = server.poll_command() {
            moved = true;
            match c {
                DaemonCmd::SendControl { remote, packet, .. } => {
                    assert_eq!(remote, caddr);
                    client.handle_event(
                        *now,
                        DaemonEvent::ControlPacket {
                            remote: SERVER.parse().unwrap(),
                            local: None,
                            packet,
                        },
                    )
                }
                other => scmds.push(other),
            }
        }
        if done(client) && !moved {
            return (scmds, ccmds);
        }
        if !moved && !done(client) {
            *now += Duration::from_millis(100);
            assert!(
                *now < end,
                "not done in time; client state {:?}",
                client.state()
            );
            server.handle_timeout(*now);
            client.handle_timeout(*now);
        }
    }
}

#[test]
fn client_connects_and_both_sides_install_matching_keys() {
    let (mut server, mut client) = setup("", "");
    let mut now = Instant::now();
    client.start(now);
    let (scmds, ccmds) = run(
        &mut server,
        &mut client,
        &mut now,
        Duration::from_secs(30),
        |c| *c.state() == ClientState::Connected,
    );

    // Server: the peer with its pool addresses, server keepalive (ping 10, restart 2*60), key 0.
    let Some(DaemonCmd::NewPeer {
        peer_id: 0,
        vpn_ipv4,
        vpn_ipv6,
        common_name,
        ..
    }) = scmds.first()
    else {
        panic!("server commands: {scmds:?}")
    };
    assert_eq!(vpn_ipv4.unwrap().to_string(), "10.8.0.2");
    assert!(vpn_ipv6.unwrap().to_string().starts_with("fd00:8::"));
    assert_eq!(common_name, "client1");
    assert!(matches!(
        scmds[1],
        DaemonCmd::SetPeer {
            peer_id: 0,
            interval: 10,
            timeout: 120
        }
    ));
    let DaemonCmd::NewKey {
        slot: Slot::Primary,
        key_id: 0,
        encrypt: s_enc,
        decrypt: s_dec,
        ..
    } = &scmds[2]
    else {
        panic!("{scmds:?}")
    };

    // Client: p2p mode, the peer, the pushed address, pushed keepalive, key 0.
    assert!(matches!(
        ccmds[0],
        DaemonCmd::SetIfMode {
            mode: IfMode::P2p,
            client_to_client: false
        }
    ));
    assert!(matches!(ccmds[1], DaemonCmd::NewPeer { peer_id: 0, .. }));
    let DaemonCmd::SetIfconfig {
        addresses,
        mtu: Some(1500),
        up: true,
    } = &ccmds[2]
    else {
        panic!("{ccmds:?}")
    };
    assert_eq!(addresses[0].to_string(), "10.8.0.2/24");
    assert!(addresses[1].to_string().ends_with("/64"));
    assert!(ccmds.iter().any(|c| matches!(
        c,
        DaemonCmd::SetPeer {
            peer_id: 0,
            interval: 10,
            timeout: 60
        }
    )));
    let Some(DaemonCmd::NewKey {
        slot: Slot::Primary,
        key_id: 0,
        encrypt: c_enc,
        decrypt: c_dec,
        ..
    }) = ccmds.iter().find(|c| matches!(c, DaemonCmd::NewKey { .. }))
    else {
        panic!("{ccmds:?}")
    };
    // What one side encrypts with, the other decrypts with.
    assert_eq!(c_enc.key(), s_dec.key());
    assert_eq!(c_enc.implicit_iv(), s_dec.implicit_iv());
    assert_eq!(s_enc.key(), c_dec.key());
    assert_eq!(c_enc.cipher(), crypto::CipherKind::Aes256Gcm);
    let pushed = client.pushed().unwrap();
    assert!(pushed.uses_tls_ekm());
    assert!(pushed.protocol_flags.cc_exit);
}

#[test]
fn exit_notify_and_refusal() {
    let (mut server, tc) = setup_server("max-clients 1\n");
    let mut client = new_client(&tc, "client1", "");
    let mut now = Instant::now();
    client.start(now);
    run(
        &mut server,
        &mut client,
        &mut now,
        Duration::from_secs(30),
        |c| *c.state() == ClientState::Connected,
    );
    // A second client (another certificate, another address) is over max-clients 1: it is
    // told AUTH_FAILED and never becomes a peer of the daemon.
    let mut second = new_client(&tc, "client2", "");
    second.start(now);
    let (scmds, _) = run_at(
        &mut server,
        &mut second,
        "198.51.100.8:40001".parse().unwrap(),
        &mut now,
        Duration::from_secs(30),
        |c| matches!(c.state(), ClientState::Stopped { .. }),
    );
    let ClientState::Stopped { reason } = second.state() else {
        unreachable!()
    };
    assert!(reason.contains("AUTH_FAILED"), "{reason}");
    assert!(
        !scmds.iter().any(|c| matches!(c, DaemonCmd::NewPeer { .. })),
        "a client over max-clients became a peer: {scmds:?}"
    );
    // EXIT on shutdown makes the server delete the peer after a short linger.
    client.shutdown(now);
    let (scmds, _) = run(
        &mut server,
        &mut client,
        &mut now,
        Duration::from_secs(1),
        |_| true,
    );
    assert!(scmds.is_empty(), "{scmds:?}");
    let mut gone = false;
    for _ in 0..50 {
        now += Duration::from_millis(100);
        server.handle_timeout(now);
        while let Some(c) = server.poll_command() {
            if matches!(c, DaemonCmd::DelPeer { peer_id: 0 }) {
                gone = true;
            }
        }
    }
    assert!(gone, "server did not delete the peer after EXIT");
}

#[test]
fn client_without_common_cipher_gets_auth_failed() {
    let (mut server, mut client) = setup(
        "data-ciphers AES-128-GCM\n",
        "data-ciphers CHACHA20-POLY1305\n",
    );
    let mut now = Instant::now();
    client.start(now);
    run(
        &mut server,
        &mut client,
        &mut now,
        Duration::from_secs(30),
        |c| matches!(c.state(), ClientState::Stopped { .. }),
    );
    let ClientState::Stopped { reason } = client.state() else {
        unreachable!()
    };
    assert!(reason.contains("AUTH_FAILED"), "{reason}");
}

/// "Initialization Sequence Completed" is handed out once, and only after the peer and its
/// first data key have been polled for the daemon.
#[test]
fn initialized_only_after_peer_and_key_commands() {
    let (mut server, mut client) = setup("", "");
    let mut now = Instant::now();
    client.start(now);
    assert_eq!(client.take_initialized(), None);
    let (_, ccmds) = run(
        &mut server,
        &mut client,
        &mut now,
        Duration::from_secs(30),
        |c| *c.state() == ClientState::Connected,
    );
    assert!(
        ccmds.iter().any(|c| matches!(c, DaemonCmd::NewPeer { .. })),
        "{ccmds:?}"
    );
    assert!(
        ccmds.iter().any(|c| matches!(c, DaemonCmd::NewKey { .. })),
        "{ccmds:?}"
    );
    let i = client
        .take_initialized()
        .expect("announced once connected and drained");
    assert_eq!(i.remote, SERVER.parse::<SocketAddr>().unwrap());
    assert_eq!(i.cipher, "AES-256-GCM");
    assert!(i.ekm);
    assert_eq!(client.take_initialized(), None, "announced twice");
}
