//! `dco-demo`: one command, as root, on a fresh machine. Creates two network namespaces
//! joined by veth, generates a throwaway PKI, starts our server (`dco-control` +
//! `dco-daemon`) in one and a stock OpenVPN 2.6 client in the other (then our own client),
//! pings through the tunnel, runs a short iperf3 both ways, prints a small table and cleans
//! up, also on Ctrl-C.
//!
//! `scripts/demo.sh` installs the tools, builds the release binaries and runs this.

use anyhow::{Result, bail};
use clap::Parser;
use dco_examples::cleanup;
use dco_examples::demo::{ClientKind, DemoConfig, DemoReport, run};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Parser, Debug)]
#[command(
    name = "dco-demo",
    about = "Our OpenVPN data-channel offload against a stock OpenVPN 2.6 client, in two network namespaces"
)]
struct Cli {
    /// Short run for tests: 2 s iperf3 per direction, 3 pings.
    #[arg(long)]
    quick: bool,
    /// Seconds of iperf3 per direction.
    #[arg(long, default_value_t = 5)]
    iperf_secs: u64,
    /// Pings per client.
    #[arg(long, default_value_t = 5)]
    pings: u32,
    /// Clients to connect, in order: stock, ours.
    #[arg(long, value_delimiter = ',', default_value = "stock,ours")]
    clients: Vec<String>,
    /// Directory with dco-control and dco-daemon (default: next to this program, else the
    /// workspace's target directory).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Worker threads of our daemons (default: one per core).
    #[arg(long)]
    workers: Option<usize>,
    /// Namespace prefix (namespaces are PREFIX-PID-N).
    #[arg(long, default_value = "dm")]
    prefix: String,
    /// Give up (and clean up) after this many seconds.
    #[arg(long, default_value_t = 110)]
    time_limit: u64,
    /// Copy the configs and logs of every process to this directory.
    #[arg(long)]
    keep_logs: Option<PathBuf>,
    /// Also write the results as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

fn main() {
    let cli = Cli::parse();
    let code = match main_inner(cli) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("\ndco-demo FAILED: {e:#}");
            1
        }
    };
    if let Some(cut) = cleanup::cut() {
        std::process::exit(cut.exit_code());
    }
    std::process::exit(code);
}

fn main_inner(cli: Cli) -> Result<()> {
    if !e2e::require_root() {
        bail!("dco-demo needs root (network namespaces, TUN devices)");
    }
    let mut clients = Vec::new();
    for c in &cli.clients {
        match ClientKind::parse(c) {
            Some(k) => clients.push(k),
            None => bail!("unknown client {c:?}; known: stock, ours"),
        }
    }
    let bin_dir = cli.bin_dir.clone().unwrap_or_else(default_bin_dir);
    // Our processes run with the work directory as their cwd: make the path absolute.
    let bin_dir = std::fs::canonicalize(&bin_dir).unwrap_or(bin_dir);
    // The harness starts our binaries from $DCO_BIN_DIR.
    // SAFETY: no other thread exists yet (the cleanup watcher starts below), so nothing can
    // read the environment concurrently.
    unsafe { std::env::set_var("DCO_BIN_DIR", &bin_dir) };
    let cfg = DemoConfig {
        prefix: cli.prefix.clone(),
        iperf: Duration::from_secs(if cli.quick { 2 } else { cli.iperf_secs.max(1) }),
        pings: if cli.quick { 3 } else { cli.pings.max(1) },
        clients,
        bin_dir,
        workers: cli.workers,
        keep_logs: cli.keep_logs.clone(),
    };
    cleanup::install(
        Duration::from_secs(cli.time_limit.max(10)),
        Duration::from_secs(10),
    );
    let started = Instant::now();
    let mut report = DemoReport::default();
    let result = run(&cfg, &mut report);
    if !report.rows.is_empty() {
        println!("\n{}", report.table());
    }
    if let Some(path) = &cli.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)?;
    }
    if let Some(cut) = cleanup::cut() {
        bail!(
            "stopped early ({cut:?}) after {:.0} s",
            started.elapsed().as_secs_f64()
        );
    }
    result?;
    println!(
        "demo finished in {:.0} s; everything it created is removed",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Our binaries next to this program when they are there (a release build of the whole
/// workspace), else where the test harness looks for them.
fn default_bin_dir() -> PathBuf {
    let here = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf));
    match here {
        Some(d) if d.join("dco-control").exists() && d.join("dco-daemon").exists() => d,
        _ => e2e::bin_dir(),
    }
}
