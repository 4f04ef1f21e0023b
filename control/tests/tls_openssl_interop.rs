//! Our TLS configs against the stock OpenSSL 3 CLI over loopback TCP: `openssl s_client`
//! talks to our server config and our client config talks to `openssl s_server`, both with
//! client certificates required and verified. Both sides export the OpenVPN data-key
//! material (`EXPORTER-OpenVPN-datakeys`, 256 bytes, no context, which is how OpenVPN
//! calls OpenSSL) and the bytes must be equal. Skips loudly when `openssl` is missing.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use control::config::{CertUsage, Role, Source, X509NameCheck, X509NameKind};
use control::tls::{
    Identity, PeerPolicy, TlsContext, export_data_keys_any, load_certs, peer_identity,
};

fn fx(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/tls")
        .join(name)
}

fn have_openssl() -> bool {
    match Command::new("openssl").arg("version").output() {
        Ok(o) if o.status.success() => true,
        _ => {
            eprintln!("SKIPPED: the openssl CLI is not installed (apt-get install -y openssl)");
            false
        }
    }
}

fn policy(role_of_peer: CertUsage) -> PeerPolicy {
    PeerPolicy {
        ca: load_certs("ca", &Source::File(fx("ca.crt"))).unwrap(),
        remote_cert_tls: Some(role_of_peer),
        ..Default::default()
    }
}

fn identity(cert: &str, key: &str) -> Identity {
    Identity::from_sources(&Source::File(fx(cert)), &Source::File(fx(key)), None).unwrap()
}

/// Reads the child's stdout line by line into a channel.
fn lines_of(child: &mut Child) -> mpsc::Receiver<String> {
    let out = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Waits for a line containing `needle`; returns it. All lines seen go into `log`.
fn wait_for(rx: &mpsc::Receiver<String>, needle: &str, log: &mut Vec<String>) -> Option<String> {
    loop {
        match rx.recv_timeout(Duration::from_secs(15)) {
            Ok(l) => {
                let hit = l.contains(needle);
                log.push(l.clone());
                if hit {
                    return Some(l);
                }
            }
            Err(_) => return None,
        }
    }
}

fn keymat_of(line: &str) -> Vec<u8> {
    let hex_text = line.split("Keying material:").nth(1).unwrap().trim();
    hex::decode(hex_text).unwrap()
}

fn stop(mut child: Child) {
    drop(child.stdin.take());
    for _ in 0..50 {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Our server config, `openssl s_client` with a client certificate.
fn our_server_vs_s_client(version_flag: &str, client_cert: &str, client_key: &str) {
    let server = TlsContext::new(
        Role::Server,
        &policy(CertUsage::Client),
        identity("server.crt", "server.key"),
    )
    .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (done_tx, done_rx) = mpsc::channel();
    let srv = std::thread::spawn(move || {
        let (mut tcp, _) = listener.accept().unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        let mut conn = server.new_session().unwrap();
        while conn.is_handshaking() {
            conn.complete_io(&mut tcp).unwrap();
        }
        let ekm = export_data_keys_any(&conn).unwrap().to_vec();
        let (version, cn) = match &conn {
            rustls::Connection::Server(s) => {
                (s.protocol_version(), peer_identity(s).unwrap().common_name)
            }
            rustls::Connection::Client(_) => unreachable!(),
        };
        done_tx.send((ekm, version, cn)).unwrap();
        // Keep the connection up until the client goes away.
        let mut sink = [0u8; 512];
        let _ = tcp.read(&mut sink);
    });

    let mut child = Command::new("openssl")
        .args(["s_client", "-connect", &format!("127.0.0.1:{port}")])
        .arg("-cert")
        .arg(fx(client_cert))
        .arg("-key")
        .arg(fx(client_key))
        .arg("-CAfile")
        .arg(fx("ca.crt"))
        .args([
            "-verify_return_error",
            "-keymatexport",
            "EXPORTER-OpenVPN-datakeys",
            "-keymatexportlen",
            "256",
        ])
        .arg(version_flag)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let rx = lines_of(&mut child);
    let mut log = Vec::new();
    let line = wait_for(&rx, "Keying material:", &mut log);
    let ours = done_rx.recv_timeout(Duration::from_secs(15));
    stop(child);
    let _ = srv.join();
    let line =
        line.unwrap_or_else(|| panic!("s_client printed no keying material:\n{}", log.join("\n")));
    let (ekm, version, cn) = ours.expect("our server did not finish the handshake");
    assert_eq!(
        keymat_of(&line),
        ekm,
        "OpenSSL and rustls exported different keys"
    );
    let want = if version_flag == "-tls1_2" {
        rustls::ProtocolVersion::TLSv1_2
    } else {
        rustls::ProtocolVersion::TLSv1_3
    };
    assert_eq!(version, Some(want));
    assert!(
        log.iter().any(|l| l.contains("Verify return code: 0 (ok)")),
        "OpenSSL did not accept our server:\n{}",
        log.join("\n")
    );
    assert_eq!(cn, client_cert.trim_end_matches(".crt"));
}

/// Our client config against `openssl s_server -Verify 1` (client certificate required).
fn our_client_vs_s_server(version_flag: &str, client_cert: &str, client_key: &str) {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut child = Command::new("openssl")
        .args(["s_server", "-accept", &format!("127.0.0.1:{port}")])
        .arg("-cert")
        .arg(fx("server.crt"))
        .arg("-key")
        .arg(fx("server.key"))
        .arg("-CAfile")
        .arg(fx("ca.crt"))
        .args(["-Verify", "1", "-verify_return_error", "-naccept", "1"])
        .args([
            "-keymatexport",
            "EXPORTER-OpenVPN-datakeys",
            "-keymatexportlen",
            "256",
        ])
        .arg(version_flag)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let rx = lines_of(&mut child);
    let mut log = Vec::new();
    if wait_for(&rx, "ACCEPT", &mut log).is_none() {
        stop(child);
        panic!("s_server did not start:\n{}", log.join("\n"));
    }
    let mut pol = policy(CertUsage::Server);
    pol.verify_x509_name = Some(X509NameCheck {
        name: "server".into(),
        kind: X509NameKind::Name,
    });
    let client = TlsContext::new(Role::Client, &pol, identity(client_cert, client_key)).unwrap();
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let mut conn = client.new_session().unwrap();
    let hs = (|| -> std::io::Result<()> {
        while conn.is_handshaking() {
            conn.complete_io(&mut tcp)?;
        }
        conn.writer().write_all(b"hello from rustls\n")?;
        while conn.wants_write() {
            conn.complete_io(&mut tcp)?;
        }
        Ok(())
    })();
    let line = wait_for(&rx, "Keying material:", &mut log);
    let got_hello = wait_for(&rx, "hello from rustls", &mut log).is_some();
    conn.send_close_notify();
    let _ = conn.complete_io(&mut tcp);
    stop(child);
    hs.unwrap_or_else(|e| panic!("handshake with s_server failed: {e}\n{}", log.join("\n")));
    let ekm = export_data_keys_any(&conn).unwrap();
    let line =
        line.unwrap_or_else(|| panic!("s_server printed no keying material:\n{}", log.join("\n")));
    assert_eq!(
        keymat_of(&line),
        ekm.to_vec(),
        "OpenSSL and rustls exported different keys"
    );
    assert!(
        got_hello,
        "s_server did not receive our application data:\n{}",
        log.join("\n")
    );
    let want = if version_flag == "-tls1_2" {
        rustls::ProtocolVersion::TLSv1_2
    } else {
        rustls::ProtocolVersion::TLSv1_3
    };
    if let rustls::Connection::Client(c) = &conn {
        assert_eq!(c.protocol_version(), Some(want));
        assert_eq!(peer_identity(c).unwrap().common_name, "server");
    }
}

#[test]
fn openssl_s_client_against_our_server_tls13() {
    if have_openssl() {
        our_server_vs_s_client("-tls1_3", "client1.crt", "client1.key");
    }
}

#[test]
fn openssl_s_client_against_our_server_tls12_ecdsa_client() {
    if have_openssl() {
        our_server_vs_s_client("-tls1_2", "client3.crt", "client3.key");
    }
}

#[test]
fn our_client_against_openssl_s_server_tls13() {
    if have_openssl() {
        our_client_vs_s_server("-tls1_3", "client1.crt", "client1.key");
    }
}

#[test]
fn our_client_against_openssl_s_server_tls12_pkcs1_key() {
    if have_openssl() {
        our_client_vs_s_server("-tls1_2", "client2.crt", "client2.key");
    }
}

#[test]
fn our_client_against_openssl_s_server_ed25519_client() {
    if have_openssl() {
        our_client_vs_s_server("-tls1_3", "plain.crt", "plain.key");
    }
}
