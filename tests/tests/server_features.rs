//! Our server with several stock OpenVPN 2.6 clients: client-to-client through the daemon,
//! iroute subnets, the source-address check, and renegotiation under continuous traffic.

use std::net::IpAddr;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, ensure};
use e2e::*;

const START: Duration = Duration::from_secs(40);

fn can_run() -> bool {
    require_root() && require_tools(&["openvpn", "ping"]) && require_ours()
}

/// Sends one UDP datagram from `src` (an address of the sender's namespace) to `dst:port`
/// and reports whether the receiver namespace got it within `wait`.
fn udp_probe(
    sender: &Netns,
    receiver: &Netns,
    src: IpAddr,
    dst: IpAddr,
    port: u16,
    wait: Duration,
) -> Result<bool> {
    let rx = receiver.spawn_thread(move || -> Result<bool> {
        let s = std::net::UdpSocket::bind((IpAddr::from([0, 0, 0, 0]), port))?;
        s.set_read_timeout(Some(wait))?;
        let mut buf = [0u8; 64];
        Ok(matches!(s.recv_from(&mut buf), Ok((n, _)) if &buf[..n] == b"probe"))
    })?;
    std::thread::sleep(Duration::from_millis(200));
    sender.in_ns(move || -> Result<()> {
        let s = std::net::UdpSocket::bind((src, 0)).context("binding the probe source")?;
        for _ in 0..3 {
            s.send_to(b"probe", (dst, port))?;
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    })?;
    rx.join().map_err(|_| anyhow!("probe receiver panicked"))?
}

#[test]
fn three_clients_client_to_client_iroute_and_source_check() -> Result<()> {
    if !can_run() {
        return Ok(());
    }
    let server_ns = Netns::new("smc")?;
    let work = TempDir::new("smc")?;
    let pki = Pki::new("smc", KeyAlgo::EcP256)?;
    let mut clients = Vec::new();
    let mut links = Vec::new();
    for _ in 0..3 {
        let ns = Netns::new("smc")?;
        links.push(VethPair::new(&server_ns, &ns, &VethConfig::default())?);
        clients.push(ns);
    }
    // client3 has a LAN behind it (iroute), reachable from the others.
    clients[2].run(&["ip", "addr", "add", "192.168.33.1/32", "dev", "lo"])?;
    let scfg = OvpnConfig::server(&pki)
        .tls_crypt(&pki)
        .dev("smcs")
        .extra("dev-type tun")
        .extra("route 192.168.33.0 255.255.255.0")
        .extra("push \"route 192.168.33.0 255.255.255.0\"")
        .extra("client-to-client")
        .extra(&format!(
            "status {} 1",
            work.path().join("status.log").display()
        ))
        .extra("status-version 2")
        .ccd("client1", &["ifconfig-push 10.8.0.11 255.255.255.0"])
        .ccd("client2", &["ifconfig-push 10.8.0.12 255.255.255.0"])
        .ccd(
            "client3",
            &[
                "ifconfig-push 10.8.0.13 255.255.255.0",
                "iroute 192.168.33.0 255.255.255.0",
            ],
        );
    let server = Ours::start(&server_ns, &scfg, work.path(), "server", START)?;
    let mut procs = Vec::new();
    for (i, ns) in clients.iter().enumerate() {
        let cn = format!("client{}", i + 1);
        let cfg = OvpnConfig::client(&pki, &cn, links[i].a_addr(false))?
            .tls_crypt(&pki)
            .dev(&format!("smc{i}"))
            .extra("dev-type tun");
        procs.push(
            StockOpenvpn::start(ns, &cfg, work.path(), &cn, START)
                .map_err(|e| anyhow!("{e}\n--- server log ---\n{}", server.log()))?,
        );
    }
    let fail = |e: anyhow::Error| anyhow!("{e}\n--- server log ---\n{}", server.log());
    let ip = |s: &str| -> IpAddr { s.parse().unwrap() };
    // Every client reaches the server and every other client (client-to-client inside the
    // daemon), and the LAN behind client3.
    for (i, ns) in clients.iter().enumerate() {
        ping(ns, ip("10.8.0.1"), &PingOpts::count(2))?
            .expect_success()
            .map_err(fail)?;
        for j in 0..3 {
            if i != j {
                ping(ns, ip(&format!("10.8.0.1{}", j + 1)), &PingOpts::count(2))?
                    .expect_success()
                    .map_err(|e| fail(anyhow!("client{} -> client{}: {e}", i + 1, j + 1)))?;
            }
        }
    }
    ping(&clients[0], ip("192.168.33.1"), &PingOpts::count(2))?
        .expect_success()
        .map_err(fail)?;
    ping(&server_ns, ip("192.168.33.1"), &PingOpts::count(2))?
        .expect_success()
        .map_err(fail)?;
    bulk_tcp_transfer(
        &clients[0],
        &clients[1],
        ip("10.8.0.12"),
        &BulkOpts {
            bytes: 2 << 20,
            ..Default::default()
        },
    )
    .map_err(fail)?;

    // The OpenVPN status file (version 2) lists the three clients for existing monitoring.
    std::thread::sleep(Duration::from_millis(1500));
    let status = std::fs::read_to_string(work.path().join("status.log"))?;
    for (cn, v4) in [
        ("client1", "10.8.0.11"),
        ("client2", "10.8.0.12"),
        ("client3", "10.8.0.13"),
    ] {
        ensure!(
            status
                .lines()
                .any(|l| l.starts_with(&format!("CLIENT_LIST,{cn},"))
                    && l.contains(&format!(",{v4},"))),
            "status file lacks {cn}:\n{status}"
        );
        ensure!(
            status.contains(&format!("ROUTING_TABLE,{v4},{cn},")),
            "routing table lacks {cn}:\n{status}"
        );
    }
    ensure!(
        status.starts_with("TITLE,") && status.ends_with("END\n"),
        "{status}"
    );

    // Spoofing: client1 claims client3's address and an address outside its own. Neither
    // reaches client2; the legitimate source does.
    clients[0].run(&["ip", "addr", "add", "10.8.0.13/32", "dev", "smc0"])?;
    clients[0].run(&["ip", "addr", "add", "10.8.0.99/32", "dev", "smc0"])?;
    let wait = Duration::from_millis(800);
    ensure!(
        udp_probe(
            &clients[0],
            &clients[1],
            ip("10.8.0.11"),
            ip("10.8.0.12"),
            5601,
            wait
        )?,
        "legit probe lost"
    );
    ensure!(
        !udp_probe(
            &clients[0],
            &clients[1],
            ip("10.8.0.13"),
            ip("10.8.0.12"),
            5602,
            wait
        )?,
        "spoofed source (another client's address) was delivered"
    );
    ensure!(
        !udp_probe(
            &clients[0],
            &clients[1],
            ip("10.8.0.99"),
            ip("10.8.0.12"),
            5603,
            wait
        )?,
        "spoofed source (outside the client's addresses) was delivered"
    );
    // The server's own stack never sees them either.
    ensure!(
        !udp_probe(
            &clients[0],
            &server_ns,
            ip("10.8.0.99"),
            ip("10.8.0.1"),
            5604,
            wait
        )?,
        "spoofed packet reached the server's TUN"
    );
    drop(procs);
    Ok(())
}

/// A sequence-numbered UDP stream runs for a minute while the client renegotiates every
/// 10 s: nothing may be lost, duplicated or reordered.
fn reneg_under_traffic(prefix: &str, our_server: bool) -> Result<()> {
    if !can_run() {
        return Ok(());
    }
    let server_ns = Netns::new(prefix)?;
    let client_ns = Netns::new(prefix)?;
    let link = VethPair::new(&server_ns, &client_ns, &VethConfig::default())?;
    let work = TempDir::new(prefix)?;
    let pki = Pki::new(prefix, KeyAlgo::EcP256)?;
    let scfg = OvpnConfig::server(&pki)
        .tls_crypt(&pki)
        .dev(&format!("{prefix}s"))
        .extra("dev-type tun");
    let ccfg = OvpnConfig::client(&pki, "client1", link.a_addr(false))?
        .tls_crypt(&pki)
        .reneg_sec(10)
        .dev(&format!("{prefix}c"))
        .extra("dev-type tun");
    // Log paths of whichever side is ours and whichever is stock.
    let (server_log, client_log): (std::path::PathBuf, std::path::PathBuf);
    let _guards: (Box<dyn std::any::Any>, Box<dyn std::any::Any>);
    if our_server {
        let s = Ours::start(&server_ns, &scfg, work.path(), "server", START)?;
        let c = StockOpenvpn::start(&client_ns, &ccfg, work.path(), "client", START)?;
        (server_log, client_log) = (
            s.process.log_path().to_path_buf(),
            c.log_path().to_path_buf(),
        );
        _guards = (Box::new(s), Box::new(c));
    } else {
        let s = StockOpenvpn::start(&server_ns, &scfg, work.path(), "server", START)?;
        let c = Ours::start(&client_ns, &ccfg, work.path(), "client", START)?;
        (server_log, client_log) = (
            s.log_path().to_path_buf(),
            c.process.log_path().to_path_buf(),
        );
        _guards = (Box::new(s), Box::new(c));
    }
    let read = |p: &std::path::Path| std::fs::read_to_string(p).unwrap_or_default();
    // Sequence-numbered streams both ways at once, so each side both encrypts and decrypts
    // across every key change (the client is the pool's first address, 10.8.0.2).
    let opts = UdpStreamOpts {
        count: 12_000,
        payload_len: 400,
        rate_pps: Some(200),
        timeout: Duration::from_secs(90),
        linger: Duration::from_secs(2),
        ..Default::default()
    };
    let (up, down) = std::thread::scope(|sc| {
        let down = sc.spawn(|| {
            let o = UdpStreamOpts {
                port: opts.port + 1,
                seed: opts.seed ^ 0x5a5a,
                ..opts.clone()
            };
            udp_stream(
                &server_ns,
                &client_ns,
                "10.8.0.2".parse().expect("address"),
                &o,
            )
        });
        let up = udp_stream(
            &client_ns,
            &server_ns,
            "10.8.0.1".parse().expect("address"),
            &opts,
        );
        (up, down.join().expect("reverse stream thread"))
    });
    // On failure: both logs and our daemon's own counters (drops by reason), which say
    // whether a lost packet died in our data path or beyond it.
    let (our_ns, our_dev) = if our_server {
        (&server_ns, format!("{prefix}s"))
    } else {
        (&client_ns, format!("{prefix}c"))
    };
    let logs = || {
        let ovpnctl = bin_dir().join("ovpnctl").display().to_string();
        let stats = our_ns
            .run_output(
                &[&ovpnctl, "--ifname", &our_dev, "stats"],
                Duration::from_secs(10),
            )
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_else(|e| format!("(ovpnctl stats failed: {e})"));
        format!(
            "--- server log ---\n{}\n--- client log ---\n{}\n--- our daemon's counters ---\n{stats}",
            read(&server_log),
            read(&client_log)
        )
    };
    for (dir, report) in [("client -> server", up?), ("server -> client", down?)] {
        ensure!(
            report.sent == 12_000
                && report.unique == report.sent
                && report.lost == 0
                && report.duplicates == 0
                && report.reordered == 0
                && report.corrupted == 0,
            "UDP stream {dir} across renegotiations not perfect: {report:?}\n{}",
            logs()
        );
    }
    // At least five renegotiations happened (key-ids 1.. on the wire).
    let stock_log = if our_server {
        read(&client_log)
    } else {
        read(&server_log)
    };
    let renegs = stock_log
        .matches("Control Channel: TLS")
        .count()
        .saturating_sub(1);
    ensure!(
        renegs >= 5,
        "only {renegs} renegotiations in a minute\n{}",
        logs()
    );
    // The stock side never failed to open one of our packets across the key changes.
    ensure!(
        !stock_log.contains("Authenticate/Decrypt packet error"),
        "the stock peer refused some of our packets\n{}",
        logs()
    );
    Ok(())
}

#[test]
fn renegotiation_every_10s_stock_client_our_server() -> Result<()> {
    reneg_under_traffic("srs", true)
}

#[test]
fn renegotiation_every_10s_our_client_stock_server() -> Result<()> {
    reneg_under_traffic("src", false)
}
