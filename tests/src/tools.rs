//! Finding and installing the command-line tools the tests drive, and the root check.

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use crate::proc::run_timeout;

/// Debian package that provides each command the harness knows about.
const PACKAGES: &[(&str, &str)] = &[
    ("openvpn", "openvpn"),
    ("iperf3", "iperf3"),
    ("ping", "iputils-ping"),
    ("ip", "iproute2"),
    ("ss", "iproute2"),
    ("ethtool", "ethtool"),
    ("openssl", "openssl"),
    ("tcpdump", "tcpdump"),
    ("conntrack", "conntrack"),
    ("wg", "wireguard-tools"),
    ("wireguard-go", "wireguard-go"),
    ("nft", "nftables"),
];

/// Serialises installs inside one process; apt's own lock (waited on) covers other processes.
static INSTALL_LOCK: Mutex<()> = Mutex::new(());

/// Full path of `cmd` if it is on `PATH` or in the usual sbin directories.
pub fn find_tool(cmd: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let extra = [
        "/usr/local/sbin",
        "/usr/local/bin",
        "/usr/sbin",
        "/usr/bin",
        "/sbin",
        "/bin",
    ];
    std::env::split_paths(&path)
        .chain(extra.iter().map(PathBuf::from))
        .map(|dir| dir.join(cmd))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Makes sure every command in `cmds` exists, installing the Debian packages that provide
/// the missing ones with `apt-get` (a no-op when all are present). CI starts from a clean
/// machine, so tests call this instead of assuming the tools are there.
pub fn ensure_tools(cmds: &[&str]) -> Result<()> {
    let missing: Vec<&str> = cmds
        .iter()
        .copied()
        .filter(|c| find_tool(c).is_none())
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let _guard = INSTALL_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let missing: Vec<&str> = missing
        .into_iter()
        .filter(|c| find_tool(c).is_none())
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let mut pkgs = Vec::new();
    for cmd in &missing {
        let Some((_, pkg)) = PACKAGES.iter().find(|(c, _)| c == cmd) else {
            bail!("tool `{cmd}` is missing and the harness does not know which package has it");
        };
        if !pkgs.contains(pkg) {
            pkgs.push(*pkg);
        }
    }
    if !is_root() {
        bail!("tools {missing:?} are missing; install {pkgs:?} (needs root)");
    }
    eprintln!("e2e: installing {pkgs:?} for {missing:?}");
    if apt_install(&pkgs).is_err() {
        // A fresh machine may have no package lists yet.
        apt(&["update"], Duration::from_secs(300))?;
        apt_install(&pkgs)?;
    }
    let still: Vec<&str> = missing
        .into_iter()
        .filter(|c| find_tool(c).is_none())
        .collect();
    if !still.is_empty() {
        bail!("installed {pkgs:?} but {still:?} are still missing");
    }
    Ok(())
}

fn apt_install(pkgs: &[&str]) -> Result<()> {
    let mut args = vec!["install", "-y", "--no-install-recommends"];
    args.extend_from_slice(pkgs);
    apt(&args, Duration::from_secs(600))
}

fn apt(args: &[&str], timeout: Duration) -> Result<()> {
    let mut cmd = Command::new("apt-get");
    cmd.args(["-o", "DPkg::Lock::Timeout=300", "-q"])
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive");
    let out = run_timeout(&mut cmd, timeout).context("running apt-get")?;
    if !out.status.success() {
        bail!(
            "apt-get {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

pub(crate) fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// True when the process can create namespaces and TUN devices. Otherwise prints a loud
/// SKIP line to stderr and returns false; the caller returns early (the test is skipped,
/// not passed).
pub fn require_root() -> bool {
    let why = if !is_root() {
        Some("not running as root")
    } else if !Path::new("/dev/net/tun").exists() {
        Some("/dev/net/tun is missing")
    } else if find_tool("ip").is_none() {
        Some("the `ip` command (iproute2) is missing")
    } else {
        None
    };
    match why {
        Some(why) => {
            eprintln!("\n*** SKIP: {why}; this test needs root, network namespaces and TUN ***\n");
            false
        }
        None => true,
    }
}

/// [`require_root`] plus [`ensure_tools`]: prints a loud SKIP and returns false when either
/// fails.
pub fn require_tools(cmds: &[&str]) -> bool {
    if !require_root() {
        return false;
    }
    match ensure_tools(cmds) {
        Ok(()) => true,
        Err(e) => {
            eprintln!("\n*** SKIP: required tools unavailable: {e:#} ***\n");
            false
        }
    }
}
