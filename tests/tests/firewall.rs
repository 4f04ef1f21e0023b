//! The stateful firewall in the data path with stock OpenVPN 2.6 clients: a rule lets
//! client1 reach one TCP port of client2 and nothing else; it holds in both directions,
//! replies of allowed connections pass, rejected connections get a RST back through the
//! tunnel, and the tracked flows are listed over the IPC (`ovpnctl ct list`, also `--json`).
//! The operator's commands against the running daemon: `ct watch`, `ct stats`, `fw load`
//! (a file with a syntax error refused with its line and column, the rules in force kept; a
//! good one replacing them at run time), `fw list` and `ct flush`.

use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Result, anyhow, ensure};
use control_ipc::Client;
use e2e::*;

const START: Duration = Duration::from_secs(40);

const RULES: &str = r#"
policy drop
ct state established,related accept
ct state invalid drop
# Peers may reach the server's host, and the host the peers.
from-peer to-host accept
from-host accept
# client1 may open TCP 7000 on client2; every other TCP between peers is refused.
between-peers from-peer cn "client1" to-peer cn "client2" tcp dport 7000 accept
between-peers meta l4proto tcp reject
"#;

fn connect(ns: &Netns, to: SocketAddr) -> Result<std::io::Result<()>> {
    ns.in_ns(move || Ok(TcpStream::connect_timeout(&to, Duration::from_secs(3)).map(|_| ())))
}

#[test]
fn one_tcp_port_between_two_clients() -> Result<()> {
    if !(require_root() && require_tools(&["openvpn", "ping"]) && require_ours()) {
        return Ok(());
    }
    let server_ns = Netns::new("fwl")?;
    let work = TempDir::new("fwl")?;
    let pki = Pki::new("fwl", KeyAlgo::EcP256)?;
    let rules = work.path().join("rules.fw");
    std::fs::write(&rules, RULES)?;
    let scfg = OvpnConfig::server(&pki)
        .tls_crypt(&pki)
        .dev("fwls")
        .extra("dev-type tun")
        .extra("client-to-client")
        .extra(&format!("firewall {}", rules.display()))
        .ccd("client1", &["ifconfig-push 10.8.0.11 255.255.255.0"])
        .ccd("client2", &["ifconfig-push 10.8.0.12 255.255.255.0"]);
    let server = Ours::start(&server_ns, &scfg, work.path(), "server", START)?;
    let mut nss = Vec::new();
    let mut procs = Vec::new();
    let mut links = Vec::new();
    for i in 0..2 {
        let ns = Netns::new("fwl")?;
        links.push(VethPair::new(&server_ns, &ns, &VethConfig::default())?);
        let cn = format!("client{}", i + 1);
        let cfg = OvpnConfig::client(&pki, &cn, links[i].a_addr(false))?
            .tls_crypt(&pki)
            .dev(&format!("fwl{i}"))
            .extra("dev-type tun");
        procs.push(
            StockOpenvpn::start(&ns, &cfg, work.path(), &cn, START)
                .map_err(|e| anyhow!("{e}\n{}", server.log()))?,
        );
        nss.push(ns);
    }
    let ip = |s: &str| -> IpAddr { s.parse().unwrap() };
    let fail = |e: anyhow::Error| anyhow!("{e}\n--- server log ---\n{}", server.log());
    // `ovpnctl ct watch` prints the tracker's events as they happen (conntrack -E style).
    let ovpnctl = bin_dir().join("ovpnctl");
    let watch = server_ns.spawn_thread(move || -> Result<std::process::Output> {
        Ok(std::process::Command::new("timeout")
            .arg("20")
            .arg(&ovpnctl)
            .args(["--ifname", "fwls", "ct", "watch", "--count", "1"])
            .output()?)
    })?;
    std::thread::sleep(Duration::from_millis(700));
    // Host traffic is allowed.
    ping(&nss[0], ip("10.8.0.1"), &PingOpts::count(2))?
        .expect_success()
        .map_err(fail)?;
    let out = watch
        .join()
        .map_err(|_| anyhow!("watch thread panicked"))??;
    let text = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success() && text.contains("[NEW]") && text.contains("src=10.8.0.11"),
        "ovpnctl ct watch: {:?}\n{text}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    // client1 -> client2:7000 works both ways (the replies pass), bytes checked.
    bulk_tcp_transfer(
        &nss[0],
        &nss[1],
        ip("10.8.0.12"),
        &BulkOpts {
            bytes: 1 << 20,
            port: 7000,
            ..Default::default()
        },
    )
    .map_err(fail)?;
    // Any other port is refused with a RST sent back through the tunnel.
    let listener = nss[1].spawn_thread(|| -> Result<()> {
        let l = std::net::TcpListener::bind("0.0.0.0:7001")?;
        l.set_nonblocking(true)?;
        std::thread::sleep(Duration::from_secs(4));
        ensure!(l.accept().is_err(), "a connection to port 7001 got through");
        Ok(())
    })?;
    std::thread::sleep(Duration::from_millis(200));
    let r = connect(&nss[0], SocketAddr::new(ip("10.8.0.12"), 7001))?;
    ensure!(
        matches!(&r, Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused),
        "client1 -> client2:7001 should be refused by a RST, got {r:?}"
    );
    listener
        .join()
        .map_err(|_| anyhow!("listener panicked"))??;
    // The rule is one-way: client2 may not open client1's port 7000.
    let back = nss[0].spawn_thread(|| -> Result<()> {
        let l = std::net::TcpListener::bind("0.0.0.0:7000")?;
        l.set_nonblocking(true)?;
        std::thread::sleep(Duration::from_secs(4));
        ensure!(l.accept().is_err(), "client2 reached client1:7000");
        Ok(())
    })?;
    std::thread::sleep(Duration::from_millis(200));
    let r = connect(&nss[1], SocketAddr::new(ip("10.8.0.11"), 7000))?;
    ensure!(
        matches!(&r, Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused),
        "client2 -> client1:7000 must be refused (reset by the firewall), got {r:?}"
    );
    back.join().map_err(|_| anyhow!("listener panicked"))??;
    // ICMP between peers falls to the drop policy.
    ping(
        &nss[0],
        ip("10.8.0.12"),
        &PingOpts {
            count: 2,
            wait: Duration::from_millis(500),
            ..Default::default()
        },
    )?
    .expect_failure()
    .map_err(fail)?;

    // The flows are tracked and listed; the rule counters moved.
    let path = PathBuf::from(format!("/run/dco/{}/fwls.sock", server_ns.name()));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (entries, rules) = rt.block_on(async {
        let c = Client::connect(&path).await?;
        Ok::<_, anyhow::Error>((c.ct_list_all(None).await?, c.fw_list().await?))
    })?;
    ensure!(
        entries
            .iter()
            .any(|e| e.proto == 6 && e.orig.dport == Some(7000) && e.orig.dst == ip("10.8.0.12")),
        "no tracked TCP flow to 10.8.0.12:7000: {entries:#?}"
    );
    let allow = rules
        .rules
        .iter()
        .find(|r| r.text.contains("dport 7000"))
        .ok_or_else(|| anyhow!("{rules:?}"))?;
    ensure!(allow.packets >= 1, "allow rule never matched: {rules:?}");
    let reject = rules
        .rules
        .iter()
        .find(|r| r.text.contains("reject"))
        .ok_or_else(|| anyhow!("{rules:?}"))?;
    ensure!(
        reject.packets >= 2,
        "reject rule counted {}: {rules:?}",
        reject.packets
    );
    // And the operator sees the flow in `ovpnctl ct list`, conntrack -L style.
    let ovpnctl = bin_dir().join("ovpnctl").display().to_string();
    let out = server_ns.run(&[&ovpnctl, "--ifname", "fwls", "ct", "list"])?;
    ensure!(
        out.lines().any(|l| l.starts_with("tcp")
            && l.contains("dst=10.8.0.12")
            && l.contains("dport=7000")),
        "ovpnctl ct list:\n{out}"
    );
    let ctl = |args: &[&str]| -> Result<std::process::Output> {
        let mut v = vec![ovpnctl.as_str(), "--ifname", "fwls"];
        v.extend_from_slice(args);
        server_ns.run_output(&v, Duration::from_secs(10))
    };
    let text = |o: &std::process::Output| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    };
    // `ct list --json` carries the same flows, machine-readable.
    let out = ctl(&["ct", "list", "--json"])?;
    let list: serde_json::Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| anyhow!("ct list --json: {e}: {}", text(&out)))?;
    let has_flow_to = |list: &serde_json::Value, port: u64| {
        list.as_array().is_some_and(|a| {
            a.iter().any(|e| {
                e["proto"] == 6 && e["orig"]["dst"] == "10.8.0.12" && e["orig"]["dport"] == port
            })
        })
    };
    ensure!(has_flow_to(&list, 7000), "ct list --json:\n{}", text(&out));
    // `ct stats` counts like `conntrack -S`.
    let out = ctl(&["ct", "stats"])?;
    let stats = text(&out);
    let field = |k: &str| -> Option<u64> {
        stats
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(k)?.strip_prefix('=')?.parse().ok())
    };
    ensure!(
        out.status.success()
            && field("entries").is_some_and(|n| n >= 1)
            && field("new").is_some_and(|n| n >= 2)
            && field("invalid").is_some()
            && field("early_drop") == Some(0),
        "ovpnctl ct stats: {stats}"
    );
    let keys: Vec<&str> = stats
        .split_whitespace()
        .filter_map(|kv| kv.split_once('=').map(|(k, _)| k))
        .collect();
    let unique: std::collections::HashSet<&&str> = keys.iter().collect();
    ensure!(
        unique.len() == keys.len(),
        "ovpnctl ct stats names a counter twice: {stats}"
    );

    // A rule file with a syntax error is refused with its line and column, and the rule set
    // in force stays: client1 still cannot open client2's port 7001.
    let bad = work.path().join("bad.fw");
    std::fs::write(&bad, "policy drop\nct state established,related acept\n")?;
    let out = ctl(&["fw", "load", &bad.display().to_string()])?;
    ensure!(
        !out.status.success()
            && text(&out).contains("line 2, column 30")
            && text(&out).contains("acept"),
        "a bad rule file must be refused with its position: {}",
        text(&out)
    );
    let r = connect(&nss[0], SocketAddr::new(ip("10.8.0.12"), 7001))?;
    ensure!(
        matches!(&r, Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused),
        "after a refused load, 7001 must still be rejected, got {r:?}"
    );
    // `fw load` replaces the rule set at run time: 7001 is now allowed as well.
    let good = work.path().join("more.fw");
    std::fs::write(
        &good,
        RULES.replace(
            "between-peers meta l4proto tcp reject",
            "between-peers from-peer cn \"client1\" to-peer cn \"client2\" tcp dport 7001 accept\n\
             between-peers meta l4proto tcp reject",
        ),
    )?;
    let out = ctl(&["fw", "load", &good.display().to_string()])?;
    ensure!(
        out.status.success() && text(&out).contains("7 rules loaded"),
        "fw load: {}",
        text(&out)
    );
    bulk_tcp_transfer(
        &nss[0],
        &nss[1],
        ip("10.8.0.12"),
        &BulkOpts {
            bytes: 64 << 10,
            port: 7001,
            ..Default::default()
        },
    )
    .map_err(fail)?;
    let out = ctl(&["fw", "list"])?;
    ensure!(
        text(&out).contains("dport 7001 accept"),
        "fw list after the load:\n{}",
        text(&out)
    );
    // `ct flush` empties the table; the flows are gone from the list.
    let out = ctl(&["ct", "flush"])?;
    let flushed: u64 = text(&out)
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    ensure!(
        out.status.success() && flushed >= 2,
        "ct flush: {}",
        text(&out)
    );
    let out = ctl(&["ct", "list", "--json"])?;
    let list: serde_json::Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| anyhow!("ct list --json: {e}: {}", text(&out)))?;
    ensure!(
        !has_flow_to(&list, 7000) && !has_flow_to(&list, 7001),
        "flows left after ct flush:\n{}",
        text(&out)
    );
    drop(procs);
    Ok(())
}
