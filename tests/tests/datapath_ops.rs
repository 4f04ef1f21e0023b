//! The data path under operation with a stock OpenVPN 2.6 client: keepalive expiry with the
//! DEL_PEER notification, float to a new source port, and junk at the UDP port counted and
//! dropped while a transfer goes on. Counters and notifications are read over the daemon's
//! IPC socket, as `ovpnctl` does.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, ensure};
use control_ipc::Client;
use control_ipc::message::Notification;
use control_ipc::schema::{InterfaceStats, NotificationKind};
use e2e::*;

const START: Duration = Duration::from_secs(40);

fn can_run() -> bool {
    require_root() && require_tools(&["openvpn", "ping", "nft", "tcpdump"]) && require_ours()
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn socket(ns: &Netns, dev: &str) -> PathBuf {
    PathBuf::from(format!("/run/dco/{}/{dev}.sock", ns.name()))
}

fn drop_count(s: &InterfaceStats, name: &str) -> u64 {
    s.drops
        .iter()
        .find(|d| d.name == name)
        .map(|d| d.value)
        .unwrap_or(0)
}

struct Setup {
    server_ns: Netns,
    client_ns: Netns,
    link: VethPair,
    _work: TempDir,
    server: Ours,
    client: StockOpenvpn,
    dev: String,
}

fn setup(prefix: &str, server_extra: &[&str]) -> Result<Setup> {
    let server_ns = Netns::new(prefix)?;
    let client_ns = Netns::new(prefix)?;
    let link = VethPair::new(&server_ns, &client_ns, &VethConfig::default())?;
    let work = TempDir::new(prefix)?;
    let pki = Pki::new(prefix, KeyAlgo::EcP256)?;
    let dev = format!("{prefix}s");
    let mut scfg = OvpnConfig::server(&pki)
        .tls_crypt(&pki)
        .dev(&dev)
        .extra("dev-type tun");
    for e in server_extra {
        scfg = scfg.extra(e);
    }
    let server = Ours::start(&server_ns, &scfg, work.path(), "server", START)?;
    let ccfg = OvpnConfig::client(&pki, "client1", link.a_addr(false))?
        .tls_crypt(&pki)
        .dev(&format!("{prefix}c"))
        .extra("dev-type tun");
    let client = StockOpenvpn::start(&client_ns, &ccfg, work.path(), "client", START)
        .map_err(|e| anyhow!("{e}\n--- server log ---\n{}", server.log()))?;
    Ok(Setup {
        server_ns,
        client_ns,
        link,
        _work: work,
        server,
        client,
        dev,
    })
}

#[test]
fn keepalive_timeout_deletes_a_silent_peer_and_notifies() -> Result<()> {
    if !can_run() {
        return Ok(());
    }
    // Server: ping 1 s, expire after 2 x 3 s without anything authenticated.
    let s = setup("dko", &["keepalive 1 3"])?;
    ping(&s.client_ns, "10.8.0.1".parse()?, &PingOpts::count(2))?.expect_success()?;
    let path = socket(&s.server_ns, &s.dev);
    // The operator's view: `ovpnctl watch` in the server's namespace (default socket path).
    let ovpnctl = bin_dir().join("ovpnctl");
    let dev = s.dev.clone();
    let watch = s
        .server_ns
        .spawn_thread(move || -> Result<std::process::Output> {
            let mut cmd = std::process::Command::new("timeout");
            cmd.args(["25"]).arg(&ovpnctl).args([
                "--ifname", &dev, "watch", "--type", "del-peer", "--count", "1",
            ]);
            Ok(cmd.output()?)
        })?;
    std::thread::sleep(Duration::from_millis(500));
    let rt = rt();
    let note = rt.block_on(async {
        let client = Client::connect(&path)
            .await
            .context("connecting to the daemon")?;
        let mut sub = client.subscribe(&[NotificationKind::DelPeer], None).await?;
        ensure!(
            client.get_peers_all().await?.len() == 1,
            "peer not installed"
        );
        // The client goes silent (stopped, not killed: no exit notification).
        s.client.signal(libc::SIGSTOP);
        let n = tokio::time::timeout(Duration::from_secs(15), sub.next())
            .await
            .context("no DEL_PEER within 15 s")?;
        s.client.signal(libc::SIGCONT);
        ensure!(
            client.get_peers_all().await?.is_empty(),
            "peer still installed after DEL_PEER"
        );
        Ok::<_, anyhow::Error>(n)
    })?;
    let out = watch
        .join()
        .map_err(|_| anyhow!("watch thread panicked"))??;
    let text = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success() && text.contains("DEL_PEER peer 0"),
        "ovpnctl watch did not show the DEL_PEER: status {:?}\nstdout: {text}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    match note {
        Some(Notification::DelPeer(d)) => {
            ensure!(d.peerid == 0, "{d:?}");
            ensure!(
                d.del_reason.to_string() == "timeout",
                "reason {}",
                d.del_reason
            );
            ensure!(
                d.packets.rx > 0 && d.bytes.rx > 0,
                "final counters missing: {d:?}"
            );
        }
        other => {
            return Err(anyhow!(
                "unexpected notification {other:?}\n{}",
                s.server.log()
            ));
        }
    }
    Ok(())
}

#[test]
fn float_to_a_new_source_port_keeps_the_session() -> Result<()> {
    if !can_run() {
        return Ok(());
    }
    let s = setup("dfl", &[])?;
    ping(&s.client_ns, "10.8.0.1".parse()?, &PingOpts::count(2))?.expect_success()?;
    let path = socket(&s.server_ns, &s.dev);
    let rt = rt();
    let before = rt.block_on(async { Client::connect(&path).await?.get_peers_all().await })?;
    let old: SocketAddr = before.first().context("no peer")?.remote;
    // A NAT rebinding: from now on the client's packets leave from another source port.
    let new_port = if old.port() == 40_000 { 40_001 } else { 40_000 };
    s.client_ns.run(&["nft", "add", "table", "ip", "dflnat"])?;
    s.client_ns.run(&[
        "nft",
        "add",
        "chain",
        "ip",
        "dflnat",
        "post",
        "{ type nat hook postrouting priority 100 ; }",
    ])?;
    s.client_ns.run(&[
        "nft",
        "add",
        "rule",
        "ip",
        "dflnat",
        "post",
        "udp",
        "dport",
        "1194",
        "snat",
        "to",
        &format!(":{new_port}"),
    ])?;
    s.client_ns.run(&["conntrack", "-F"]).ok();
    let (mut sub_note, peers) = rt.block_on(async {
        let client = Client::connect(&path).await?;
        let mut sub = client.subscribe(&[NotificationKind::Float], None).await?;
        // Traffic keeps flowing across the change.
        let ns_ping = ping(&s.client_ns, "10.8.0.1".parse()?, &PingOpts::count(3))?;
        ns_ping.expect_success()?;
        let n = tokio::time::timeout(Duration::from_secs(5), sub.next())
            .await
            .ok()
            .flatten();
        Ok::<_, anyhow::Error>((n, client.get_peers_all().await?))
    })?;
    let now: SocketAddr = peers.first().context("peer gone after float")?.remote;
    ensure!(
        now.port() == new_port && now.ip() == old.ip(),
        "peer endpoint {now}, expected port {new_port}"
    );
    match sub_note.take() {
        Some(Notification::Float(f)) => ensure!(f.address == now, "{f:?}"),
        other => return Err(anyhow!("no FLOAT notification: {other:?}")),
    }
    bulk_tcp_transfer(
        &s.client_ns,
        &s.server_ns,
        "10.8.0.1".parse()?,
        &BulkOpts {
            bytes: 2 << 20,
            ..Default::default()
        },
    )?;
    Ok(())
}

/// Captured UDP payloads of the client's packets to the server (pcap, Ethernet link type).
fn capture_payloads(file: &std::path::Path) -> Result<Vec<Vec<u8>>> {
    let b = std::fs::read(file)?;
    ensure!(b.len() >= 24, "short pcap");
    let mut out = Vec::new();
    let mut at = 24;
    while at + 16 <= b.len() {
        let incl = u32::from_le_bytes(b[at + 8..at + 12].try_into()?) as usize;
        let frame = b
            .get(at + 16..at + 16 + incl)
            .context("truncated pcap record")?;
        at += 16 + incl;
        // Ethernet (14) + IPv4 (ihl) + UDP (8).
        if frame.len() < 14 + 20 + 8 || frame[12..14] != [0x08, 0x00] {
            continue;
        }
        let ihl = usize::from(frame[14] & 0x0f) * 4;
        if let Some(p) = frame.get(14 + ihl + 8..) {
            out.push(p.to_vec());
        }
    }
    Ok(out)
}

#[test]
fn junk_at_the_udp_port_is_counted_and_dropped_while_a_transfer_runs() -> Result<()> {
    if !can_run() {
        return Ok(());
    }
    let s = setup("djk", &[])?;
    let server_ip: IpAddr = s.link.a_addr(false);
    ping(&s.client_ns, "10.8.0.1".parse()?, &PingOpts::count(2))?.expect_success()?;
    // Capture some of the client's real data packets for replays.
    let pcap = std::env::temp_dir().join(format!("djk-{}.pcap", std::process::id()));
    let veth = s.link.b_if.clone();
    let pcap2 = pcap.clone();
    let cap = s.client_ns.spawn_thread(move || -> Result<()> {
        let out = std::process::Command::new("timeout")
            .args(["8", "tcpdump", "-U", "-n", "-i", &veth, "-c", "20", "-w"])
            .arg(&pcap2)
            .args(["udp", "and", "dst", "port", "1194", "and", "greater", "100"])
            .output()?;
        ensure!(
            out.status.success() || pcap2.exists(),
            "tcpdump: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    })?;
    std::thread::sleep(Duration::from_millis(700));
    ping(
        &s.client_ns,
        "10.8.0.1".parse()?,
        &PingOpts {
            count: 25,
            interval: Duration::from_millis(20),
            size: Some(200),
            ..Default::default()
        },
    )?
    .expect_success()?;
    cap.join()
        .map_err(|_| anyhow!("capture thread panicked"))??;
    let captured = capture_payloads(&pcap)?;
    let _ = std::fs::remove_file(&pcap);
    ensure!(
        captured.len() >= 5 && captured.iter().all(|p| p[0] >> 3 == 9),
        "need captured DATA_V2 packets, got {}",
        captured.len()
    );

    let path = socket(&s.server_ns, &s.dev);
    let rt = rt();
    let before = rt.block_on(async { Client::connect(&path).await?.get_stats().await })?;

    // Junk from the client's namespace, from another port, during a verified transfer.
    let junk = s
        .client_ns
        .spawn_thread(move || -> Result<(u64, u64, u64, u64)> {
            let sock = std::net::UdpSocket::bind("0.0.0.0:0")?;
            let dst = SocketAddr::new(server_ip, 1194);
            let mut x = 0x9e37_79b9_7f4a_7c15u64;
            let mut rnd = move || {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x
            };
            let (mut random, mut unknown, mut badtag, mut replays) = (0, 0, 0, 0);
            for round in 0..300u64 {
                // Random bytes.
                let len = (rnd() % 1400) as usize + 1;
                let buf: Vec<u8> = (0..len).map(|_| rnd() as u8).collect();
                sock.send_to(&buf, dst)?;
                random += 1;
                // DATA_V2 for an unknown peer-id.
                let mut p = vec![0x48, 0x00, 0x03, 0xe7];
                p.extend((0..100).map(|_| rnd() as u8));
                sock.send_to(&p, dst)?;
                unknown += 1;
                // A captured packet with a damaged tag.
                let mut t = captured[(round as usize) % captured.len()].clone();
                t[10] ^= 0x55;
                sock.send_to(&t, dst)?;
                badtag += 1;
                // A replay of a captured packet.
                sock.send_to(&captured[(round as usize) % captured.len()], dst)?;
                replays += 1;
                std::thread::sleep(Duration::from_millis(5));
            }
            Ok((random, unknown, badtag, replays))
        })?;
    bulk_tcp_transfer(
        &s.client_ns,
        &s.server_ns,
        "10.8.0.1".parse()?,
        &BulkOpts {
            bytes: 8 << 20,
            ..Default::default()
        },
    )
    .map_err(|e| anyhow!("transfer under junk failed: {e}\n{}", s.server.log()))?;
    let (random, unknown, badtag, replays) =
        junk.join().map_err(|_| anyhow!("junk thread panicked"))??;
    std::thread::sleep(Duration::from_millis(300));
    let after = rt.block_on(async { Client::connect(&path).await?.get_stats().await })?;
    let d = |n: &str| drop_count(&after, n) - drop_count(&before, n);
    // Captured packets soon fall behind the replay window as the transfer moves on: those
    // are refused as too old before any AEAD work; newer ones fail the tag or the window.
    let (tag, replayed, old) = (d("tag_mismatch"), d("replayed"), d("too_old"));
    ensure!(
        tag + replayed + old >= badtag + replays,
        "tag {tag} + replayed {replayed} + too_old {old} < {}: {after:?}",
        badtag + replays
    );
    ensure!(
        tag > 0 && replayed > 0,
        "both damaged tags ({tag}) and replays ({replayed}) must be seen while fresh"
    );
    ensure!(
        after.lost_data.rx - before.lost_data.rx >= badtag + replays,
        "lost_data.in not counted"
    );
    // Random bytes and unknown peer-ids are not for the fast path: relayed to dco-control
    // (which drops them) or dropped by the relay's rate limit, and counted either way.
    let relayed = after.ctrl.rx - before.ctrl.rx;
    ensure!(
        relayed >= random + unknown - 5,
        "non-data packets counted {relayed} < {}",
        random + unknown
    );
    // The session is intact.
    ping(&s.client_ns, "10.8.0.1".parse()?, &PingOpts::count(2))?.expect_success()?;
    ensure!(
        s.server.log().contains("peer") && !s.server.log().contains("panicked"),
        "server log:\n{}",
        s.server.log()
    );
    Ok(())
}

#[test]
fn receive_batches_through_the_gpu_kernels_host_model() -> Result<()> {
    if !can_run() {
        return Ok(());
    }
    // Our server decrypts every receive batch in one call of the batch backend; with
    // `--gpu model` that backend is the host build of the CUDA kernels, so the batch path of
    // the daemon is exercised byte for byte against a stock client on any machine.
    let server_ns = Netns::new("dgm")?;
    let client_ns = Netns::new("dgm")?;
    let link = VethPair::new(&server_ns, &client_ns, &VethConfig::default())?;
    let work = TempDir::new("dgm")?;
    let pki = Pki::new("dgm", KeyAlgo::EcP256)?;
    let scfg = OvpnConfig::server(&pki)
        .tls_crypt(&pki)
        .dev("dgms")
        .extra("dev-type tun")
        .disable_dco(false);
    let config = scfg.write(work.path(), "server")?;
    let server = Ours::start_config(
        &server_ns,
        &config,
        work.path(),
        "server",
        START,
        &["--gpu", "model"],
    )?;
    let ccfg = OvpnConfig::client(&pki, "client1", link.a_addr(false))?
        .tls_crypt(&pki)
        .dev("dgmc")
        .extra("dev-type tun");
    let _client = StockOpenvpn::start(&client_ns, &ccfg, work.path(), "client", START)
        .map_err(|e| anyhow!("{e}\n{}", server.log()))?;
    ping(&client_ns, "10.8.0.1".parse()?, &PingOpts::count(3))?.expect_success()?;
    bulk_tcp_transfer(
        &client_ns,
        &server_ns,
        "10.8.0.1".parse()?,
        &BulkOpts {
            bytes: 2 << 20,
            ..Default::default()
        },
    )
    .map_err(|e| anyhow!("{e}\n{}", server.log()))?;
    let path = socket(&server_ns, "dgms");
    let info = rt().block_on(async { Client::connect(&path).await?.get_info().await })?;
    ensure!(info.crypto_backend.starts_with("batches"), "{info:?}");
    let gpu_packets = info
        .gpu
        .iter()
        .find(|c| c.name == "gpu_packets")
        .map(|c| c.value)
        .unwrap_or(0);
    ensure!(
        gpu_packets >= 1000,
        "the batch backend saw only {gpu_packets} packets: {info:?}"
    );
    Ok(())
}
