//! The systems under test: each one starts inside the bench topology, tells the runner
//! which address to send iperf3 traffic to and which processes to charge CPU time to, and
//! stops (removing what it created) when its running handle is dropped.

use anyhow::{Context, Result, bail};
use e2e::{KeyAlgo, Netns, OvpnConfig, Pki, StockOpenvpn, TempDir, VethConfig, VethPair};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use super::toolchain::Boringtun;

/// Two namespaces joined by a veth pair (a = server, b = client), a PKI and a work
/// directory for configs and logs. Shared by every system in a run.
#[derive(Debug)]
pub struct Topology {
    /// The wire.
    pub link: VethPair,
    /// Throwaway PKI (RSA 2048, like a default easy-rsa).
    pub pki: Pki,
    /// Configs, keys and logs.
    pub work: TempDir,
    /// Namespace of the servers (and of the iperf3 server).
    pub server_ns: Netns,
    /// Namespace of the clients (and of the iperf3 client).
    pub client_ns: Netns,
}

impl Topology {
    /// Builds the namespaces, the veth pair (with `veth` settings) and the PKI.
    pub fn build(prefix: &str, veth: &VethConfig) -> Result<Topology> {
        let server_ns = Netns::new(prefix)?;
        let client_ns = Netns::new(prefix)?;
        let link = VethPair::new(&server_ns, &client_ns, veth)?;
        let pki = Pki::new(prefix, KeyAlgo::Rsa2048)?;
        let work = TempDir::new(&format!("{prefix}-bench"))?;
        Ok(Topology {
            link,
            pki,
            work,
            server_ns,
            client_ns,
        })
    }

    /// The server's underlay address.
    pub fn server_underlay(&self) -> IpAddr {
        self.link.a_v4.into()
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        // Every system is stopped by now; our daemons leave their (empty) socket
        // directories behind.
        for ns in [&self.server_ns, &self.client_ns] {
            crate::cleanup::remove_socket_dir(ns.name());
        }
    }
}

/// Which implementation pair a system is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SystemKind {
    /// The veth pair without any VPN: the ceiling.
    Underlay,
    /// Stock OpenVPN 2.6 client and server (`disable-dco`).
    StockStock,
    /// Stock OpenVPN 2.6 client, our server (`dco-control --config`).
    StockClientOurServer,
    /// Our client and our server.
    OursOurs,
    /// Our client and our server, the server with the conntrack firewall on
    /// ([`BENCH_RULES`]: 20 rules, default policy drop).
    OursFirewall,
    /// wireguard-go on both ends, configured with `wg`.
    WireguardGo,
    /// boringtun-cli on both ends, configured with `wg`.
    Boringtun,
}

impl SystemKind {
    /// Short name used on the command line and in files.
    pub fn id(self) -> &'static str {
        match self {
            SystemKind::Underlay => "underlay",
            SystemKind::StockStock => "stock",
            SystemKind::StockClientOurServer => "stock-ours",
            SystemKind::OursOurs => "ours",
            SystemKind::OursFirewall => "ours-fw",
            SystemKind::WireguardGo => "wireguard-go",
            SystemKind::Boringtun => "boringtun",
        }
    }

    /// Every kind, in report order.
    pub fn all() -> [SystemKind; 7] {
        [
            SystemKind::Underlay,
            SystemKind::StockStock,
            SystemKind::StockClientOurServer,
            SystemKind::OursOurs,
            SystemKind::OursFirewall,
            SystemKind::WireguardGo,
            SystemKind::Boringtun,
        ]
    }

    /// Parses [`SystemKind::id`].
    pub fn parse(s: &str) -> Option<SystemKind> {
        SystemKind::all().into_iter().find(|k| k.id() == s)
    }

    /// True when the system runs once per OpenVPN data cipher.
    pub fn per_cipher(self) -> bool {
        matches!(
            self,
            SystemKind::StockStock
                | SystemKind::StockClientOurServer
                | SystemKind::OursOurs
                | SystemKind::OursFirewall
        )
    }

    /// True when both ends are ours.
    fn ours_both_ends(self) -> bool {
        matches!(self, SystemKind::OursOurs | SystemKind::OursFirewall)
    }
}

/// A running system; dropping it stops its processes.
pub trait RunningSut {
    /// Address inside the server namespace that traffic from the client namespace reaches
    /// through the system.
    fn target(&self) -> IpAddr;
    /// Processes whose CPU time is the system's cost (both ends).
    fn cpu_pids(&self) -> Vec<u32>;
}

/// A system under test.
pub trait Sut {
    /// Stable id, e.g. `stock/AES-256-GCM`.
    fn id(&self) -> String;
    /// Human label for tables.
    fn label(&self) -> String;
    /// The kind.
    fn kind(&self) -> SystemKind;
    /// The OpenVPN data cipher, if the system has one.
    fn cipher(&self) -> Option<&str>;
    /// `Err(reason)` when the system cannot run now (binary missing, still building).
    fn availability(&self) -> Result<(), String>;
    /// Starts both ends and waits until traffic passes.
    fn start(&self, topo: &Topology) -> Result<Box<dyn RunningSut>>;
}

/// Builds the list of systems for `kinds` × `ciphers`.
pub fn systems(
    kinds: &[SystemKind],
    ciphers: &[String],
    dco_bin_dir: &Path,
    workers: Option<usize>,
    boringtun: Arc<Boringtun>,
) -> Vec<Box<dyn Sut>> {
    let mut out: Vec<Box<dyn Sut>> = Vec::new();
    for &kind in kinds {
        match kind {
            SystemKind::Underlay => out.push(Box::new(Underlay)),
            SystemKind::StockStock
            | SystemKind::StockClientOurServer
            | SystemKind::OursOurs
            | SystemKind::OursFirewall => {
                for c in ciphers {
                    out.push(Box::new(OpenvpnSut {
                        kind,
                        cipher: c.clone(),
                        bin_dir: dco_bin_dir.to_path_buf(),
                        workers,
                        ours_ok: Default::default(),
                    }));
                }
            }
            SystemKind::WireguardGo => out.push(Box::new(WireguardSut { boringtun: None })),
            SystemKind::Boringtun => out.push(Box::new(WireguardSut {
                boringtun: Some(boringtun.clone()),
            })),
        }
    }
    out
}

const READY: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------

/// The bare veth pair.
pub struct Underlay;

struct UnderlayRunning(IpAddr);

impl RunningSut for UnderlayRunning {
    fn target(&self) -> IpAddr {
        self.0
    }
    fn cpu_pids(&self) -> Vec<u32> {
        Vec::new()
    }
}

impl Sut for Underlay {
    fn id(&self) -> String {
        "underlay".into()
    }
    fn label(&self) -> String {
        "underlay (veth, no VPN)".into()
    }
    fn kind(&self) -> SystemKind {
        SystemKind::Underlay
    }
    fn cipher(&self) -> Option<&str> {
        None
    }
    fn availability(&self) -> Result<(), String> {
        Ok(())
    }
    fn start(&self, topo: &Topology) -> Result<Box<dyn RunningSut>> {
        Ok(Box::new(UnderlayRunning(topo.server_underlay())))
    }
}

// ---------------------------------------------------------------------------------------

/// The server's rule set for `ours-fw`: 20 rules as a site might write them, default policy
/// drop, established flows accepted by the first rule. The bench's traffic (iperf3 on
/// [`super::runner::IPERF_PORT`] and ping, from the client whose certificate says
/// `bench-client`) is let in by rules 4-6; the rest never match it but are there to be
/// walked by new flows.
pub const BENCH_RULES: &str = r#"# dco-bench ours-fw: the server's firewall
policy drop
ct state established,related accept
ct state invalid drop
from-peer cn "bench-client" to-host tcp dport 5201 accept
from-peer cn "bench-client" to-host udp dport 5201 accept
icmp type echo-request accept
icmpv6 type { echo-request, nd-neighbor-solicit } accept
from-peer cn "alice" ip daddr 10.8.0.0/24 tcp dport 22 accept
from-peer cn { "bob", "carol" } tcp dport { 80, 443 } accept
between-peers tcp dport 80 reject
ip saddr 192.168.0.0/16 drop
ip6 saddr fd00:dead::/32 drop
udp dport 53 accept
udp dport 123 accept
tcp dport 25 reject with tcp reset
from-peer peer-id 100-199 to-host tcp dport 8443 accept
to-peer cn "dave" udp dport 5000-6000 accept
meta l4proto gre accept
ip daddr 198.51.100.0/24 udp dport 9000 accept
ip6 daddr 2001:db8::/32 udp dport 4500 accept
udp dport 9 accept
"#;

/// OpenVPN-protocol systems: stock↔stock, stock client↔our server, ours↔ours (also with
/// the server's firewall on).
pub struct OpenvpnSut {
    kind: SystemKind,
    cipher: String,
    bin_dir: PathBuf,
    /// `--workers` for our daemons (None: theirs, one per core).
    workers: Option<usize>,
    ours_ok: std::sync::OnceLock<Result<(), String>>,
}

/// Whether our `dco-control` in `bin_dir` is a working build: it must exist and answer
/// `--help` with success (the workspace skeleton's placeholder exits with an error).
pub fn ours_available(bin_dir: &Path) -> Result<(), String> {
    let bin = bin_dir.join("dco-control");
    if !bin.exists() {
        return Err(format!(
            "not available yet: {} is not built (cargo build --release -p dco-control)",
            bin.display()
        ));
    }
    match e2e::run_timeout(
        std::process::Command::new(&bin).arg("--help"),
        Duration::from_secs(10),
    ) {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(format!(
            "not available yet: {} --help failed ({}): {}",
            bin.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Err(e) => Err(format!("not available yet: {}: {e:#}", bin.display())),
    }
}

impl OpenvpnSut {
    fn ours_bin(&self) -> PathBuf {
        self.bin_dir.join("dco-control")
    }

    /// `ovpnctl`, which `ours-fw` uses to check that the firewall is in the path.
    fn ovpnctl_bin(&self) -> PathBuf {
        self.bin_dir.join("ovpnctl")
    }

    /// `dco-control` arguments for config `conf`.
    fn ours_args(&self, conf: &Path) -> Vec<std::ffi::OsString> {
        let mut a: Vec<std::ffi::OsString> = vec!["--config".into(), conf.into()];
        if let Some(w) = self.workers {
            a.push("--workers".into());
            a.push(w.to_string().into());
        }
        a
    }

    fn tunnel_net(&self) -> (Ipv4Addr, u16) {
        match self.kind {
            SystemKind::StockStock => (Ipv4Addr::new(10, 8, 0, 0), 1194),
            _ => (Ipv4Addr::new(10, 9, 0, 0), 1195),
        }
    }
}

/// Either a stock openvpn or one of our processes.
enum Peer {
    Stock(StockOpenvpn),
    Ours(Daemon),
}

impl Peer {
    fn pid(&self) -> u32 {
        match self {
            Peer::Stock(p) => p.pid(),
            Peer::Ours(d) => d.pid(),
        }
    }
}

struct OpenvpnRunning {
    target: IpAddr,
    // Client first: it is stopped before the server.
    peers: Vec<Peer>,
    ns_names: Vec<String>,
}

impl RunningSut for OpenvpnRunning {
    fn target(&self) -> IpAddr {
        self.target
    }
    fn cpu_pids(&self) -> Vec<u32> {
        let mut pids: Vec<u32> = self.peers.iter().map(Peer::pid).collect();
        // Our dco-control may start helpers (dco-daemon); charge every dco-* process in the
        // two namespaces.
        for ns in &self.ns_names {
            pids.extend(ns_pids_named(ns, "dco-"));
        }
        pids.sort_unstable();
        pids.dedup();
        pids
    }
}

impl Drop for OpenvpnRunning {
    fn drop(&mut self) {
        // Client first, then server (SIGTERM, then SIGKILL after 5 s).
        self.peers.clear();
        // Our dco-control leaves its dco-daemon to notice that it is gone (it polls), so
        // wait for every dco-* process here: the next system must not find the old daemon
        // still holding the UDP port and the IPC socket.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let left: Vec<u32> = self
                .ns_names
                .iter()
                .flat_map(|ns| ns_pids_named(ns, "dco-"))
                .collect();
            if left.is_empty() {
                return;
            }
            if std::time::Instant::now() >= deadline {
                for p in left {
                    // SAFETY: kill(2) on a pid found in one of the bench's own namespaces.
                    unsafe {
                        libc::kill(p as i32, libc::SIGKILL);
                    }
                }
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Sut for OpenvpnSut {
    fn id(&self) -> String {
        format!("{}/{}", self.kind.id(), self.cipher)
    }
    fn label(&self) -> String {
        let who = match self.kind {
            SystemKind::StockStock => "stock 2.6 ↔ stock 2.6",
            SystemKind::StockClientOurServer => "stock 2.6 client ↔ our server",
            SystemKind::OursFirewall => "our client ↔ our server + firewall (20 rules)",
            _ => "our client ↔ our server",
        };
        format!("{who} {}", self.cipher)
    }
    fn kind(&self) -> SystemKind {
        self.kind
    }
    fn cipher(&self) -> Option<&str> {
        Some(&self.cipher)
    }
    fn availability(&self) -> Result<(), String> {
        if self.kind == SystemKind::StockStock {
            return Ok(());
        }
        self.ours_ok
            .get_or_init(|| ours_available(&self.bin_dir))
            .clone()?;
        let ovpnctl = self.ovpnctl_bin();
        if self.kind == SystemKind::OursFirewall && !ovpnctl.exists() {
            return Err(format!(
                "not available yet: {} is not built (cargo build --release -p dco-control-ipc)",
                ovpnctl.display()
            ));
        }
        Ok(())
    }
    fn start(&self, topo: &Topology) -> Result<Box<dyn RunningSut>> {
        let (net, port) = self.tunnel_net();
        let pki = &topo.pki;
        let work = topo.work.path();
        let ours = self.kind != SystemKind::StockStock;
        let mut scfg = OvpnConfig::server(pki)
            .tls_crypt(pki)
            .data_ciphers(&[&self.cipher])
            .network(net, 24)
            .port(port)
            // Our parser is meant to take stock configs; leave out the stock-only opt-out.
            .disable_dco(!ours);
        if self.kind == SystemKind::OursFirewall {
            let rules = work.join("bench-firewall.rules");
            std::fs::write(&rules, BENCH_RULES)
                .with_context(|| format!("writing {}", rules.display()))?;
            scfg = scfg.extra(&format!("firewall {}", rules.display()));
        }
        let ccfg = OvpnConfig::client(pki, "bench-client", topo.server_underlay())?
            .tls_crypt(pki)
            .data_ciphers(&[&self.cipher])
            .port(port)
            .disable_dco(!self.kind.ours_both_ends());
        let tag = self.kind.id();
        let server = if ours {
            let conf = scfg.write(work, &format!("{tag}-server"))?;
            e2e::make_world_readable(work);
            let args = self.ours_args(&conf);
            let args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
            Peer::Ours(Daemon::spawn(
                &topo.server_ns,
                &self.ours_bin(),
                &args,
                work,
                &format!("{tag}-server"),
            )?)
        } else {
            Peer::Stock(StockOpenvpn::start(
                &topo.server_ns,
                &scfg,
                work,
                &format!("{tag}-server"),
                READY,
            )?)
        };
        let client = if self.kind.ours_both_ends() {
            let conf = ccfg.write(work, &format!("{tag}-client"))?;
            e2e::make_world_readable(work);
            let args = self.ours_args(&conf);
            let args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
            Peer::Ours(Daemon::spawn(
                &topo.client_ns,
                &self.ours_bin(),
                &args,
                work,
                &format!("{tag}-client"),
            )?)
        } else {
            Peer::Stock(StockOpenvpn::start(
                &topo.client_ns,
                &ccfg,
                work,
                &format!("{tag}-client"),
                READY,
            )?)
        };
        let target = IpAddr::V4(Ipv4Addr::from(u32::from(net) + 1));
        let running = OpenvpnRunning {
            target,
            peers: vec![client, server],
            ns_names: vec![topo.server_ns.name().into(), topo.client_ns.name().into()],
        };
        topo.client_ns
            .wait_ping(target, READY)
            .context("no traffic through the tunnel")?;
        if self.kind == SystemKind::OursFirewall {
            // The firewall must really be in the path: the ping above is a tracked flow.
            let ovpnctl = self.ovpnctl_bin().display().to_string();
            let out = topo
                .server_ns
                .run(&[&ovpnctl, "--ifname", &scfg.dev, "ct", "stats", "--json"])?;
            let v: serde_json::Value = serde_json::from_str(&out)
                .with_context(|| format!("ovpnctl ct stats --json: {out}"))?;
            if v["new"].as_u64().unwrap_or(0) == 0 {
                bail!("the server's firewall tracked no connection (ovpnctl ct stats: {out})");
            }
        }
        Ok(Box::new(running))
    }
}

// ---------------------------------------------------------------------------------------

/// WireGuard in userspace: wireguard-go or boringtun-cli on both ends, set up with `wg`.
pub struct WireguardSut {
    boringtun: Option<Arc<Boringtun>>,
}

struct WgRunning {
    target: IpAddr,
    procs: Vec<Daemon>,
    socks: Vec<PathBuf>,
}

impl RunningSut for WgRunning {
    fn target(&self) -> IpAddr {
        self.target
    }
    fn cpu_pids(&self) -> Vec<u32> {
        self.procs.iter().map(Daemon::pid).collect()
    }
}

impl Drop for WgRunning {
    fn drop(&mut self) {
        self.procs.clear();
        for s in &self.socks {
            let _ = std::fs::remove_file(s);
        }
    }
}

impl Sut for WireguardSut {
    fn id(&self) -> String {
        if self.boringtun.is_some() {
            "boringtun".into()
        } else {
            "wireguard-go".into()
        }
    }
    fn label(&self) -> String {
        if self.boringtun.is_some() {
            "boringtun-cli ↔ boringtun-cli".into()
        } else {
            "wireguard-go ↔ wireguard-go".into()
        }
    }
    fn kind(&self) -> SystemKind {
        if self.boringtun.is_some() {
            SystemKind::Boringtun
        } else {
            SystemKind::WireguardGo
        }
    }
    fn cipher(&self) -> Option<&str> {
        Some("CHACHA20-POLY1305")
    }
    fn availability(&self) -> Result<(), String> {
        match &self.boringtun {
            Some(b) => b.binary().map(|_| ()),
            None => e2e::find_tool("wireguard-go")
                .map(|_| ())
                .ok_or_else(|| "wireguard-go is not installed".into()),
        }
    }
    fn start(&self, topo: &Topology) -> Result<Box<dyn RunningSut>> {
        let work = topo.work.path();
        let tag = if self.boringtun.is_some() { "b" } else { "g" };
        let p: String = topo.server_ns.prefix().chars().take(4).collect();
        let id = std::process::id() % 100_000;
        let names = [format!("{p}{tag}{id}s"), format!("{p}{tag}{id}c")];
        let nss = [&topo.server_ns, &topo.client_ns];
        let addrs = [Ipv4Addr::new(10, 201, 0, 1), Ipv4Addr::new(10, 201, 0, 2)];
        let underlay = [IpAddr::V4(topo.link.a_v4), IpAddr::V4(topo.link.b_v4)];
        let mut running = WgRunning {
            target: addrs[0].into(),
            procs: Vec::new(),
            socks: names
                .iter()
                .map(|n| PathBuf::from(format!("/var/run/wireguard/{n}.sock")))
                .collect(),
        };
        let mut keys = Vec::new();
        for side in 0..2 {
            let key = work.join(format!("wg-{tag}-{side}.key"));
            let private = run_stdout(std::process::Command::new("wg").arg("genkey"))?;
            std::fs::write(&key, &private)?;
            let mut cmd = std::process::Command::new("wg");
            cmd.arg("pubkey");
            let public = run_stdin(&mut cmd, &private)?;
            keys.push((key, public.trim().to_string()));
        }
        for side in 0..2 {
            let ns = nss[side];
            let name = &names[side];
            let daemon = match &self.boringtun {
                None => Daemon::spawn_env(
                    ns,
                    Path::new("wireguard-go"),
                    &["-f".as_ref(), name.as_ref()],
                    work,
                    &format!("wg-go-{side}"),
                    &[("WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD", "1")],
                )?,
                Some(b) => {
                    let bin = b.binary().map_err(anyhow::Error::msg)?;
                    let log = work.join(format!("boringtun-{side}.out"));
                    let log = log.to_string_lossy().into_owned();
                    Daemon::spawn_env(
                        ns,
                        &bin,
                        &[
                            "-f".as_ref(),
                            "--disable-drop-privileges".as_ref(),
                            "-l".as_ref(),
                            log.as_ref(),
                            name.as_ref(),
                        ],
                        work,
                        &format!("boringtun-{side}"),
                        &[],
                    )?
                }
            };
            running.procs.push(daemon);
            wait_for_file(&running.socks[side], Duration::from_secs(10))
                .with_context(|| format!("{name}: the UAPI socket did not appear"))?;
            let peer = 1 - side;
            ns.run(&[
                "wg",
                "set",
                name,
                "private-key",
                &keys[side].0.to_string_lossy(),
                "listen-port",
                "51820",
                "peer",
                &keys[peer].1,
                "allowed-ips",
                &format!("{}/32", addrs[peer]),
                "endpoint",
                &format!("{}:51820", underlay[peer]),
            ])?;
            ns.run(&[
                "ip",
                "addr",
                "add",
                &format!("{}/24", addrs[side]),
                "dev",
                name,
            ])?;
            ns.run(&["ip", "link", "set", "dev", name, "mtu", "1420", "up"])?;
        }
        topo.client_ns
            .wait_ping(running.target, READY)
            .context("no traffic through WireGuard")?;
        Ok(Box::new(running))
    }
}

// ---------------------------------------------------------------------------------------

/// A background process inside a namespace (an [`e2e::NsProcess`]) that must survive its
/// first 100 ms; stopped (SIGTERM, then SIGKILL) on drop.
pub struct Daemon(e2e::NsProcess);

impl Daemon {
    /// Spawns `program args` in `ns`.
    pub fn spawn(
        ns: &Netns,
        program: &Path,
        args: &[&std::ffi::OsStr],
        work: &Path,
        name: &str,
    ) -> Result<Daemon> {
        Self::spawn_env(ns, program, args, work, name, &[])
    }

    /// Spawns `program args` in `ns` with extra environment variables.
    pub fn spawn_env(
        ns: &Netns,
        program: &Path,
        args: &[&std::ffi::OsStr],
        work: &Path,
        name: &str,
        env: &[(&str, &str)],
    ) -> Result<Daemon> {
        let mut p = e2e::NsProcess::spawn(ns, program, args, work, name, env)?;
        std::thread::sleep(Duration::from_millis(100));
        p.ensure_running()?;
        Ok(Daemon(p))
    }

    /// Its pid.
    pub fn pid(&self) -> u32 {
        self.0.pid()
    }
}

fn wait_for_file(p: &Path, timeout: Duration) -> Result<()> {
    let deadline = std::time::Instant::now() + timeout;
    while !p.exists() {
        if std::time::Instant::now() >= deadline {
            bail!("{} did not appear within {timeout:?}", p.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

fn run_stdout(cmd: &mut std::process::Command) -> Result<String> {
    let out = e2e::run_timeout(cmd, Duration::from_secs(10))?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn run_stdin(cmd: &mut std::process::Command, input: &str) -> Result<String> {
    use std::io::Write;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    child
        .stdin
        .take()
        .context("stdin")?
        .write_all(input.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Pids in namespace `ns` whose command name starts with `prefix`.
fn ns_pids_named(ns: &str, prefix: &str) -> Vec<u32> {
    let Ok(out) = e2e::run_timeout(
        std::process::Command::new("ip").args(["netns", "pids", ns]),
        Duration::from_secs(5),
    ) else {
        return Vec::new();
    };
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|p| p.parse::<u32>().ok())
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.starts_with(prefix))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bench_rules_parse_to_twenty_rules_that_let_the_bench_in() {
        let set = conntrack::RuleSet::parse(BENCH_RULES).expect("BENCH_RULES parse");
        assert_eq!(set.len(), 20);
        let port = format!("dport {}", super::super::runner::IPERF_PORT);
        assert!(BENCH_RULES.contains(&format!("tcp {port} accept")));
        assert!(BENCH_RULES.contains(&format!("udp {port} accept")));
        // And the tracker really lets the bench's traffic in, from its client only.
        use conntrack::{Config, Conntrack, PacketCtx, PeerRef, Timestamp, Verdict, build};
        let ct = Conntrack::with_rules(Config::default(), set).expect("tracker");
        let now = Timestamp::from_millis(1_000);
        let (client, server) = ("10.9.0.2".parse().unwrap(), "10.9.0.1".parse().unwrap());
        let iperf = super::super::runner::IPERF_PORT;
        let syn = |sport| {
            build::Tcp {
                sport,
                dport: iperf,
                seq: 1,
                flags: 0x02,
                win: 65535,
                ..Default::default()
            }
            .packet(client, server)
        };
        let bench = || PacketCtx::from_peer(PeerRef::new(1, "bench-client"), now);
        assert_eq!(ct.track(&syn(40000), &bench()), Verdict::Accept);
        let udp = build::udp(client, server, 40001, iperf, b"iperf3");
        assert_eq!(ct.track(&udp, &bench()), Verdict::Accept);
        let ping = build::echo_request(client, server, 7, 1);
        assert_eq!(ct.track(&ping, &bench()), Verdict::Accept);
        let stranger = PacketCtx::from_peer(PeerRef::new(2, "someone-else"), now);
        assert!(matches!(ct.track(&syn(40002), &stranger), Verdict::Drop(_)));
    }

    #[test]
    fn every_system_id_parses_back() {
        for k in SystemKind::all() {
            assert_eq!(SystemKind::parse(k.id()), Some(k));
        }
    }
}
