//! The comparison run: one topology, every system started in turn (A B C, A B C, ...) so
//! drift on a shared machine hits all alike, the same iperf3 and ping tests for each.

use anyhow::Result;
use e2e::{Iperf3Opts, Iperf3Server, PingOpts, VethConfig, iperf3_client, ping};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::machine::Machine;
use super::progress::Progress;
use super::report::{Report, Sample, Unavailable};
use super::signal;
use super::sut::{SystemKind, Topology, systems};
use super::toolchain::{Boringtun, ensure_debian_tools};

/// One iperf3 test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestKind {
    /// TCP, 1 stream, client → server.
    Tcp1Up,
    /// TCP, 1 stream, server → client.
    Tcp1Down,
    /// TCP, 4 streams, client → server.
    Tcp4Up,
    /// TCP, 4 streams, server → client.
    Tcp4Down,
    /// UDP at the offered rate, client → server.
    UdpUp,
    /// UDP at the offered rate, server → client.
    UdpDown,
}

impl TestKind {
    /// Name used in tables and files.
    pub fn name(self) -> &'static str {
        match self {
            TestKind::Tcp1Up => "tcp1-up",
            TestKind::Tcp1Down => "tcp1-down",
            TestKind::Tcp4Up => "tcp4-up",
            TestKind::Tcp4Down => "tcp4-down",
            TestKind::UdpUp => "udp-up",
            TestKind::UdpDown => "udp-down",
        }
    }

    /// Every test.
    pub fn all() -> [TestKind; 6] {
        [
            TestKind::Tcp1Up,
            TestKind::Tcp1Down,
            TestKind::Tcp4Up,
            TestKind::Tcp4Down,
            TestKind::UdpUp,
            TestKind::UdpDown,
        ]
    }

    /// Parses [`TestKind::name`].
    pub fn parse(s: &str) -> Option<TestKind> {
        TestKind::all().into_iter().find(|t| t.name() == s)
    }

    fn opts(self, cfg: &RunConfig) -> Iperf3Opts {
        let (streams, reverse, udp) = match self {
            TestKind::Tcp1Up => (1, false, false),
            TestKind::Tcp1Down => (1, true, false),
            TestKind::Tcp4Up => (4, false, false),
            TestKind::Tcp4Down => (4, true, false),
            TestKind::UdpUp => (1, false, true),
            TestKind::UdpDown => (1, true, true),
        };
        Iperf3Opts {
            duration: cfg.duration,
            streams,
            reverse,
            udp_rate: udp.then_some(cfg.udp_rate_bps),
            len: udp.then_some(cfg.udp_len),
            omit: 0,
        }
    }
}

/// Settings of a comparison run.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// Repetitions of the whole system list.
    pub reps: u32,
    /// Length of each iperf3 test.
    pub duration: Duration,
    /// UDP offered rate.
    pub udp_rate_bps: u64,
    /// UDP datagram payload length.
    pub udp_len: u32,
    /// Tests to run for each system.
    pub tests: Vec<TestKind>,
    /// Systems to run.
    pub systems: Vec<SystemKind>,
    /// OpenVPN data ciphers (for the OpenVPN systems).
    pub ciphers: Vec<String>,
    /// The veth pair's settings (offloads, MTU).
    pub veth: VethConfig,
    /// Namespace name prefix.
    pub prefix: String,
    /// Where the results go.
    pub out_dir: PathBuf,
    /// Where `dco-control` is looked for.
    pub dco_bin_dir: PathBuf,
    /// `--workers` for our daemons (None: one per core).
    pub workers: Option<usize>,
    /// Cache of built tools (boringtun-cli).
    pub tools_dir: PathBuf,
    /// Build boringtun-cli in the background when missing.
    pub build_boringtun: bool,
    /// The command line, for the report.
    pub command: String,
}

/// The iperf3 server's port (the `ours-fw` rule set lets it in).
pub const IPERF_PORT: u16 = 5201;
/// Planned seconds for starting a system and its idle ping.
const START_COST: f64 = 4.0;

/// Runs the comparison and returns the report (also when interrupted: what was measured).
pub fn run(cfg: &RunConfig) -> Result<Report> {
    signal::install();
    let wants_wg = cfg
        .systems
        .iter()
        .any(|k| matches!(k, SystemKind::WireguardGo | SystemKind::Boringtun));
    ensure_debian_tools(wants_wg)?;
    let boringtun = Arc::new(Boringtun::locate_or_build(
        &cfg.tools_dir,
        cfg.build_boringtun && cfg.systems.contains(&SystemKind::Boringtun),
    ));

    let mut machine = Machine::describe();
    machine.add_tool_version("openvpn", "openvpn", &["--version"]);
    machine.add_tool_version("iperf3", "iperf3", &["--version"]);
    if wants_wg {
        machine.add_tool_version("wireguard-go", "wireguard-go", &["--version"]);
        if let Ok(bin) = boringtun.binary() {
            machine.add_tool_version("boringtun-cli", &bin.to_string_lossy(), &["--version"]);
        }
    }
    let ours = cfg.dco_bin_dir.join("dco-control");
    if ours.exists() {
        machine.add_tool_version("dco-control", &ours.to_string_lossy(), &["--version"]);
    }
    eprint!("{}", machine.summary());

    let suts = systems(
        &cfg.systems,
        &cfg.ciphers,
        &cfg.dco_bin_dir,
        cfg.workers,
        boringtun.clone(),
    );
    let mut report = Report {
        machine,
        command: cfg.command.clone(),
        settings: format!(
            "{} repetitions, {} s per test, tests {}, UDP offered {} Mbit/s with {} B datagrams, veth offloads {:?}{}",
            cfg.reps,
            cfg.duration.as_secs_f64(),
            cfg.tests
                .iter()
                .map(|t| t.name())
                .collect::<Vec<_>>()
                .join(" "),
            cfg.udp_rate_bps / 1_000_000,
            cfg.udp_len,
            cfg.veth.offloads,
            cfg.veth
                .mtu
                .map(|m| format!(", underlay MTU {m}"))
                .unwrap_or_default()
        ) + &cfg
            .workers
            .map(|w| format!(", our daemons with --workers {w}"))
            .unwrap_or_default(),
        samples: Vec::new(),
        unavailable: Vec::new(),
    };

    let topo = Topology::build(&cfg.prefix, &cfg.veth)?;

    let per_system = START_COST + cfg.tests.len() as f64 * (cfg.duration.as_secs_f64() + 0.5);
    let runnable = suts
        .iter()
        .filter(|s| s.availability().is_ok() || s.kind() == SystemKind::Boringtun)
        .count();
    let mut progress = Progress::new(Duration::from_secs_f64(
        per_system * runnable as f64 * cfg.reps as f64,
    ));

    let result = (|| -> Result<()> {
        for rep in 0..cfg.reps {
            for sut in &suts {
                signal::check()?;
                if let Err(why) = sut.availability() {
                    if !report.unavailable.iter().any(|u| u.system == sut.id()) {
                        progress.note(&format!("SKIP {}: {why}", sut.label()));
                        report.unavailable.push(Unavailable {
                            system: sut.id(),
                            label: sut.label(),
                            reason: why,
                        });
                    }
                    if sut.kind() == SystemKind::Boringtun {
                        progress.advance(Duration::from_secs_f64(per_system));
                    }
                    continue;
                }
                // It became available (boringtun finished building): drop the earlier note.
                report.unavailable.retain(|u| u.system != sut.id());
                let base = Sample {
                    system: sut.id(),
                    label: sut.label(),
                    cipher: sut.cipher().unwrap_or("").into(),
                    rep,
                    ..Default::default()
                };
                progress.step(&format!(
                    "rep {}/{} {}: starting",
                    rep + 1,
                    cfg.reps,
                    sut.label()
                ));
                let running = match sut.start(&topo) {
                    Ok(r) => r,
                    Err(e) => {
                        progress.note(&format!("FAIL {} did not start: {e:#}", sut.label()));
                        report.samples.push(Sample {
                            test: "start".into(),
                            error: format!("{e:#}"),
                            ..base
                        });
                        progress.advance(Duration::from_secs_f64(per_system));
                        continue;
                    }
                };
                let target = running.target();
                report
                    .samples
                    .push(ping_sample(&topo, target, &base, "ping-idle", 10));
                progress.advance(Duration::from_secs_f64(START_COST));
                for &test in &cfg.tests {
                    signal::check()?;
                    progress.step(&format!(
                        "rep {}/{} {}: {}",
                        rep + 1,
                        cfg.reps,
                        sut.label(),
                        test.name()
                    ));
                    let pids = running.cpu_pids();
                    let cpu0 = cpu_sum(&pids);
                    let opts = test.opts(cfg);
                    let (res, load_ping) = std::thread::scope(|sc| {
                        let pinger = (test == TestKind::Tcp1Up).then(|| {
                            let base = &base;
                            let topo = &topo;
                            let count =
                                ((cfg.duration.as_secs_f64() - 0.6) / 0.2).floor().max(2.0) as u32;
                            sc.spawn(move || {
                                std::thread::sleep(Duration::from_millis(300));
                                ping_sample(topo, target, base, "ping-load", count)
                            })
                        });
                        // A fresh iperf3 server per test: a test cut short (a lost final
                        // exchange on a lossy tunnel) can leave a server "busy" for minutes.
                        let res =
                            Iperf3Server::start(&topo.server_ns, IPERF_PORT).and_then(|_server| {
                                iperf3_client(&topo.client_ns, target, IPERF_PORT, &opts)
                            });
                        (res, pinger.and_then(|h| h.join().ok()))
                    });
                    let cpu = cpu_sum(&pids).zip(cpu0).map(|(a, b)| (a - b).max(0.0));
                    let secs = cfg.duration.as_secs_f64();
                    let mut s = Sample {
                        test: test.name().into(),
                        duration_s: secs,
                        ..base.clone()
                    };
                    match res {
                        Ok(r) => {
                            let mbps = r.received_bps / 1e6;
                            s.ok = true;
                            s.mbps = Some(mbps);
                            s.sent_mbps = Some(r.sent_bps / 1e6);
                            s.retransmits = r.retransmits;
                            s.loss_pct = r.lost_percent;
                            s.jitter_ms = r.jitter_ms;
                            if !pids.is_empty() {
                                s.cpu_s = cpu;
                                s.cpu_cores = cpu.map(|c| c / secs);
                                s.mbps_per_core =
                                    s.cpu_cores.filter(|c| *c > 0.01).map(|c| mbps / c);
                            }
                        }
                        Err(e) => {
                            progress.note(&format!("FAIL {} {}: {e:#}", sut.label(), test.name()));
                            s.error = format!("{e:#}");
                        }
                    }
                    report.samples.push(s);
                    if let Some(p) = load_ping {
                        report.samples.push(p);
                    }
                    progress.advance(Duration::from_secs_f64(secs + 0.5));
                }
                drop(running);
            }
        }
        Ok(())
    })();
    progress.finish();
    if let Err(e) = result {
        eprintln!("run stopped early: {e:#}");
        report
            .settings
            .push_str(&format!(" — STOPPED EARLY: {e:#}"));
    }
    Ok(report)
}

fn ping_sample(topo: &Topology, target: IpAddr, base: &Sample, test: &str, count: u32) -> Sample {
    let opts = PingOpts {
        count,
        interval: Duration::from_millis(200),
        wait: Duration::from_secs(1),
        ..Default::default()
    };
    let mut s = Sample {
        test: test.into(),
        ..base.clone()
    };
    match ping(&topo.client_ns, target, &opts) {
        Ok(r) if r.received > 0 => {
            s.ok = true;
            s.rtt_avg_ms = r.rtt_ms.map(|x| x.1);
            s.rtt_max_ms = r.rtt_ms.map(|x| x.2);
            s.ping_loss_pct = Some(r.loss_pct);
        }
        Ok(r) => s.error = format!("no replies: {}", r.output.trim()),
        Err(e) => s.error = format!("{e:#}"),
    }
    s
}

fn cpu_sum(pids: &[u32]) -> Option<f64> {
    if pids.is_empty() {
        return None;
    }
    pids.iter().map(|&p| e2e::cpu_seconds(p).ok()).sum()
}
