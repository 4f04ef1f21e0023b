//! The third-party tools the comparison needs: Debian packages through the harness's
//! `ensure_tools`, and boringtun-cli built with `cargo install` into a cache directory in the
//! background (it takes minutes on a small machine), so a run never waits for it.

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;

/// boringtun-cli version pinned for reproducible numbers.
pub const BORINGTUN_VERSION: &str = "0.7.1";

/// Where boringtun-cli comes from, and its state.
#[derive(Debug)]
pub struct Boringtun {
    cache: PathBuf,
    build: Mutex<BuildState>,
}

#[derive(Debug)]
enum BuildState {
    Ready(PathBuf),
    Building(Child),
    Failed(String),
    NotBuilt,
}

impl Boringtun {
    /// Looks for `boringtun-cli` in `cache/bin`, then on PATH. When neither has it and
    /// `build` is true, starts `cargo install boringtun-cli --locked --root cache` in the
    /// background (niced, one job) with its log in `cache/boringtun-build.log`.
    pub fn locate_or_build(cache: &Path, build: bool) -> Boringtun {
        let cached = cache.join("bin/boringtun-cli");
        let state = if cached.exists() {
            BuildState::Ready(cached)
        } else if let Some(p) = e2e::find_tool("boringtun-cli") {
            BuildState::Ready(p)
        } else if build {
            match spawn_build(cache) {
                Ok(child) => {
                    eprintln!(
                        "boringtun-cli not found: building it in the background ({}); boringtun runs are skipped until it is ready",
                        cache.join("boringtun-build.log").display()
                    );
                    BuildState::Building(child)
                }
                Err(e) => BuildState::Failed(format!("{e:#}")),
            }
        } else {
            BuildState::NotBuilt
        };
        Boringtun {
            cache: cache.to_path_buf(),
            build: Mutex::new(state),
        }
    }

    /// The binary when ready; otherwise why not (still building, failed, not built).
    pub fn binary(&self) -> Result<PathBuf, String> {
        let mut state = self.build.lock().unwrap_or_else(|e| e.into_inner());
        if let BuildState::Building(child) = &mut *state {
            match child.try_wait() {
                Ok(None) => {
                    return Err(
                        "boringtun-cli is still being built (cargo install, background)".into(),
                    );
                }
                Ok(Some(status)) => {
                    let bin = self.cache.join("bin/boringtun-cli");
                    *state = if status.success() && bin.exists() {
                        BuildState::Ready(bin)
                    } else {
                        BuildState::Failed(format!(
                            "cargo install boringtun-cli failed ({status}); see {}",
                            self.cache.join("boringtun-build.log").display()
                        ))
                    };
                }
                Err(e) => *state = BuildState::Failed(e.to_string()),
            }
        }
        match &*state {
            BuildState::Ready(p) => Ok(p.clone()),
            BuildState::Failed(why) => Err(why.clone()),
            BuildState::NotBuilt => Err(
                "boringtun-cli not installed (building disabled: run without --no-build)".into(),
            ),
            BuildState::Building(_) => Err("boringtun-cli is still being built".into()),
        }
    }
}

impl Drop for Boringtun {
    fn drop(&mut self) {
        let state = self.build.get_mut().unwrap_or_else(|e| e.into_inner());
        if let BuildState::Building(child) = state {
            // Leave a long build running would outlive the tool; stop it (cargo resumes
            // from its cache next time).
            let _ = e2e::stop_child(child, std::time::Duration::from_secs(5));
        }
    }
}

fn spawn_build(cache: &Path) -> Result<Child> {
    std::fs::create_dir_all(cache)?;
    let log = std::fs::File::create(cache.join("boringtun-build.log"))?;
    let cargo = std::env::var_os("CARGO")
        .map(PathBuf::from)
        .unwrap_or_else(|| "cargo".into());
    Command::new("nice")
        .args(["-n", "15"])
        .arg(cargo)
        .args([
            "install",
            "boringtun-cli",
            "--locked",
            "-j",
            "1",
            "--version",
            BORINGTUN_VERSION,
            "--root",
        ])
        .arg(cache)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("spawning cargo install boringtun-cli")
}

/// Installs the Debian tools the comparison uses (a no-op when present).
pub fn ensure_debian_tools(wireguard: bool) -> Result<()> {
    e2e::ensure_tools(&["openvpn", "iperf3", "ping", "ethtool", "openssl", "ss"])?;
    if wireguard {
        e2e::ensure_tools(&["wg", "wireguard-go"])?;
    }
    Ok(())
}
