//! Network namespaces as hosts and veth pairs as the wires between them.

use anyhow::{Context, Result, bail};
use std::collections::HashSet;
use std::ffi::OsStr;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::{Command, Output};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::proc::{pid_alive, run_timeout, signal};
use crate::tools::ensure_tools;

static NS_COUNTER: AtomicU32 = AtomicU32::new(0);
static VETH_COUNTER: AtomicU32 = AtomicU32::new(0);
static CLEANED: Mutex<Option<HashSet<String>>> = Mutex::new(None);

/// Default time limit for one `ip`/`ethtool` command.
const CMD_TIMEOUT: Duration = Duration::from_secs(30);

/// A network namespace owned by this process, deleted on drop together with every process
/// still running inside it and every interface in it.
#[derive(Debug)]
pub struct Netns {
    name: String,
    prefix: String,
    next_if: AtomicU32,
}

impl Netns {
    /// Creates namespace `{prefix}-{pid}-{n}` with `lo` up. The first call for a prefix also
    /// removes namespaces of that prefix whose creating process is gone.
    pub fn new(prefix: &str) -> Result<Netns> {
        if prefix.is_empty() || !prefix.chars().all(|c| c.is_ascii_alphanumeric()) {
            bail!("netns prefix must be non-empty ASCII letters/digits, got {prefix:?}");
        }
        cleanup_stale_once(prefix);
        let n = NS_COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("{prefix}-{}-{n}", std::process::id());
        ip(&["netns", "add", &name])?;
        let ns = Netns {
            name,
            prefix: prefix.to_string(),
            next_if: AtomicU32::new(0),
        };
        ns.run(&["ip", "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// The namespace's name (as `ip netns` knows it).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The prefix this namespace was created with.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// A `Command` that runs `program` inside the namespace (`ip netns exec NAME program`).
    /// `ip netns exec` execs the program, so the child's pid is the program's.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).arg(program);
        cmd
    }

    /// Runs `args` inside the namespace with a 30 s limit; fails with its stderr on a
    /// non-zero exit. Returns stdout.
    pub fn run(&self, args: &[&str]) -> Result<String> {
        let out = self.run_output(args, CMD_TIMEOUT)?;
        if !out.status.success() {
            bail!(
                "[{}] `{}` failed ({}): {}",
                self.name,
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Runs `args` inside the namespace with a time limit and returns its output whatever
    /// the exit status.
    pub fn run_output(&self, args: &[&str], timeout: Duration) -> Result<Output> {
        let (prog, rest) = args.split_first().context("empty command")?;
        let mut cmd = self.command(prog);
        cmd.args(rest);
        run_timeout(&mut cmd, timeout)
    }

    /// Runs `f` on a new thread that has entered this namespace (setns), so sockets it
    /// creates live in the namespace. The thread may outlive the call; join the handle.
    pub fn spawn_thread<F, R>(&self, f: F) -> Result<JoinHandle<Result<R>>>
    where
        F: FnOnce() -> Result<R> + Send + 'static,
        R: Send + 'static,
    {
        let fd = self.open_fd()?;
        let name = self.name.clone();
        Ok(std::thread::Builder::new()
            .name(format!("ns-{name}"))
            .spawn(move || {
                enter(&fd).with_context(|| format!("entering netns {name}"))?;
                drop(fd);
                f()
            })?)
    }

    /// Runs `f` inside the namespace (on a helper thread) and waits for it.
    pub fn in_ns<F, R>(&self, f: F) -> Result<R>
    where
        F: FnOnce() -> Result<R> + Send + 'static,
        R: Send + 'static,
    {
        match self.spawn_thread(f)?.join() {
            Ok(r) => r,
            Err(_) => bail!("thread in netns {} panicked", self.name),
        }
    }

    fn open_fd(&self) -> Result<OwnedFd> {
        let path = format!("/run/netns/{}", self.name);
        let file = std::fs::File::open(&path).with_context(|| format!("opening {path}"))?;
        Ok(file.into())
    }

    /// Pids of all processes whose network namespace is this one.
    pub fn pids(&self) -> Vec<i32> {
        let Ok(out) = run_timeout(
            Command::new("ip").args(["netns", "pids", &self.name]),
            CMD_TIMEOUT,
        ) else {
            return Vec::new();
        };
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .filter(|&p: &i32| p != std::process::id() as i32)
            .collect()
    }

    /// SIGTERM to every process in the namespace, then SIGKILL after `grace`.
    pub fn kill_all(&self, grace: Duration) {
        let pids = self.pids();
        if pids.is_empty() {
            return;
        }
        for &p in &pids {
            signal(p, libc::SIGTERM);
        }
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline && pids.iter().any(|&p| pid_alive(p) && !is_zombie(p)) {
            std::thread::sleep(Duration::from_millis(20));
        }
        for p in self.pids() {
            signal(p, libc::SIGKILL);
        }
    }

    /// Interface counters (from `ip -s -j link`).
    pub fn if_stats(&self, ifname: &str) -> Result<IfStats> {
        let out = ip(&["-n", &self.name, "-s", "-j", "link", "show", "dev", ifname])?;
        IfStats::from_ip_json(&out)
    }

    /// A fresh interface name for this namespace: `{prefix≤8}-e{n}`, at most 15 bytes.
    pub(crate) fn next_ifname(&self) -> String {
        let n = self.next_if.fetch_add(1, Ordering::Relaxed);
        let p: String = self.prefix.chars().take(8).collect();
        format!("{p}-e{n}")
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if std::env::var_os("DCO_TEST_KEEP").is_some() {
            eprintln!("e2e: keeping netns {}", self.name);
            return;
        }
        self.kill_all(Duration::from_secs(3));
        let _ = ip(&["netns", "del", &self.name]);
    }
}

fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, r)| r.trim_start().starts_with('Z'))
        })
        .unwrap_or(true)
}

fn enter(fd: &OwnedFd) -> Result<()> {
    // SAFETY: fd is an open namespace file; setns(CLONE_NEWNET) only changes the network
    // namespace of the calling thread, which is allowed in a multi-threaded process.
    let rc = unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).context("setns(CLONE_NEWNET)");
    }
    Ok(())
}

/// Runs `ip ARGS` in the root namespace.
pub(crate) fn ip(args: &[&str]) -> Result<String> {
    let out = run_timeout(Command::new("ip").args(args), CMD_TIMEOUT)?;
    if !out.status.success() {
        bail!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn cleanup_stale_once(prefix: &str) {
    {
        let mut done = CLEANED.lock().unwrap_or_else(|e| e.into_inner());
        if !done
            .get_or_insert_with(HashSet::new)
            .insert(prefix.to_string())
        {
            return;
        }
    }
    let _ = Netns::cleanup_stale(prefix);
}

impl Netns {
    /// Names of the existing namespaces that start with `{prefix}-` (for leak checks too).
    pub fn list(prefix: &str) -> Result<Vec<String>> {
        let want = format!("{prefix}-");
        Ok(ip(&["netns", "list"])?
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .filter(|n| n.starts_with(&want))
            .map(String::from)
            .collect())
    }

    /// Deletes namespaces named `{prefix}-{pid}-{n}` whose creating process no longer runs
    /// (left behind by a killed test), with any process still inside them. Returns how many.
    pub fn cleanup_stale(prefix: &str) -> Result<usize> {
        let mut removed = 0;
        for name in Netns::list(prefix)? {
            let name = name.as_str();
            let Some(rest) = name.strip_prefix(prefix).and_then(|r| r.strip_prefix('-')) else {
                continue;
            };
            let mut parts = rest.split('-');
            let (Some(pid), Some(n), None) = (parts.next(), parts.next(), parts.next()) else {
                continue;
            };
            let (Ok(pid), true) = (pid.parse::<i32>(), n.chars().all(|c| c.is_ascii_digit()))
            else {
                continue;
            };
            if pid_alive(pid) {
                continue;
            }
            let stale = Netns {
                name: name.to_string(),
                prefix: prefix.to_string(),
                next_if: AtomicU32::new(0),
            };
            eprintln!("e2e: removing stale netns {name}");
            drop(stale);
            removed += 1;
        }
        Ok(removed)
    }
}

/// NIC offload settings applied to both ends of a veth pair with `ethtool -K`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Offloads {
    /// As on a real NIC: TSO, GSO and GRO on (veth has GRO off by default).
    #[default]
    NicLike,
    /// TSO, GSO and GRO off: every packet crosses the wire at MTU size.
    Off,
    /// Whatever the kernel gives a new veth.
    KernelDefault,
}

/// Settings for [`VethPair::new`]. Addresses default to a per-process unique pair
/// `172.(16+k/256).(k%256).{1,2}/24` and `fd00:db8:k::{1,2}/64` (k counts pairs).
#[derive(Debug, Clone, Default)]
pub struct VethConfig {
    /// MTU of both ends; `None` keeps 1500.
    pub mtu: Option<u32>,
    /// Offload settings of both ends.
    pub offloads: Offloads,
    /// IPv4 addresses of the a and b ends and the prefix length.
    pub v4: Option<(Ipv4Addr, Ipv4Addr, u8)>,
    /// IPv6 addresses of the a and b ends and the prefix length (added with `nodad`).
    pub v6: Option<(Ipv6Addr, Ipv6Addr, u8)>,
}

/// A veth pair between namespaces `a` and `b`, up, with IPv4 and IPv6 addresses on both
/// ends. Deleted on drop (and with either namespace).
#[derive(Debug)]
pub struct VethPair {
    /// Interface name in namespace a.
    pub a_if: String,
    /// Interface name in namespace b.
    pub b_if: String,
    /// IPv4 address of the a end.
    pub a_v4: Ipv4Addr,
    /// IPv4 address of the b end.
    pub b_v4: Ipv4Addr,
    /// IPv6 address of the a end.
    pub a_v6: Ipv6Addr,
    /// IPv6 address of the b end.
    pub b_v6: Ipv6Addr,
    a_ns: String,
}

impl VethPair {
    /// Creates the pair directly inside the two namespaces, sets MTU, offloads and
    /// addresses, and brings both ends up.
    pub fn new(a: &Netns, b: &Netns, cfg: &VethConfig) -> Result<VethPair> {
        let k = VETH_COUNTER.fetch_add(1, Ordering::Relaxed);
        let (a_v4, b_v4, p4) = cfg.v4.unwrap_or_else(|| {
            let hi = 16 + (k / 256) as u8 % 16;
            let lo = (k % 256) as u8;
            (
                Ipv4Addr::new(172, hi, lo, 1),
                Ipv4Addr::new(172, hi, lo, 2),
                24,
            )
        });
        let (a_v6, b_v6, p6) = cfg.v6.unwrap_or_else(|| {
            let s = (k & 0xffff) as u16;
            (
                Ipv6Addr::new(0xfd00, 0xdb8, s, 0, 0, 0, 0, 1),
                Ipv6Addr::new(0xfd00, 0xdb8, s, 0, 0, 0, 0, 2),
                64,
            )
        });
        let a_if = a.next_ifname();
        let b_if = b.next_ifname();
        ip(&[
            "link",
            "add",
            &a_if,
            "netns",
            a.name(),
            "type",
            "veth",
            "peer",
            "name",
            &b_if,
            "netns",
            b.name(),
        ])
        .context("creating veth pair")?;
        let pair = VethPair {
            a_if,
            b_if,
            a_v4,
            b_v4,
            a_v6,
            b_v6,
            a_ns: a.name().to_string(),
        };
        for (ns, ifname, v4, v6) in [(a, &pair.a_if, a_v4, a_v6), (b, &pair.b_if, b_v4, b_v6)] {
            if let Some(mtu) = cfg.mtu {
                ns.run(&["ip", "link", "set", "dev", ifname, "mtu", &mtu.to_string()])?;
            }
            set_offloads(ns, ifname, cfg.offloads)?;
            ns.run(&["ip", "addr", "add", &format!("{v4}/{p4}"), "dev", ifname])?;
            ns.run(&[
                "ip",
                "-6",
                "addr",
                "add",
                &format!("{v6}/{p6}"),
                "dev",
                ifname,
                "nodad",
            ])?;
            ns.run(&["ip", "link", "set", "dev", ifname, "up"])?;
        }
        Ok(pair)
    }

    /// The a end's address of the given family.
    pub fn a_addr(&self, v6: bool) -> IpAddr {
        if v6 {
            self.a_v6.into()
        } else {
            self.a_v4.into()
        }
    }

    /// The b end's address of the given family.
    pub fn b_addr(&self, v6: bool) -> IpAddr {
        if v6 {
            self.b_v6.into()
        } else {
            self.b_v4.into()
        }
    }
}

impl Drop for VethPair {
    fn drop(&mut self) {
        let _ = ip(&["-n", &self.a_ns, "link", "del", &self.a_if]);
    }
}

/// Applies `offloads` to one interface with `ethtool -K` run inside `ns`.
pub(crate) fn set_offloads(ns: &Netns, ifname: &str, offloads: Offloads) -> Result<()> {
    let state = match offloads {
        Offloads::NicLike => "on",
        Offloads::Off => "off",
        Offloads::KernelDefault => return Ok(()),
    };
    ensure_tools(&["ethtool"])?;
    ns.run(&[
        "ethtool", "-K", ifname, "tso", state, "gso", state, "gro", state,
    ])?;
    Ok(())
}

/// Counters of one interface.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IfStats {
    /// Packets received.
    pub rx_packets: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Packets dropped on receive.
    pub rx_dropped: u64,
    /// Packets sent.
    pub tx_packets: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Packets dropped on send.
    pub tx_dropped: u64,
}

impl IfStats {
    fn from_ip_json(text: &str) -> Result<IfStats> {
        let v: serde_json::Value = serde_json::from_str(text).context("parsing ip -j output")?;
        let s = v
            .get(0)
            .and_then(|l| l.get("stats64"))
            .context("no stats64 in ip output")?;
        let get = |dir: &str, key: &str| {
            s.get(dir)
                .and_then(|d| d.get(key))
                .and_then(|x| x.as_u64())
                .unwrap_or(0)
        };
        Ok(IfStats {
            rx_packets: get("rx", "packets"),
            rx_bytes: get("rx", "bytes"),
            rx_dropped: get("rx", "dropped"),
            tx_packets: get("tx", "packets"),
            tx_bytes: get("tx", "bytes"),
            tx_dropped: get("tx", "dropped"),
        })
    }

    /// Counter differences `self - earlier` (saturating).
    pub fn since(&self, earlier: &IfStats) -> IfStats {
        IfStats {
            rx_packets: self.rx_packets.saturating_sub(earlier.rx_packets),
            rx_bytes: self.rx_bytes.saturating_sub(earlier.rx_bytes),
            rx_dropped: self.rx_dropped.saturating_sub(earlier.rx_dropped),
            tx_packets: self.tx_packets.saturating_sub(earlier.tx_packets),
            tx_bytes: self.tx_bytes.saturating_sub(earlier.tx_bytes),
            tx_dropped: self.tx_dropped.saturating_sub(earlier.tx_dropped),
        }
    }
}
