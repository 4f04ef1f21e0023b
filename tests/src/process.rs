//! Any long-running program inside a namespace (our `dco-daemon`, `dco-control`, a
//! WireGuard implementation ...), with its output in a log file, bounded waits on that log,
//! and SIGTERM-then-SIGKILL on drop.

use anyhow::{Context, Result, bail};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::netns::Netns;
use crate::proc::{cpu_seconds, stop_child};

/// A process started with `ip netns exec`, stdout and stderr in `{workdir}/{name}.log`.
#[derive(Debug)]
pub struct NsProcess {
    child: Child,
    name: String,
    log: PathBuf,
}

impl NsProcess {
    /// Spawns `program args` in `ns` with extra environment variables (cwd = `workdir`).
    pub fn spawn<S: AsRef<OsStr>>(
        ns: &Netns,
        program: impl AsRef<OsStr>,
        args: &[S],
        workdir: &Path,
        name: &str,
        env: &[(&str, &str)],
    ) -> Result<NsProcess> {
        let log = workdir.join(format!("{name}.log"));
        let f =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let program = program.as_ref();
        let mut cmd = ns.command(program);
        cmd.args(args)
            .current_dir(workdir)
            .stdin(Stdio::null())
            .stdout(f.try_clone()?)
            .stderr(f);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("spawning {}", program.to_string_lossy()))?;
        Ok(NsProcess {
            child,
            name: name.into(),
            log,
        })
    }

    /// Waits (bounded) until the log contains `needle`; fails with the log's tail when the
    /// process exits first or time runs out.
    pub fn wait_for_log(&mut self, needle: &str, timeout: Duration) -> Result<()> {
        self.wait_for_log_count(needle, 1, timeout)
    }

    /// Waits (bounded) until `needle` appears at least `count` times in the log.
    pub fn wait_for_log_count(
        &mut self,
        needle: &str,
        count: usize,
        timeout: Duration,
    ) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.log().matches(needle).count() >= count {
                return Ok(());
            }
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "`{}` exited ({status}) before logging {needle:?} {count}x; log tail:\n{}",
                    self.name,
                    self.log_tail(40)
                );
            }
            if Instant::now() >= deadline {
                bail!(
                    "`{}` did not log {needle:?} {count}x within {timeout:?}; log tail:\n{}",
                    self.name,
                    self.log_tail(40)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Fails (with the log's tail) if the process has already exited.
    pub fn ensure_running(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!(
                "`{}` exited ({status}); log tail:\n{}",
                self.name,
                self.log_tail(40)
            );
        }
        Ok(())
    }

    /// The whole log so far.
    pub fn log(&self) -> String {
        std::fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// The last `n` lines of the log.
    pub fn log_tail(&self, n: usize) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Log file path.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Process id (the program's: `ip netns exec` execs it).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// CPU seconds used so far.
    pub fn cpu_seconds(&self) -> Result<f64> {
        cpu_seconds(self.pid())
    }

    /// Sends a signal.
    pub fn signal(&self, sig: libc::c_int) {
        crate::proc::signal(self.pid() as i32, sig);
    }

    /// SIGTERM, up to 5 s, then SIGKILL.
    pub fn stop(&mut self) -> Result<ExitStatus> {
        stop_child(&mut self.child, Duration::from_secs(5))
    }
}

impl Drop for NsProcess {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}
