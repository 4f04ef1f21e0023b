//! The harness proves itself before our daemon exists: stock OpenVPN server ↔ stock
//! OpenVPN client in two namespaces, with ping, a verified bulk transfer, a UDP stream and
//! iperf3, under tls-crypt and tls-auth, IPv4 and IPv6 underlays.

use anyhow::{Context, Result};
use e2e::*;
use std::net::IpAddr;
use std::time::Duration;

const START: Duration = Duration::from_secs(30);

struct Pair {
    server: StockOpenvpn,
    client: StockOpenvpn,
    _link: VethPair,
    // Declared last so processes stop before the namespaces go.
    server_ns: Netns,
    client_ns: Netns,
    _work: TempDir,
}

fn stock_pair(
    prefix: &str,
    pki: &Pki,
    v6: bool,
    wrap: impl Fn(OvpnConfig) -> OvpnConfig,
) -> Result<Pair> {
    let server_ns = Netns::new(prefix)?;
    let client_ns = Netns::new(prefix)?;
    let link = VethPair::new(&server_ns, &client_ns, &VethConfig::default())?;
    let work = TempDir::new(prefix)?;
    let mut scfg = wrap(OvpnConfig::server(pki))
        .server_ipv6("fd00:8::/64")
        .ccd("client1", &["ifconfig-push 10.8.0.50 255.255.255.0"]);
    if v6 {
        scfg = scfg.proto(Proto::Udp6);
    }
    let server = StockOpenvpn::start(&server_ns, &scfg, work.path(), "server", START)?;
    let ccfg = wrap(OvpnConfig::client(pki, "client1", link.a_addr(v6))?);
    let client = StockOpenvpn::start(&client_ns, &ccfg, work.path(), "client", START)?;
    Ok(Pair {
        server,
        client,
        _link: link,
        server_ns,
        client_ns,
        _work: work,
    })
}

fn exercise(p: &Pair, v6_inner: bool) -> Result<()> {
    let (server_vpn, client_vpn): (IpAddr, IpAddr) = if v6_inner {
        ("fd00:8::1".parse()?, "fd00:8::1000".parse()?)
    } else {
        ("10.8.0.1".parse()?, "10.8.0.50".parse()?)
    };
    let r = ping(&p.client_ns, server_vpn, &PingOpts::count(5))?.expect_success()?;
    assert!(r.rtt_avg_ms().is_some_and(|rtt| rtt > 0.0), "{r:?}");
    // The ccd entry gave the client 10.8.0.50 / the first v6 pool address.
    ping(&p.server_ns, client_vpn, &PingOpts::count(2))?
        .expect_success()
        .context("server -> client")?;
    // Nothing answers outside the tunnel network.
    ping(
        &p.client_ns,
        "10.8.0.99".parse()?,
        &PingOpts {
            count: 2,
            wait: Duration::from_millis(300),
            ..Default::default()
        },
    )?
    .expect_failure()?;

    let up = bulk_tcp_transfer(
        &p.client_ns,
        &p.server_ns,
        server_vpn,
        &BulkOpts {
            bytes: 8 << 20,
            seed: 1,
            port: 6001,
            ..Default::default()
        },
    )?;
    assert_eq!(up.bytes, 8 << 20);
    let down = bulk_tcp_transfer(
        &p.server_ns,
        &p.client_ns,
        client_vpn,
        &BulkOpts {
            bytes: 8 << 20,
            seed: 2,
            port: 6002,
            ..Default::default()
        },
    )?;
    assert_eq!(down.bytes, 8 << 20);
    eprintln!(
        "bulk: up {:.0} Mbit/s, down {:.0} Mbit/s",
        up.bps() / 1e6,
        down.bps() / 1e6
    );

    let udp = udp_stream(
        &p.client_ns,
        &p.server_ns,
        server_vpn,
        &UdpStreamOpts {
            count: 3000,
            rate_pps: Some(1000),
            port: 6003,
            ..Default::default()
        },
    )?;
    eprintln!("udp: {udp:?}");
    // A userspace tunnel on a busy 2-core machine may drop a few datagrams; it must not
    // corrupt or duplicate any.
    udp.expect_loss_below(2.0)?;
    Ok(())
}

#[test]
fn stock_pair_tls_crypt_rsa_ipv4() -> Result<()> {
    if !require_tools(&["openvpn", "openssl", "ping", "ethtool"]) {
        return Ok(());
    }
    let pki = Pki::new("hbt", KeyAlgo::Rsa2048)?;
    let p = stock_pair("hbt", &pki, false, |c| {
        c.tls_crypt(&pki).data_ciphers(&["AES-256-GCM"])
    })?;
    exercise(&p, false)?;
    exercise(&p, true)?;
    assert!(
        p.client.log().contains("AES-256-GCM"),
        "{}",
        p.client.log_tail(20)
    );

    let server = Iperf3Server::start(&p.server_ns, 5201)?;
    let r = iperf3_client(
        &p.client_ns,
        "10.8.0.1".parse()?,
        server.port(),
        &Iperf3Opts {
            duration: Duration::from_secs(2),
            ..Default::default()
        },
    )?;
    assert!(r.received_bps > 0.0 && r.retransmits.is_some(), "{r:?}");
    let r = iperf3_client(
        &p.client_ns,
        "10.8.0.1".parse()?,
        server.port(),
        &Iperf3Opts {
            duration: Duration::from_secs(2),
            udp_rate: Some(50_000_000),
            reverse: true,
            ..Default::default()
        },
    )?;
    assert!(r.received_bps > 0.0 && r.lost_percent.is_some(), "{r:?}");
    Ok(())
}

#[test]
fn stock_pair_tls_auth_ecdsa_ipv6_underlay() -> Result<()> {
    if !require_tools(&["openvpn", "openssl", "ping", "ethtool"]) {
        return Ok(());
    }
    let pki = Pki::new("hbu", KeyAlgo::EcP256)?;
    let p = stock_pair("hbu", &pki, true, |c| {
        c.tls_auth(&pki, Some("SHA256"))
            .data_ciphers(&["CHACHA20-POLY1305", "AES-128-GCM"])
    })?;
    exercise(&p, false)?;
    exercise(&p, true)?;
    assert!(
        p.server.log().contains("CHACHA20-POLY1305"),
        "{}",
        p.server.log_tail(20)
    );
    Ok(())
}

#[test]
fn revoked_client_is_refused_and_inline_config_works() -> Result<()> {
    if !require_tools(&["openvpn", "openssl", "ping"]) {
        return Ok(());
    }
    let pki = Pki::new("hbr", KeyAlgo::EcP256)?;
    pki.client("good")?;
    pki.client("bad")?;
    pki.revoke("bad")?;
    let server_ns = Netns::new("hbr")?;
    let client_ns = Netns::new("hbr")?;
    let link = VethPair::new(
        &server_ns,
        &client_ns,
        &VethConfig {
            offloads: Offloads::Off,
            mtu: Some(1400),
            ..Default::default()
        },
    )?;
    let work = TempDir::new("hbr")?;
    let scfg = OvpnConfig::server(&pki)
        .tls_crypt(&pki)
        .crl_verify(&pki)
        .inline_files(true);
    let mut server = StockOpenvpn::start(&server_ns, &scfg, work.path(), "server", START)?;
    assert!(std::fs::read_to_string(server.config_path())?.contains("<tls-crypt>"));

    let bad = OvpnConfig::client(&pki, "bad", link.a_v4.into())?.tls_crypt(&pki);
    let mut bad = StockOpenvpn::spawn(&client_ns, &bad, work.path(), "bad")?;
    server.wait_for_log("certificate revoked", START)?;
    assert!(bad.wait_initialized(Duration::from_secs(3)).is_err());
    drop(bad);

    let good = OvpnConfig::client(&pki, "good", link.a_v4.into())?
        .tls_crypt(&pki)
        .inline_files(true);
    let _good = StockOpenvpn::start(&client_ns, &good, work.path(), "good", START)?;
    ping(&client_ns, "10.8.0.1".parse()?, &PingOpts::count(2))?.expect_success()?;
    // The underlay MTU took effect and offloads are off.
    let out = client_ns.run(&["ip", "link", "show", &link.b_if])?;
    assert!(out.contains("mtu 1400"), "{out}");
    let k = client_ns.run(&["ethtool", "-k", &link.b_if])?;
    assert!(k.contains("generic-segmentation-offload: off"), "{k}");
    Ok(())
}

#[test]
fn pki_certificates_carry_easy_rsa_extensions() -> Result<()> {
    if !require_tools(&["openssl", "openvpn"]) {
        return Ok(());
    }
    let pki = Pki::new("hbp", KeyAlgo::Rsa2048)?;
    let text = |p: &std::path::Path| -> Result<String> {
        let out = std::process::Command::new("openssl")
            .args(["x509", "-noout", "-text", "-in"])
            .arg(p)
            .output()?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let ca = text(&pki.ca_cert())?;
    assert!(
        ca.contains("CA:TRUE") && ca.contains("Certificate Sign, CRL Sign"),
        "{ca}"
    );
    let server = text(&pki.server().cert)?;
    assert!(
        server.contains("TLS Web Server Authentication") && server.contains("Subject: CN = server"),
        "{server}"
    );
    assert!(server.contains("Public-Key: (2048 bit)"), "{server}");
    let client = text(&pki.client("alice")?.cert)?;
    assert!(
        client.contains("TLS Web Client Authentication") && client.contains("Subject: CN = alice"),
        "{client}"
    );
    let key = std::fs::read_to_string(pki.tls_key())?;
    assert!(key.contains("-----BEGIN OpenVPN Static key V1-----"));
    assert!(pki.client("../x").is_err());
    pki.revoke("alice")?;
    let crl = std::process::Command::new("openssl")
        .args(["crl", "-noout", "-text", "-in"])
        .arg(pki.crl())
        .output()?;
    assert!(
        String::from_utf8_lossy(&crl.stdout).contains("Serial Number"),
        "revoked serial listed in the CRL"
    );
    let v2 = std::fs::read_to_string(pki.tls_crypt_v2_client_key("alice")?)?;
    assert!(v2.contains("BEGIN OpenVPN tls-crypt-v2 client key"));
    Ok(())
}

#[test]
fn netns_guard_removes_namespace_and_processes() -> Result<()> {
    if !require_root() {
        return Ok(());
    }
    let ns = Netns::new("hbn")?;
    let name = ns.name().to_string();
    let mut child = ns.command("sleep").arg("60").spawn()?;
    let pid = child.id() as i32;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !ns.pids().contains(&pid) {
        assert!(
            std::time::Instant::now() < deadline,
            "sleep not seen in the namespace"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Threads entered with setns really are inside.
    let inside = ns.in_ns(|| Ok(std::fs::read_link("/proc/thread-self/ns/net")?))?;
    let outside = std::fs::read_link("/proc/thread-self/ns/net")?;
    assert_ne!(inside, outside);
    drop(ns);
    assert!(
        child.wait()?.code().is_none(),
        "sleep was killed by a signal"
    );
    let list = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()?;
    assert!(!String::from_utf8_lossy(&list.stdout).contains(&name));
    Ok(())
}
