//! The demo behind `dco-demo` (and `scripts/demo.sh`): two network namespaces joined by a
//! veth pair, a throwaway PKI, our server (`dco-control` + `dco-daemon`) in one namespace,
//! then a stock OpenVPN 2.6 client and our own client in turn in the other; each gets a
//! ping and a short iperf3 run both ways, and the server daemon's data-path counters are
//! read over its IPC socket. Everything it creates is removed at the end, also on Ctrl-C.

use anyhow::{Context, Result, anyhow, bail};
use e2e::{
    Iperf3Opts, Iperf3Server, KeyAlgo, Netns, Ours, OvpnConfig, PingOpts, Pki, StockOpenvpn,
    TempDir, VethConfig, VethPair, iperf3_client, ping,
};
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::cleanup;
use crate::ipc::{DaemonIpc, StatsDelta};

/// Which client connects to our server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientKind {
    /// Debian's stock OpenVPN 2.6 (`openvpn --config`, `disable-dco`).
    Stock,
    /// Our `dco-control` in client mode (with its own `dco-daemon`).
    Ours,
}

impl ClientKind {
    /// Parses `stock` / `ours`.
    pub fn parse(s: &str) -> Option<ClientKind> {
        match s {
            "stock" => Some(ClientKind::Stock),
            "ours" => Some(ClientKind::Ours),
            _ => None,
        }
    }
}

/// Settings of one demo run.
#[derive(Debug, Clone)]
pub struct DemoConfig {
    /// Namespace prefix (namespaces are `PREFIX-PID-N`).
    pub prefix: String,
    /// Length of each iperf3 direction.
    pub iperf: Duration,
    /// Pings per client.
    pub pings: u32,
    /// Clients, in order.
    pub clients: Vec<ClientKind>,
    /// Where `dco-control` and `dco-daemon` are.
    pub bin_dir: PathBuf,
    /// Worker threads of our daemons (default: theirs, one per core).
    pub workers: Option<usize>,
    /// Copy every config and log here at the end.
    pub keep_logs: Option<PathBuf>,
}

/// What one client session measured.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ClientRow {
    /// Who connected.
    pub client: String,
    /// Spawn to "Initialization Sequence Completed", seconds (process start, TLS handshake,
    /// key exchange, push, TUN setup).
    pub handshake_s: Option<f64>,
    /// Data cipher the server installed for the peer.
    pub cipher: Option<String>,
    /// Average ping RTT through the tunnel, ms.
    pub ping_ms: Option<f64>,
    /// Pings answered / sent.
    pub ping_replies: Option<(u32, u32)>,
    /// iperf3 TCP client → server, Mbit/s received.
    pub up_mbps: Option<f64>,
    /// iperf3 TCP server → client, Mbit/s received.
    pub down_mbps: Option<f64>,
    /// The server daemon's counters over the session.
    pub server: Option<StatsDelta>,
    /// The client's daemon counters (our client only).
    pub client_daemon: Option<StatsDelta>,
    /// What went wrong, if anything.
    pub error: Option<String>,
}

/// Everything the demo produced.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct DemoReport {
    /// One row per client.
    pub rows: Vec<ClientRow>,
}

const START: Duration = Duration::from_secs(30);
const IPERF_PORT: u16 = 5201;
const SERVER_VPN: Ipv4Addr = Ipv4Addr::new(10, 8, 0, 1);

/// Prints a step line and flushes (the demo is watched live).
fn step(n: usize, total: usize, what: &str) {
    println!("[{n}/{total}] {what}");
    let _ = std::io::stdout().flush();
}

fn detail(what: &str) {
    println!("      {what}");
    let _ = std::io::stdout().flush();
}

/// Runs the demo. Rows measured before a failure are in `report` even when this fails.
pub fn run(cfg: &DemoConfig, report: &mut DemoReport) -> Result<()> {
    let total = 4 + cfg.clients.len() + 1;
    let mut n = 0;
    let mut next = |what: &str| {
        n += 1;
        step(n, total, what);
    };

    next("checking tools (openvpn, iperf3, ping, ip, ethtool, openssl) and our binaries");
    e2e::ensure_tools(&[
        "openvpn", "iperf3", "ping", "ip", "ss", "ethtool", "openssl",
    ])?;
    for b in ["dco-control", "dco-daemon"] {
        let p = cfg.bin_dir.join(b);
        if !p.exists() {
            bail!(
                "{} is missing: build it with `cargo build --release -p dco-control -p dco-daemon` (or pass --bin-dir)",
                p.display()
            );
        }
    }
    let stock_version = openvpn_version();
    detail(&format!(
        "{stock_version}; ours from {}",
        cfg.bin_dir.display()
    ));

    next("creating two network namespaces joined by a veth pair");
    // Declared before the namespaces, so dropped after them, also on an early return.
    let mut socket_dirs = SocketDirs::default();
    let server_ns = Netns::new(&cfg.prefix)?;
    cleanup::register_netns(server_ns.name());
    socket_dirs.0.push(server_ns.name().into());
    let client_ns = Netns::new(&cfg.prefix)?;
    cleanup::register_netns(client_ns.name());
    socket_dirs.0.push(client_ns.name().into());
    let link = VethPair::new(&server_ns, &client_ns, &VethConfig::default())?;
    detail(&format!(
        "server side: netns {} {} {}/24",
        server_ns.name(),
        link.a_if,
        link.a_v4
    ));
    detail(&format!(
        "client side: netns {} {} {}/24",
        client_ns.name(),
        link.b_if,
        link.b_v4
    ));

    next("generating a throwaway PKI (EC P-256 CA, server and client certificates, tls-crypt key)");
    let work = TempDir::new(&format!("{}-demo", cfg.prefix))?;
    cleanup::register_dir(work.path().to_path_buf());
    // Dropped before `work`: the logs are copied out on every path, failures included.
    let keep = KeepLogs(cfg.keep_logs.clone(), work.path().to_path_buf());
    let t = Instant::now();
    let pki = Pki::new(&cfg.prefix, KeyAlgo::EcP256)?;
    cleanup::register_dir(pki.dir().to_path_buf());
    detail(&format!(
        "{} in {:.1} s",
        pki.dir().display(),
        t.elapsed().as_secs_f64()
    ));

    let mut extra: Vec<String> = Vec::new();
    if let Some(w) = cfg.workers {
        extra.extend(["--workers".into(), w.to_string()]);
    }
    let extra_ref: Vec<&str> = extra.iter().map(String::as_str).collect();

    next("starting our server: dco-control --config server.conf (it starts dco-daemon)");
    let scfg = OvpnConfig::server(&pki)
        .tls_crypt(&pki)
        .data_ciphers(&["AES-256-GCM", "AES-128-GCM", "CHACHA20-POLY1305"])
        .disable_dco(false);
    let sconf = scfg.write(work.path(), "server")?;
    let t = Instant::now();
    let server = Ours::start_config(&server_ns, &sconf, work.path(), "server", START, &extra_ref)?;
    let socket = socket_in(&server_ns, &scfg.dev)?;
    let server_ipc = DaemonIpc::connect(&socket, Duration::from_secs(10))
        .context("connecting to the server's dco-daemon")?;
    detail(&format!(
        "up in {:.2} s; tun0 {SERVER_VPN}/24, UDP {}:1194; daemon IPC {}",
        t.elapsed().as_secs_f64(),
        link.a_v4,
        socket.display()
    ));

    let result = (|| -> Result<()> {
        for (i, &kind) in cfg.clients.iter().enumerate() {
            let label = match kind {
                ClientKind::Stock => format!("stock {stock_version} client"),
                ClientKind::Ours => "our client (dco-control + dco-daemon)".to_string(),
            };
            next(&format!("client {}: {label}", i + 1));
            let mut row = ClientRow {
                client: match kind {
                    ClientKind::Stock => format!("stock {stock_version}"),
                    ClientKind::Ours => "ours (dco-control)".into(),
                },
                ..Default::default()
            };
            let r = session(
                cfg,
                kind,
                &pki,
                &link,
                &server_ns,
                &client_ns,
                work.path(),
                &server,
                &server_ipc,
                &extra_ref,
                &mut row,
            );
            if let Err(e) = &r {
                row.error = Some(format!("{e:#}"));
            }
            report.rows.push(row);
            r?;
        }
        Ok(())
    })();

    next("cleaning up (processes, namespaces, PKI)");
    drop(server_ipc);
    drop(server);
    drop(link);
    drop(client_ns);
    drop(server_ns);
    drop(keep);
    drop(pki);
    drop(work);
    result
}

/// Removes our daemons' socket directories of the namespaces it holds when dropped.
#[derive(Default)]
struct SocketDirs(Vec<String>);

impl Drop for SocketDirs {
    fn drop(&mut self) {
        for ns in &self.0 {
            cleanup::remove_socket_dir(ns);
        }
    }
}

/// The IPC socket path our daemon uses for `ifname` inside `ns`: control-ipc's default in a
/// named namespace, `/run/dco/<netns>/<ifname>.sock`. (Not `default_socket_path` on a
/// thread that entered the namespace: it looks at `/proc/self`, the whole process's.)
fn socket_in(ns: &Netns, ifname: &str) -> Result<PathBuf> {
    Ok(PathBuf::from(format!(
        "/run/dco/{}/{ifname}.sock",
        ns.name()
    )))
}

#[allow(clippy::too_many_arguments)]
fn session(
    cfg: &DemoConfig,
    kind: ClientKind,
    pki: &Pki,
    link: &VethPair,
    server_ns: &Netns,
    client_ns: &Netns,
    work: &Path,
    server: &Ours,
    server_ipc: &DaemonIpc,
    extra: &[&str],
    row: &mut ClientRow,
) -> Result<()> {
    let before = server_ipc.stats()?;
    // One certificate per client kind, so the server sees two distinct peers.
    let cn = match kind {
        ClientKind::Stock => "stock-client",
        ClientKind::Ours => "our-client",
    };
    let ccfg = OvpnConfig::client(pki, cn, link.a_v4.into())?
        .tls_crypt(pki)
        // Tell the server when we leave, as a real client config would.
        .extra("explicit-exit-notify 1");
    let t = Instant::now();
    let (client, client_ipc) = match kind {
        ClientKind::Stock => {
            let mut c = StockOpenvpn::spawn(client_ns, &ccfg, work, "client-stock")?;
            wait_initialized(|| (c.log().contains(INITIALIZED), c.is_running()), t)
                .map_err(|e| with_log(e, "client", &c.log()))
                .map_err(|e| with_log(e, "server", &server.log()))?;
            (Client::Stock(c), None)
        }
        ClientKind::Ours => {
            let name = "client-ours";
            let conf = ccfg.clone().disable_dco(false).write(work, name)?;
            let mut c = spawn_ours(client_ns, &conf, work, name, extra)?;
            wait_initialized(
                || (c.log().contains(INITIALIZED), c.process.is_running()),
                t,
            )
            .map_err(|e| with_log(e, "client", &c.log()))
            .map_err(|e| with_log(e, "server", &server.log()))?;
            let sock = socket_in(client_ns, &ccfg.dev)?;
            let ipc = DaemonIpc::connect(&sock, Duration::from_secs(10))
                .context("connecting to the client's dco-daemon")?;
            (Client::Ours(c), Some(ipc))
        }
    };
    let handshake = t.elapsed().as_secs_f64();
    row.handshake_s = Some(handshake);
    let handshake_ms = handshake * 1e3;
    let client_before = match &client_ipc {
        Some(ipc) => Some(ipc.stats()?),
        None => None,
    };
    let logs = |e: anyhow::Error| {
        with_log(
            with_log(e, "server", &server.log()),
            "client",
            &client.log(),
        )
    };
    row.cipher = server_ipc
        .peers()?
        .iter()
        .filter(|p| p.common_name.as_deref() == Some(cn))
        .flat_map(|p| p.keys.iter())
        .min_by_key(|k| k.slot)
        .map(|k| k.cipher.to_string());
    detail(&format!(
        "connected: {handshake_ms:.0} ms from start to \"Initialization Sequence Completed\", data cipher {}",
        row.cipher.as_deref().unwrap_or("?")
    ));

    let target = IpAddr::V4(SERVER_VPN);
    let p = ping(
        client_ns,
        target,
        &PingOpts {
            count: cfg.pings,
            ..Default::default()
        },
    )?;
    row.ping_replies = Some((p.received, p.transmitted));
    row.ping_ms = p.rtt_avg_ms();
    detail(&format!(
        "ping {target}: {}/{} replies, avg {} ms",
        p.received,
        p.transmitted,
        p.rtt_avg_ms()
            .map(|v| format!("{v:.3}"))
            .unwrap_or_else(|| "–".into())
    ));
    p.expect_success().map_err(logs)?;

    for reverse in [false, true] {
        let opts = Iperf3Opts {
            duration: cfg.iperf,
            reverse,
            ..Default::default()
        };
        let res = Iperf3Server::start(server_ns, IPERF_PORT)
            .and_then(|_srv| iperf3_client(client_ns, target, IPERF_PORT, &opts))
            .map_err(logs)?;
        let mbps = res.received_bps / 1e6;
        if reverse {
            row.down_mbps = Some(mbps);
        } else {
            row.up_mbps = Some(mbps);
        }
        detail(&format!(
            "iperf3 TCP {} {:.0} s: {mbps:.0} Mbit/s{}",
            if reverse {
                "server → client"
            } else {
                "client → server"
            },
            cfg.iperf.as_secs_f64(),
            res.retransmits
                .map(|r| format!(" ({r} retransmits)"))
                .unwrap_or_default()
        ));
        if mbps <= 0.0 {
            return Err(logs(anyhow!("iperf3 moved no data")));
        }
    }

    let after = server_ipc.stats()?;
    let delta = StatsDelta::between(&before, &after);
    detail(&format!(
        "server dco-daemon: {} data packets in, {} out, {} lost{}",
        delta.data.0,
        delta.data.1,
        delta.dropped(),
        drop_reasons(&delta)
    ));
    row.server = Some(delta.clone());
    if let (Some(ipc), Some(b)) = (&client_ipc, &client_before) {
        let d = StatsDelta::between(b, &ipc.stats()?);
        detail(&format!(
            "client dco-daemon: {} data packets in, {} out, {} lost{}",
            d.data.0,
            d.data.1,
            d.dropped(),
            drop_reasons(&d)
        ));
        row.client_daemon = Some(d);
    }
    if delta.data.0 == 0 || delta.data.1 == 0 {
        return Err(logs(anyhow!(
            "the server daemon counted no data packets in one direction: {delta:?}"
        )));
    }
    drop(client_ipc);
    let mut client = client;
    client.stop();
    // explicit-exit-notify tells the server; the next client has its own certificate and
    // peer id either way.
    Ok(())
}

/// What every OpenVPN (and our dco-control) logs once the tunnel is up.
const INITIALIZED: &str = "Initialization Sequence Completed";

/// Waits (polling every 2 ms, so the handshake time is not rounded to a coarse tick) until
/// `poll` says (initialized, running) with initialized true; fails when the process exits
/// or after [`START`].
fn wait_initialized(mut poll: impl FnMut() -> (bool, bool), started: Instant) -> Result<()> {
    loop {
        let (initialized, running) = poll();
        if initialized {
            return Ok(());
        }
        if !running {
            bail!("the client exited before logging {INITIALIZED:?}");
        }
        if started.elapsed() > START {
            bail!("the client did not log {INITIALIZED:?} within {START:?}");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// `dco-control --config CONF EXTRA...` in `ns`, not waiting (what [`Ours::start_config`]
/// does, less the coarse wait).
fn spawn_ours(ns: &Netns, conf: &Path, work: &Path, name: &str, extra: &[&str]) -> Result<Ours> {
    e2e::make_world_readable(work);
    let bin = e2e::bin_dir().join("dco-control");
    let mut args: Vec<String> = vec!["--config".into(), conf.display().to_string()];
    args.extend(extra.iter().map(|s| s.to_string()));
    let process = e2e::NsProcess::spawn(ns, &bin, &args, work, name, &[("DCO_LOG", "info")])
        .with_context(|| format!("starting {}", bin.display()))?;
    Ok(Ours {
        process,
        config: conf.to_path_buf(),
    })
}

enum Client {
    Stock(StockOpenvpn),
    Ours(Ours),
}

impl Client {
    fn log(&self) -> String {
        match self {
            Client::Stock(c) => c.log(),
            Client::Ours(c) => c.log(),
        }
    }

    fn stop(&mut self) {
        let _ = match self {
            Client::Stock(c) => c.stop(),
            Client::Ours(c) => c.process.stop(),
        };
    }
}

fn with_log(e: anyhow::Error, who: &str, log: &str) -> anyhow::Error {
    let lines: Vec<&str> = log.lines().collect();
    let tail = lines[lines.len().saturating_sub(25)..].join("\n");
    e.context(format!("--- {who} log (last 25 lines) ---\n{tail}\n---"))
}

fn drop_reasons(d: &StatsDelta) -> String {
    if d.drops.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = d.drops.iter().map(|(n, v)| format!("{n} {v}")).collect();
    format!("; drops by reason: {}", parts.join(", "))
}

/// `OpenVPN 2.6.14` from `openvpn --version`.
fn openvpn_version() -> String {
    let out = e2e::run_timeout(
        std::process::Command::new("openvpn").arg("--version"),
        Duration::from_secs(10),
    );
    let text = out
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let mut words = text.split_whitespace();
    match (words.next(), words.next()) {
        (Some(name), Some(ver)) => format!("{name} {ver}"),
        _ => "OpenVPN (version unknown)".into(),
    }
}

/// Copies the work directory's files to the first path (if any) when dropped.
struct KeepLogs(Option<PathBuf>, PathBuf);

impl Drop for KeepLogs {
    fn drop(&mut self) {
        if let Some(dir) = &self.0 {
            keep_logs(&self.1, dir);
        }
    }
}

fn keep_logs(work: &Path, dir: &Path) {
    let copy = || -> Result<()> {
        std::fs::create_dir_all(dir)?;
        for e in std::fs::read_dir(work)?.flatten() {
            let p = e.path();
            if p.is_file() {
                std::fs::copy(&p, dir.join(e.file_name()))?;
            }
        }
        Ok(())
    };
    match copy() {
        Ok(()) => detail(&format!("configs and logs copied to {}", dir.display())),
        Err(e) => eprintln!("could not copy the logs to {}: {e:#}", dir.display()),
    }
}

impl DemoReport {
    /// The results table (fixed-width text).
    pub fn table(&self) -> String {
        let f =
            |v: Option<f64>, d: usize| v.map(|v| format!("{v:.d$}")).unwrap_or_else(|| "–".into());
        let mut rows: Vec<[String; 9]> = vec![[
            "client".into(),
            "handshake ms".into(),
            "cipher".into(),
            "ping ms".into(),
            "up Mbit/s".into(),
            "down Mbit/s".into(),
            "server data pkts in/out".into(),
            "lost in/out".into(),
            "drop reasons".into(),
        ]];
        let pair = |d: Option<&StatsDelta>, f: &dyn Fn(&StatsDelta) -> (u64, u64)| {
            d.map(|d| {
                let (a, b) = f(d);
                format!("{a}/{b}")
            })
            .unwrap_or_else(|| "–".into())
        };
        for r in &self.rows {
            let d = r.server.as_ref();
            rows.push([
                r.client.clone(),
                f(r.handshake_s.map(|s| s * 1e3), 0),
                r.cipher.clone().unwrap_or_else(|| "–".into()),
                f(r.ping_ms, 3),
                f(r.up_mbps, 0),
                f(r.down_mbps, 0),
                pair(d, &|d| d.data),
                pair(d, &|d| {
                    (
                        d.lost_data.0 + d.nomem_data.0,
                        d.lost_data.1 + d.nomem_data.1,
                    )
                }),
                d.map(|d| {
                    let parts: Vec<String> =
                        d.drops.iter().map(|(n, v)| format!("{n} {v}")).collect();
                    if parts.is_empty() {
                        "none".into()
                    } else {
                        parts.join(", ")
                    }
                })
                .unwrap_or_else(|| "–".into()),
            ]);
        }
        let mut widths = [0usize; 9];
        for row in &rows {
            for (w, c) in widths.iter_mut().zip(row) {
                *w = (*w).max(c.chars().count());
            }
        }
        let mut out = String::new();
        for (i, row) in rows.iter().enumerate() {
            let cells: Vec<String> = row
                .iter()
                .zip(widths)
                .enumerate()
                .map(|(j, (c, w))| {
                    let pad = w - c.chars().count();
                    if j == 0 || j == 2 || j == 8 {
                        format!("{c}{}", " ".repeat(pad))
                    } else {
                        format!("{}{c}", " ".repeat(pad))
                    }
                })
                .collect();
            let _ = writeln!(out, "| {} |", cells.join(" | "));
            if i == 0 {
                let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
                let _ = writeln!(out, "|-{}-|", rule.join("-|-"));
            }
        }
        for r in &self.rows {
            if let Some(e) = &r.error {
                let first = e.lines().next().unwrap_or("");
                let _ = writeln!(out, "{}: FAILED: {first}", r.client);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_and_marks_missing_values() {
        let report = DemoReport {
            rows: vec![
                ClientRow {
                    client: "stock OpenVPN 2.6.14".into(),
                    handshake_s: Some(1.234),
                    cipher: Some("AES-256-GCM".into()),
                    ping_ms: Some(0.31),
                    ping_replies: Some((5, 5)),
                    up_mbps: Some(812.4),
                    down_mbps: Some(790.0),
                    server: Some(StatsDelta {
                        data: (1000, 900),
                        lost_data: (2, 0),
                        drops: vec![("replay".into(), 2)],
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                ClientRow {
                    client: "ours (dco-control)".into(),
                    error: Some("ping failed\nmore".into()),
                    ..Default::default()
                },
            ],
        };
        let t = report.table();
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 5, "{t}");
        // Every table line has the same width.
        let w = lines[0].chars().count();
        assert!(lines[..4].iter().all(|l| l.chars().count() == w), "{t}");
        assert!(
            lines[2].contains("1000/900") && lines[2].contains("| replay 2 "),
            "{t}"
        );
        assert!(lines[2].contains(" 2/0 |"), "{t}");
        assert!(
            lines[2].contains("  812 |") && lines[2].contains(" 1234 |"),
            "{t}"
        );
        assert!(
            lines[3].contains(" – |") && lines[3].trim_end_matches(['|', ' ']).ends_with('–'),
            "{t}"
        );
        assert_eq!(lines[4], "ours (dco-control): FAILED: ping failed");
    }
}
