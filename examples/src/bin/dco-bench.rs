//! `dco-bench`: measures our OpenVPN data-channel offload against stock OpenVPN 2.6,
//! wireguard-go and boringtun, side by side in one run, inside two network namespaces.
//!
//! Run as root: `cargo run --release -p dco-examples --bin dco-bench -- --help`.

use anyhow::{Result, bail};
use clap::{Args, Parser, Subcommand};
use dco_examples::bench::pps::{PpsConfig, run_pps};
use dco_examples::bench::runner::{RunConfig, TestKind, run};
use dco_examples::bench::sut::SystemKind;
use dco_examples::bench::workspace_root;
use e2e::{Offloads, VethConfig};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(
    name = "dco-bench",
    about = "iperf3 comparison: dco vs stock OpenVPN 2.6 vs userspace WireGuard"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    #[command(flatten)]
    throughput: ThroughputArgs,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// iperf3 throughput, CPU and latency comparison (the default).
    Throughput(ThroughputArgs),
    /// Packet-rate benchmark without TCP: a sendmmsg generator and interface counters.
    Pps(PpsArgs),
}

#[derive(Args, Debug, Clone)]
struct Common {
    /// Namespace name prefix (namespaces are PREFIX-PID-N; stale ones of dead runs are removed).
    #[arg(long, default_value = "dcob")]
    prefix: String,
    /// Turn the veth pair's offloads (TSO/GSO/GRO) off; by default they are on, as on a real NIC.
    #[arg(long)]
    no_offloads: bool,
    /// MTU of the veth pair.
    #[arg(long)]
    mtu: Option<u32>,
    /// Directory holding our `dco-control` binary.
    #[arg(long)]
    dco_bin_dir: Option<PathBuf>,
}

#[derive(Args, Debug, Clone)]
struct ThroughputArgs {
    #[command(flatten)]
    common: Common,
    /// Repetitions of the whole system list (interleaved: A B C, A B C, ...).
    #[arg(long, default_value_t = 3)]
    reps: u32,
    /// Seconds per iperf3 test.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Systems: underlay, stock, stock-ours, ours, ours-fw (ours with the server's firewall on,
    /// 20 rules), wireguard-go, boringtun (comma-separated).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "underlay,stock,stock-ours,ours,ours-fw,wireguard-go,boringtun"
    )]
    systems: Vec<String>,
    /// OpenVPN data ciphers, one system each.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "AES-128-GCM,AES-256-GCM,CHACHA20-POLY1305"
    )]
    ciphers: Vec<String>,
    /// Tests: tcp1-up, tcp1-down, tcp4-up, tcp4-down, udp-up, udp-down.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "tcp1-up,tcp1-down,tcp4-up,tcp4-down,udp-up"
    )]
    tests: Vec<String>,
    /// UDP offered rate in Mbit/s.
    #[arg(long, default_value_t = 500)]
    udp_mbps: u64,
    /// UDP datagram payload in bytes (small enough not to fragment in any tunnel).
    #[arg(long, default_value_t = 1200)]
    udp_len: u32,
    /// Output directory (default bench-results/<time>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Short run for tests: 1 repetition, 2 s tests, AES-256-GCM only, three tests, no boringtun build.
    #[arg(long)]
    smoke: bool,
    /// Never build boringtun-cli (use it only when already installed/cached).
    #[arg(long)]
    no_build: bool,
    /// Cache for built tools (boringtun-cli).
    #[arg(long)]
    tools_dir: Option<PathBuf>,
    /// Worker threads of our daemons (`dco-control --workers N`); default: one per core.
    #[arg(long)]
    workers: Option<usize>,
}

#[derive(Args, Debug, Clone)]
struct PpsArgs {
    #[command(flatten)]
    common: Common,
    /// Systems: underlay, stock, ours.
    #[arg(long, value_delimiter = ',', default_value = "underlay,stock,ours")]
    systems: Vec<String>,
    /// Directions: reverse (TUN → wire), forward (wire → TUN; ours only).
    #[arg(long, value_delimiter = ',', default_value = "reverse,forward")]
    directions: Vec<String>,
    /// UDP payload sizes.
    #[arg(long, value_delimiter = ',', default_value = "64,1400")]
    sizes: Vec<usize>,
    /// Worker counts for our daemon (one flow, i.e. one peer and one generator thread, per
    /// worker).
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    workers: Vec<u32>,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 5)]
    duration: u64,
    /// Repetitions.
    #[arg(long, default_value_t = 3)]
    reps: u32,
    /// Data cipher.
    #[arg(long, default_value = "AES-256-GCM")]
    cipher: String,
    /// Output directory (default bench-results/pps-<time>).
    #[arg(long)]
    out: Option<PathBuf>,
}

fn veth(c: &Common) -> VethConfig {
    VethConfig {
        mtu: c.mtu,
        offloads: if c.no_offloads {
            Offloads::Off
        } else {
            Offloads::NicLike
        },
        ..Default::default()
    }
}

fn stamp() -> String {
    dco_examples::bench::machine::utc_now().replace(':', "")
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    if !e2e::require_root() {
        bail!("dco-bench needs root (network namespaces, TUN)");
    }
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    match cli.cmd {
        Some(Cmd::Pps(a)) => pps(a),
        Some(Cmd::Throughput(a)) => throughput(a, command),
        None => throughput(cli.throughput, command),
    }
}

fn throughput(mut a: ThroughputArgs, command: String) -> Result<()> {
    if a.smoke {
        a.reps = 1;
        a.duration = 2;
        a.ciphers = vec!["AES-256-GCM".into()];
        a.tests = vec!["tcp1-up".into(), "tcp4-down".into(), "udp-up".into()];
        a.no_build = true;
    }
    let mut systems = Vec::new();
    for s in &a.systems {
        match SystemKind::parse(s) {
            Some(k) => systems.push(k),
            None => bail!(
                "unknown system {s:?}; known: {}",
                SystemKind::all().map(SystemKind::id).join(", ")
            ),
        }
    }
    let mut tests = Vec::new();
    for t in &a.tests {
        match TestKind::parse(t) {
            Some(k) => tests.push(k),
            None => bail!(
                "unknown test {t:?}; known: tcp1-up, tcp1-down, tcp4-up, tcp4-down, udp-up, udp-down"
            ),
        }
    }
    if a.reps == 0 || a.duration == 0 {
        bail!("--reps and --duration must be at least 1");
    }
    let root = workspace_root();
    let out = a
        .out
        .clone()
        .unwrap_or_else(|| root.join("bench-results").join(stamp()));
    let cfg = RunConfig {
        reps: a.reps,
        duration: Duration::from_secs(a.duration),
        udp_rate_bps: a.udp_mbps * 1_000_000,
        udp_len: a.udp_len,
        tests,
        systems,
        ciphers: a.ciphers.clone(),
        veth: veth(&a.common),
        prefix: a.common.prefix.clone(),
        out_dir: out.clone(),
        dco_bin_dir: a
            .common
            .dco_bin_dir
            .clone()
            .unwrap_or_else(|| root.join("target/release")),
        tools_dir: a
            .tools_dir
            .clone()
            .unwrap_or_else(|| root.join("target/bench-tools")),
        build_boringtun: !a.no_build,
        workers: a.workers,
        command,
    };
    let report = run(&cfg)?;
    report.write_all(&out)?;
    println!("{}", report.markdown());
    println!(
        "wrote {}/{{results.csv,results.json,summary.md,chart.svg}}",
        out.display()
    );
    if dco_examples::bench::signal::interrupted() {
        std::process::exit(130);
    }
    if !report.samples.iter().any(|s| s.ok) {
        bail!("no measurement succeeded");
    }
    Ok(())
}

fn pps(a: PpsArgs) -> Result<()> {
    let root = workspace_root();
    let out = a
        .out
        .clone()
        .unwrap_or_else(|| root.join("bench-results").join(format!("pps-{}", stamp())));
    let cfg = PpsConfig {
        systems: a.systems.clone(),
        directions: a.directions.clone(),
        sizes: a.sizes.clone(),
        workers: a.workers.clone(),
        duration: Duration::from_secs(a.duration.max(1)),
        reps: a.reps.max(1),
        cipher: a.cipher.clone(),
        veth: veth(&a.common),
        prefix: a.common.prefix.clone(),
        dco_bin_dir: a
            .common
            .dco_bin_dir
            .clone()
            .unwrap_or_else(|| root.join("target/release")),
    };
    let report = run_pps(&cfg)?;
    std::fs::create_dir_all(&out)?;
    std::fs::write(out.join("pps.json"), serde_json::to_string_pretty(&report)?)?;
    std::fs::write(out.join("pps.md"), report.markdown())?;
    println!("{}", report.markdown());
    println!("wrote {}/{{pps.json,pps.md}}", out.display());
    Ok(())
}
