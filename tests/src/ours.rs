//! Our own processes in a namespace: `dco-control --config FILE`, which starts its
//! `dco-daemon`, with the same config file a stock OpenVPN would take.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};

use crate::netns::Netns;
use crate::openvpn::OvpnConfig;
use crate::process::NsProcess;

/// Where our binaries are: `$DCO_BIN_DIR`, else the workspace's `target/release` when it
/// holds a newer build than `target/debug`, else `target/debug`.
pub fn bin_dir() -> PathBuf {
    if let Ok(d) = std::env::var("DCO_BIN_DIR") {
        return PathBuf::from(d);
    }
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    // The newest build that has all three binaries.
    let complete = |d: &Path| {
        ["dco-control", "dco-daemon", "ovpnctl"]
            .iter()
            .all(|b| d.join(b).exists())
    };
    let mtime = |d: &Path| {
        std::fs::metadata(d.join("dco-control"))
            .and_then(|m| m.modified())
            .ok()
    };
    let (rel, dbg) = (target.join("release"), target.join("debug"));
    match (complete(&rel), complete(&dbg)) {
        (true, true) if mtime(&rel) >= mtime(&dbg) => rel,
        (true, false) => rel,
        _ => dbg,
    }
}

/// Whether our binaries are built; prints a loud SKIP otherwise.
pub fn require_ours() -> bool {
    // dco-control and dco-daemon are started by the tests; ovpnctl inspects them.
    let d = bin_dir();
    for b in ["dco-control", "dco-daemon", "ovpnctl"] {
        if !d.join(b).exists() {
            eprintln!(
                "SKIP: {} is not built (cargo build -p dco-control -p dco-daemon, or set DCO_BIN_DIR)",
                d.join(b).display()
            );
            return false;
        }
    }
    true
}

/// A running `dco-control` (and its daemon) in a namespace. Stopped with SIGTERM on drop.
#[derive(Debug)]
pub struct Ours {
    pub process: NsProcess,
    pub config: PathBuf,
}

impl Ours {
    /// Writes `cfg` (stock syntax, no `disable-dco`) and starts `dco-control` with it;
    /// waits for "Initialization Sequence Completed".
    pub fn start(
        ns: &Netns,
        cfg: &OvpnConfig,
        workdir: &Path,
        name: &str,
        timeout: Duration,
    ) -> Result<Ours> {
        let cfg = cfg.clone().disable_dco(false);
        let config = cfg.write(workdir, name)?;
        Self::start_config(ns, &config, workdir, name, timeout, &[])
    }

    /// Starts `dco-control --config CONFIG EXTRA...` and waits for initialization.
    pub fn start_config(
        ns: &Netns,
        config: &Path,
        workdir: &Path,
        name: &str,
        timeout: Duration,
        extra: &[&str],
    ) -> Result<Ours> {
        make_world_readable(workdir);
        let bin = bin_dir().join("dco-control");
        let mut args: Vec<String> = vec!["--config".into(), config.display().to_string()];
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut process = NsProcess::spawn(
            ns,
            &bin,
            &args,
            workdir,
            name,
            &[(
                "DCO_LOG",
                std::env::var("DCO_TEST_LOG").as_deref().unwrap_or("info"),
            )],
        )
        .with_context(|| format!("starting {}", bin.display()))?;
        process.wait_for_log("Initialization Sequence Completed", timeout)?;
        Ok(Ours {
            process,
            config: config.into(),
        })
    }

    pub fn log(&self) -> String {
        self.process.log()
    }
}

/// The control process drops root after start: the files it reads again (client-config-dir,
/// CRL) must be readable by `nobody`, and so must the directories above them.
pub fn make_world_readable(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mut p = Some(dir);
    while let Some(d) = p {
        if let Ok(m) = std::fs::metadata(d) {
            let mode = m.permissions().mode();
            if mode & 0o005 != 0o005 {
                let _ = std::fs::set_permissions(d, std::fs::Permissions::from_mode(mode | 0o005));
            }
        }
        p = d.parent();
    }
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let path = e.path();
            if path.is_dir() {
                make_world_readable_tree(&path);
            }
        }
    }
}

fn make_world_readable_tree(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(m) = std::fs::metadata(dir) {
        let _ = std::fs::set_permissions(
            dir,
            std::fs::Permissions::from_mode(m.permissions().mode() | 0o005),
        );
    }
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let path = e.path();
            if path.is_dir() {
                make_world_readable_tree(&path);
            } else if let Ok(m) = std::fs::metadata(&path) {
                let _ = std::fs::set_permissions(
                    &path,
                    std::fs::Permissions::from_mode(m.permissions().mode() | 0o004),
                );
            }
        }
    }
}
