//! `dco-daemon`: the privileged data path. It owns the TUN device and the UDP sockets and is
//! driven over its IPC socket by `dco-control` (or by hand with `ovpnctl`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use clap::Parser;
use dco_daemon::core::{Daemon, DaemonConfig};
use dco_daemon::ipc::{DaemonHandler, IpcSink};

#[derive(Parser, Debug)]
#[command(
    version,
    about = "User-space OpenVPN data-channel offload daemon (the data path)."
)]
struct Args {
    /// TUN interface to create.
    #[arg(long, default_value = "dco0")]
    ifname: String,
    /// IPC socket (default /run/dco/<ifname>.sock).
    #[arg(long)]
    socket: Option<PathBuf>,
    /// Worker count (each owns a UDP socket and a TUN queue); default: one per core.
    #[arg(long)]
    workers: Option<usize>,
    /// Start listening at once on this address (otherwise the LISTEN command does it).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Turn off TUN offloads (virtio-net header, TSO/USO, GRO).
    #[arg(long)]
    no_offload: bool,
    /// Also allow this uid on the IPC socket (root always may). Repeatable.
    #[arg(long = "allow-uid")]
    allow_uid: Vec<u32>,
    /// Also allow this gid on the IPC socket. Repeatable.
    #[arg(long = "allow-gid")]
    allow_gid: Vec<u32>,
    /// Replay window of every receive key (OpenVPN uses 64, Linux ovpn 2048).
    #[arg(long, default_value_t = crypto::DEFAULT_REPLAY_WINDOW)]
    replay_window: u32,
    /// Control packets relayed per second per worker (the rest are dropped and counted).
    #[arg(long, default_value_t = 2000)]
    relay_rate: u32,
    /// Batch crypto on a GPU: auto (only when it wins), off, on (fail without one), or
    /// model (tests: the CUDA kernels' host model decrypts the receive batches).
    #[arg(long, default_value = "auto")]
    gpu: String,
    /// OpenVPN's mssfix: clamp TCP MSS so encapsulated packets stay within this size
    /// (outer IP/UDP included); 0 = off.
    #[arg(long, default_value_t = 1492)]
    mssfix: u16,
    /// Firewall rule set to load at start (see the conntrack crate docs for the syntax);
    /// `ovpnctl fw load` replaces it at run time.
    #[arg(long)]
    firewall: Option<PathBuf>,
    /// Most connections the firewall tracks.
    #[arg(long, default_value_t = 262_144)]
    ct_max: usize,
    /// Exit when the process that started us exits (used by dco-control).
    #[arg(long)]
    exit_with_parent: bool,
    /// Log filter (tracing syntax), e.g. info, debug, dco_daemon=trace.
    #[arg(long, env = "DCO_LOG", default_value = "info")]
    log: String,
}

fn main() {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(&args.log))
        .with_target(false)
        .with_ansi(false)
        .init();
    if let Err(e) = run(args) {
        eprintln!("dco-daemon: {e}");
        std::process::exit(1);
    }
}

/// Forwards connection-tracking events to IPC subscribers (`ovpnctl ct watch`); the
/// tracker is only asked for events while someone listens.
fn spawn_ct_events(daemon: Arc<Daemon>, notifier: control_ipc::Notifier) {
    use control_ipc::schema::{CtEventNote, NotificationKind};
    let kind = NotificationKind::CtEvent.number();
    let spawned = std::thread::Builder::new()
        .name("dco-ct-events".into())
        .spawn(move || {
            let mut sub = None;
            while !daemon
                .shared()
                .shutdown
                .load(std::sync::atomic::Ordering::Relaxed)
            {
                if notifier.subscribers_for(kind) == 0 {
                    sub = None;
                    std::thread::sleep(std::time::Duration::from_millis(250));
                    continue;
                }
                let s = sub.get_or_insert_with(|| daemon.conntrack().subscribe(4096));
                if let Some(ev) = s.recv_timeout(std::time::Duration::from_millis(250)) {
                    let event = match ev.kind {
                        conntrack::EventKind::New => "new",
                        conntrack::EventKind::Update => "update",
                        conntrack::EventKind::Destroy => "destroy",
                    };
                    notifier.notify(control_ipc::Notification::CtEvent(CtEventNote {
                        event: event.into(),
                        text: ev.to_string(),
                        peerid: ev.conn.orig_peer,
                        missed: s.take_missed(),
                    }));
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!("cannot start the conntrack event thread: {e}");
    }
}

fn run(args: Args) -> Result<(), String> {
    // SAFETY: getppid has no preconditions.
    let parent = unsafe { libc::getppid() };
    // `--gpu model` (for tests): the CUDA kernels' host model stands in for the GPU, so the
    // receive path's batch code runs on any machine (slowly).
    let (offload, use_batch) = if args.gpu == "model" {
        tracing::warn!(
            "--gpu model: receive batches go through the host model of the CUDA kernels (test mode)"
        );
        (
            gpu::Offload::with_accelerator(gpu::GpuMode::On, Box::new(gpu::HostModel::new())),
            true,
        )
    } else {
        let gpu_mode: gpu::GpuMode = args.gpu.parse().map_err(|e| format!("--gpu: {e}"))?;
        let o = gpu::Offload::new(gpu_mode, &gpu::GpuConfig::default())
            .map_err(|e| format!("--gpu on: {e}"))?;
        let active = o.status().device.is_some();
        (o, active)
    };
    let offload = Arc::new(offload);
    let status = offload.status();
    tracing::info!("crypto: cpu (ring); GPU: {status}");

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    rt.block_on(async move {
        let path = args.socket.clone().unwrap_or_else(|| control_ipc::default_socket_path(&args.ifname));
        let mut scfg = control_ipc::ServerConfig::new(path.clone());
        for u in &args.allow_uid {
            scfg = scfg.allow_uid(*u);
        }
        for g in &args.allow_gid {
            scfg = scfg.allow_gid(*g);
        }
        let server = control_ipc::Server::bind(scfg).map_err(|e| format!("cannot bind {}: {e}", path.display()))?;
        let sink = Arc::new(IpcSink::new(server.notifier()));
        let config = DaemonConfig {
            ifname: args.ifname.clone(),
            workers: args.workers.unwrap_or(DaemonConfig::default().workers),
            replay_window: args.replay_window,
            relay_rate: args.relay_rate,
            offload: !args.no_offload,
            mssfix: args.mssfix,
            ct_max_entries: args.ct_max,
            ..Default::default()
        };
        let daemon = Arc::new(Daemon::new(config, sink).map_err(|e| e.to_string())?);
        if use_batch {
            let backend: Arc<dyn crypto::BatchAead> = offload.clone();
            let _ = daemon.shared().batch.set(backend);
            tracing::info!(backend = offload.status().backend, "receive path decrypts in batches");
        }
        tracing::info!(ifname = %args.ifname, workers = daemon.workers(), offload = daemon.offload(), socket = %path.display(), "dco-daemon ready");
        if let Some(l) = args.listen {
            daemon.listen(l).map_err(|e| e.to_string())?;
        }
        let mut fw_text = None;
        if let Some(f) = &args.firewall {
            let text = std::fs::read_to_string(f).map_err(|e| format!("firewall file {}: {e}", f.display()))?;
            daemon
                .load_firewall(&text)
                .map_err(|e| format!("{}:{}:{}: {}", f.display(), e.line, e.col, e.msg))?;
            fw_text = Some(text);
        }
        let gpu_for_status = offload.clone();
        let handler = Arc::new(DaemonHandler {
            daemon: daemon.clone(),
            started: Instant::now(),
            crypto_backend: if use_batch {
                format!("batches: {}", offload.status().backend)
            } else {
                "cpu (ring, AES-NI/CLMUL), per packet".into()
            },
            fw_text: std::sync::Mutex::new(fw_text),
            gpu_status: Box::new(move || {
                let s = gpu_for_status.status();
                let c = s.counters;
                let counters = [
                    ("gpu_batches", c.gpu_batches),
                    ("gpu_packets", c.gpu_packets),
                    ("gpu_bytes", c.gpu_bytes),
                    ("cpu_batches", c.cpu_batches),
                    ("cpu_packets", c.cpu_packets),
                    ("fallbacks", c.fallbacks),
                    ("gpu_errors", c.gpu_errors),
                ]
                .into_iter()
                .map(|(n, v)| (n.to_string(), v))
                .collect();
                (s.to_string(), counters)
            }),
        });
        spawn_ct_events(daemon.clone(), server.notifier());
        let stop = server.shutdown_handle();
        if args.exit_with_parent {
            // Not a parent-death signal: dco-control drops root, and an unprivileged process
            // may not signal us. Watch for being re-parented instead.
            let stop = stop.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(std::time::Duration::from_millis(250)).await;
                    // SAFETY: getppid has no preconditions.
                    if unsafe { libc::getppid() } != parent {
                        tracing::info!("dco-control exited; shutting down");
                        stop.shutdown();
                        return;
                    }
                }
            });
        }
        tokio::spawn(async move {
            use tokio::signal::unix::{SignalKind, signal};
            let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
                return;
            };
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            tracing::info!("shutting down");
            stop.shutdown();
        });
        server.serve(handler).await.map_err(|e| format!("IPC server: {e}"))?;
        daemon.shutdown();
        Ok(())
    })
}
