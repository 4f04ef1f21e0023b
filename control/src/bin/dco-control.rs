//! `dco-control`: the OpenVPN control process. Reads an OpenVPN config, starts (or attaches
//! to) `dco-daemon`, drops its privileges, and runs the server or client shell: TLS,
//! authentication, push, renegotiation, with the data path in the daemon.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use control::client::{Client, ClientState};
use control::config::{Options, Proto, Role};
use control::dataplane::{DaemonCmd, DaemonEvent, IfMode, Net};
use control::link::DaemonLink;
use control::server::Server;
use control::setup::session_config;
use control::tls::TlsContext;

#[derive(Parser, Debug)]
#[command(
    version,
    about = "OpenVPN-compatible control process for the dco data path (dco-daemon)."
)]
struct Args {
    /// OpenVPN config file (the supported subset is listed in the README).
    #[arg(long)]
    config: PathBuf,
    /// Use a running dco-daemon at this IPC socket instead of starting one.
    #[arg(long)]
    daemon_socket: Option<PathBuf>,
    /// The dco-daemon binary to start (default: next to this binary, then PATH).
    #[arg(long)]
    daemon_bin: Option<PathBuf>,
    /// Worker count for the started daemon (default: one per core).
    #[arg(long)]
    workers: Option<usize>,
    /// GPU mode for the started daemon: auto, off, on.
    #[arg(long, default_value = "auto")]
    gpu: String,
    /// Stay root (do not switch to the config's `user`/`group`, default nobody/nogroup).
    #[arg(long)]
    no_privdrop: bool,
    /// Log filter overriding `verb` (tracing syntax).
    #[arg(long, env = "DCO_LOG")]
    log: Option<String>,
}

fn verb_filter(verb: u8) -> &'static str {
    match verb {
        0 => "error",
        1 | 2 => "warn",
        3 => "info",
        4..=6 => "debug",
        _ => "trace",
    }
}

fn main() {
    let args = Args::parse();
    let opts = match control::config::load_file(&args.config) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    };
    let filter = args
        .log
        .clone()
        .unwrap_or_else(|| verb_filter(opts.verb).to_string());
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_target(false)
        .with_ansi(false)
        .init();
    for w in &opts.warnings {
        tracing::warn!("{}: {}", w.loc, w.message);
    }
    let code = match run(args, opts) {
        Ok(code) => code,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("dco-control: {e}");
            1
        }
    };
    std::process::exit(code);
}

/// The TUN name for `dev`: a fixed name as is, `tun` as the first free `tunN`.
fn tun_name(dev: &str) -> String {
    if dev != "tun" {
        return dev.to_string();
    }
    (0..256)
        .map(|i| format!("tun{i}"))
        .find(|n| !Path::new("/sys/class/net").join(n).exists())
        .unwrap_or_else(|| "tun0".into())
}

fn spawn_daemon(args: &Args, opts: &Options, ifname: &str, socket: &Path) -> Result<Child, String> {
    let bin = match &args.daemon_bin {
        Some(b) => b.clone(),
        None => {
            let here = std::env::current_exe()
                .ok()
                .and_then(|p| p.parent().map(|d| d.join("dco-daemon")));
            match here {
                Some(p) if p.exists() => p,
                _ => PathBuf::from("dco-daemon"),
            }
        }
    };
    let mut cmd = Command::new(&bin);
    cmd.arg("--ifname")
        .arg(ifname)
        .arg("--socket")
        .arg(socket)
        .arg("--exit-with-parent")
        .arg("--gpu")
        .arg(&args.gpu);
    cmd.arg("--mssfix")
        .arg(opts.mssfix.unwrap_or(1492).to_string());
    if let Some(w) = args.workers {
        cmd.arg("--workers").arg(w.to_string());
    }
    cmd.stdin(Stdio::null());
    cmd.spawn()
        .map_err(|e| format!("cannot start {}: {e}", bin.display()))
}

async fn connect_daemon(socket: &Path, child: &mut Option<Child>) -> Result<DaemonLink, String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match DaemonLink::connect(socket).await {
            Ok(l) => return Ok(l),
            Err(e) => {
                if let Some(c) = child.as_mut()
                    && let Ok(Some(status)) = c.try_wait()
                {
                    return Err(format!(
                        "dco-daemon exited ({status}) before its socket came up"
                    ));
                }
                if Instant::now() > deadline {
                    return Err(format!("cannot reach dco-daemon: {e}"));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Switches to the config's user/group (default nobody/nogroup) once files are read and the
/// daemon connection is open (the daemon checked our credentials at connect time).
fn drop_privileges(opts: &Options) -> Result<(), String> {
    use nix::unistd::{Gid, Group, Uid, User, setgid, setgroups, setuid};
    if !Uid::effective().is_root() {
        return Ok(());
    }
    let uname = opts.user.as_deref().unwrap_or("nobody");
    let user = User::from_name(uname)
        .ok()
        .flatten()
        .ok_or_else(|| format!("user {uname} does not exist"))?;
    let gid = match opts.group.as_deref() {
        Some(g) => {
            Group::from_name(g)
                .ok()
                .flatten()
                .ok_or_else(|| format!("group {g} does not exist"))?
                .gid
        }
        None if opts.user.is_none() => Group::from_name("nogroup")
            .ok()
            .flatten()
            .map(|g| g.gid)
            .unwrap_or(user.gid),
        None => user.gid,
    };
    // Files read again later must stay readable.
    for (what, p) in [
        ("client-config-dir", opts.client_config_dir.clone()),
        (
            "crl-verify",
            match &opts.crl_verify {
                Some(control::config::Source::File(p)) => Some(p.clone()),
                _ => None,
            },
        ),
    ] {
        if let Some(p) = p
            && !readable_by(&p, user.uid, gid)
        {
            return Err(format!(
                "{what} {} is not readable by {uname} (the control process drops root after start); make it readable or set `user`",
                p.display()
            ));
        }
    }
    setgroups(&[gid]).map_err(|e| format!("setgroups: {e}"))?;
    setgid(gid).map_err(|e| format!("setgid: {e}"))?;
    setuid(user.uid).map_err(|e| format!("setuid: {e}"))?;
    if setuid(Uid::from_raw(0)).is_ok() {
        return Err("could regain root after dropping privileges".into());
    }
    tracing::info!(user = uname, gid = Gid::as_raw(gid), "dropped privileges");
    Ok(())
}

/// Whether `path` (and every directory above it) lets `uid`/`gid` read it (mode bits only).
fn readable_by(path: &Path, uid: nix::unistd::Uid, gid: nix::unistd::Gid) -> bool {
    use std::os::unix::fs::MetadataExt;
    let mut p = Some(path);
    let mut first = true;
    while let Some(cur) = p {
        let Ok(m) = std::fs::metadata(cur) else {
            return false;
        };
        let mode = m.mode();
        let (r, x) = if m.uid() == uid.as_raw() {
            (0o400, 0o100)
        } else if m.gid() == gid.as_raw() {
            (0o040, 0o010)
        } else {
            (0o004, 0o001)
        };
        let need = if first {
            if m.is_dir() { r | x } else { r }
        } else {
            x
        };
        if mode & need != need {
            return false;
        }
        first = false;
        p = cur.parent().filter(|q| !q.as_os_str().is_empty());
    }
    true
}

fn resolve_remotes(opts: &Options) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for r in &opts.remotes {
        match (r.host.as_str(), r.port).to_socket_addrs() {
            Ok(addrs) => {
                for a in addrs {
                    let ok = match r.proto {
                        Proto::Udp4 => a.is_ipv4(),
                        Proto::Udp6 => a.is_ipv6(),
                        _ => true,
                    };
                    if ok && !out.contains(&a) {
                        out.push(a);
                    }
                }
            }
            Err(e) => tracing::warn!(host = %r.host, "cannot resolve remote: {e}"),
        }
    }
    if opts.remote_random {
        // Deterministic enough: rotate by the process id.
        let n = out.len().max(1);
        out.rotate_left(std::process::id() as usize % n);
    }
    out
}

fn listen_addr(opts: &Options, remotes: &[SocketAddr]) -> SocketAddr {
    let port = if opts.role == Role::Client && opts.nobind {
        0
    } else {
        opts.local_port
    };
    if let Some(l) = opts
        .local
        .as_deref()
        .and_then(|h| (h, port).to_socket_addrs().ok())
        .and_then(|mut a| a.next())
    {
        return l;
    }
    let v6 = match opts.proto {
        Proto::Udp6 => true,
        Proto::Udp4 => false,
        _ if opts.role == Role::Client => remotes.first().is_some_and(|r| r.is_ipv6()),
        // `proto udp` on a server: dual stack when the host has IPv6.
        _ => std::net::UdpSocket::bind("[::]:0").is_ok(),
    };
    if v6 {
        SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port)
    } else {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port)
    }
}

fn unix_now() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as u32)
        .unwrap_or(0)
}

enum Shell {
    Server(Box<Server>),
    Client(Box<Client>),
}

impl Shell {
    fn poll_command(&mut self) -> Option<DaemonCmd> {
        match self {
            Shell::Server(s) => s.poll_command(),
            Shell::Client(c) => c.poll_command(),
        }
    }
    fn poll_timeout(&self) -> Option<Instant> {
        match self {
            Shell::Server(s) => s.poll_timeout(),
            Shell::Client(c) => c.poll_timeout(),
        }
    }
    fn handle_event(&mut self, now: Instant, ev: DaemonEvent) {
        match self {
            Shell::Server(s) => s.handle_event(now, ev),
            Shell::Client(c) => c.handle_event(now, ev),
        }
    }
    fn handle_timeout(&mut self, now: Instant) {
        match self {
            Shell::Server(s) => s.handle_timeout(now),
            Shell::Client(c) => c.handle_timeout(now),
        }
    }
    fn shutdown(&mut self, now: Instant) {
        match self {
            Shell::Server(s) => {
                let st = s.stats;
                tracing::info!(
                    sessions = st.sessions_created,
                    handshakes = st.handshakes_completed,
                    auth_failed = st.auth_failed,
                    dropped_unknown = st.dropped_unknown,
                    dropped_bad = st.dropped_bad_packets,
                    "control channel totals"
                );
                s.shutdown(now)
            }
            Shell::Client(c) => c.shutdown(now),
        }
    }
}

fn run(args: Args, opts: Options) -> Result<i32, String> {
    let opts = Arc::new(opts);
    let tls = Arc::new(TlsContext::from_options(&opts).map_err(|e| e.to_string())?);
    let remotes = if opts.role == Role::Client {
        resolve_remotes(&opts)
    } else {
        Vec::new()
    };
    if opts.role == Role::Client && remotes.is_empty() {
        return Err("no usable remote (check the `remote` lines and the proto)".into());
    }
    let listen = listen_addr(&opts, &remotes);
    let template = session_config(
        &opts,
        tls,
        listen.is_ipv6() && remotes.first().is_none_or(|r| r.is_ipv6()),
        unix_now(),
    )
    .map_err(|e| e.to_string())?;
    let ifname = tun_name(&opts.dev);
    let socket = args
        .daemon_socket
        .clone()
        .unwrap_or_else(|| control_ipc::default_socket_path(&ifname));
    // Start the daemon from this (main) thread so its parent-death signal follows us.
    let mut child = if args.daemon_socket.is_none() {
        Some(spawn_daemon(&args, &opts, &ifname, &socket)?)
    } else {
        None
    };

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let result = rt.block_on(async {
        let mut link = connect_daemon(&socket, &mut child).await?;
        let bound = link
            .execute(DaemonCmd::Listen { addr: listen })
            .await
            .map_err(|e| e.to_string())?;
        tracing::info!(ifname, listen = %bound.unwrap_or(listen), "data path ready");
        if let Some(src) = &opts.firewall {
            let name = match src {
                control::config::Source::File(p) => p.display().to_string(),
                control::config::Source::Inline(_) => "<firewall> block".into(),
            };
            let bytes = src
                .load()
                .map_err(|e| format!("firewall rules file {name}: {e}"))?;
            let text = String::from_utf8_lossy(&bytes);
            let n = link
                .client()
                .fw_load(&text)
                .await
                .map_err(|e| format!("firewall rules file {name}: {e}"))?;
            tracing::info!(rules = n, "firewall rule set loaded into the data path");
        }
        let mut shell = match opts.role {
            Role::Server => {
                let mut setup = vec![DaemonCmd::SetIfMode {
                    mode: IfMode::Multipoint,
                    client_to_client: opts.client_to_client,
                }];
                let mut addresses = Vec::new();
                if let Some(s) = opts.server {
                    addresses.push(Net::v4(s.server_addr(), s.netmask));
                }
                if let (Some(n), Some(a)) = (opts.server_ipv6, opts.server_ipv6_addr()) {
                    addresses.push(Net::v6(a, n.prefix_len));
                }
                setup.push(DaemonCmd::SetIfconfig {
                    addresses,
                    mtu: Some(u32::from(opts.tun_mtu)),
                    up: true,
                });
                for r in &opts.routes {
                    let gateway = r.gateway.as_deref().and_then(|g| g.parse::<IpAddr>().ok());
                    setup.push(DaemonCmd::AddRoute {
                        dst: Net::v4(r.network, r.netmask),
                        gateway,
                        metric: r.metric,
                    });
                }
                for cmd in setup {
                    link.execute(cmd).await.map_err(|e| e.to_string())?;
                }
                Shell::Server(Box::new(
                    Server::new(opts.clone(), template).map_err(|e| e.to_string())?,
                ))
            }
            Role::Client => Shell::Client(Box::new(Client::new(opts.clone(), template, remotes))),
        };
        let status_file = match &opts.status {
            Some(st) => Some(
                std::fs::OpenOptions::new()
                    .create(true)
                    .write(true)
                    .truncate(true)
                    .open(&st.path)
                    .map_err(|e| format!("status file {}: {e}", st.path.display()))?,
            ),
            None => None,
        };
        if !args.no_privdrop {
            drop_privileges(&opts)?;
        }
        if opts.role == Role::Server {
            tracing::info!("Initialization Sequence Completed");
        }
        if let Shell::Client(c) = &mut shell {
            c.start(Instant::now());
        }
        event_loop(&mut link, &mut shell, &opts, status_file).await
    });
    if let Some(mut c) = child {
        // The daemon exits with us (parent-death signal); reap it if we still can.
        let _ = c.try_wait();
    }
    result
}

fn write_status(shell: &Shell, opts: &Options, file: &mut Option<std::fs::File>) {
    if let (Shell::Server(s), Some(f)) = (shell, file.as_mut()) {
        let text = control::status::render(
            s,
            opts.status_version,
            Instant::now(),
            u64::from(unix_now()),
        );
        if let Err(e) = control::status::write(f, &text) {
            tracing::warn!("cannot write the status file: {e}");
        }
    }
}

async fn event_loop(
    link: &mut DaemonLink,
    shell: &mut Shell,
    opts: &Options,
    mut status_file: Option<std::fs::File>,
) -> Result<i32, String> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;
    let mut stats = tokio::time::interval(Duration::from_secs(5));
    let status_every = opts
        .status
        .as_ref()
        .map(|s| control::status::interval(s.interval))
        .unwrap_or(Duration::from_secs(3600));
    let mut status_tick = tokio::time::interval(status_every);
    let mut stopping: Option<Instant> = None;
    loop {
        while let Some(cmd) = shell.poll_command() {
            let what = format!("{cmd:?}").chars().take(40).collect::<String>();
            if let Err(e) = link.execute(cmd).await {
                tracing::warn!("daemon command {what}… failed: {e}");
            }
        }
        if let Shell::Client(c) = shell
            && let Some(i) = c.take_initialized()
        {
            tracing::info!(remote = %i.remote, peer_id = i.peer_id, cipher = i.cipher, ekm = i.ekm, "Initialization Sequence Completed");
        }
        if let Shell::Client(c) = shell
            && let ClientState::Stopped { reason } = c.state()
        {
            if reason != "shutdown" {
                return Ok(1);
            }
            if stopping.is_none() {
                return Ok(0);
            }
        }
        if stopping.is_some_and(|t| Instant::now() >= t) {
            return Ok(0);
        }
        let now = Instant::now();
        let mut wake = shell
            .poll_timeout()
            .unwrap_or(now + Duration::from_secs(1))
            .min(now + Duration::from_secs(1));
        if let Some(t) = stopping {
            wake = wake.min(t);
        }
        tokio::select! {
            ev = link.next_event() => match ev {
                Some(ev) => shell.handle_event(Instant::now(), ev),
                None => return Err("dco-daemon went away".into()),
            },
            _ = tokio::time::sleep_until(wake.into()) => shell.handle_timeout(Instant::now()),
            _ = stats.tick() => {
                if let Ok(evs) = link.traffic().await {
                    for ev in evs {
                        shell.handle_event(Instant::now(), ev);
                    }
                }
            }
            _ = status_tick.tick(), if opts.status.is_some() => {
                if let Ok(evs) = link.traffic().await {
                    for ev in evs {
                        shell.handle_event(Instant::now(), ev);
                    }
                }
                write_status(shell, opts, &mut status_file);
            }
            _ = term.recv(), if stopping.is_none() => {
                tracing::info!("SIGTERM: shutting down");
                shell.shutdown(Instant::now());
                stopping = Some(Instant::now() + Duration::from_secs(1));
            }
            _ = int.recv(), if stopping.is_none() => {
                tracing::info!("SIGINT: shutting down");
                shell.shutdown(Instant::now());
                stopping = Some(Instant::now() + Duration::from_secs(1));
            }
        }
    }
}
