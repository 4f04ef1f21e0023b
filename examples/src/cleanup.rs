//! Cleanup that also happens on Ctrl-C, SIGTERM or a blown time limit.
//!
//! The normal path tears everything down through the harness guards (`Netns`, `TempDir`,
//! process handles) when the run returns. A signal cannot unwind the main thread, so a
//! watcher thread does what it can from the side:
//!
//! 1. it kills every process inside the namespaces registered here, so whatever the main
//!    thread waits on (a handshake, ping, iperf3) fails at once and the main thread unwinds
//!    through its guards as on any error;
//! 2. if the main thread has not finished after a grace period, it deletes the namespaces
//!    and directories itself and exits (130 after a signal, 124 after the time limit).
//!
//! The signal handler itself only sets a flag ([`crate::bench::signal`]); further signals
//! change nothing, so a doubled Ctrl-C cannot kill the process in the middle of its cleanup.
//! (SIGKILL still can; the next run's stale-namespace sweep removes what is left then.)

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use crate::bench::signal;

static NETNS: Mutex<Vec<String>> = Mutex::new(Vec::new());
static DIRS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
/// Why the run was cut short: 0 not, 1 signal, 2 time limit.
static CUT: AtomicU8 = AtomicU8::new(0);

/// Why a run was stopped from the outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// SIGINT, SIGTERM or SIGHUP.
    Signal,
    /// The run's time limit passed.
    TimeLimit,
}

impl Cut {
    /// The conventional exit code: 130 for a signal, 124 (as `timeout`) for the limit.
    pub fn exit_code(self) -> i32 {
        match self {
            Cut::Signal => 130,
            Cut::TimeLimit => 124,
        }
    }
}

/// Whether (and why) the run was cut short.
pub fn cut() -> Option<Cut> {
    match CUT.load(Ordering::SeqCst) {
        1 => Some(Cut::Signal),
        2 => Some(Cut::TimeLimit),
        _ => None,
    }
}

/// Registers a namespace (by `ip netns` name) for emergency cleanup.
pub fn register_netns(name: &str) {
    lock(&NETNS).push(name.to_string());
}

/// Registers a directory for emergency removal.
pub fn register_dir(path: PathBuf) {
    lock(&DIRS).push(path);
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Installs the signal handlers and starts the watcher. `limit` bounds the whole run;
/// `grace` is how long the main thread gets to unwind by itself once the run is cut.
pub fn install(limit: Duration, grace: Duration) {
    signal::install();
    let deadline = Instant::now() + limit;
    let spawned = std::thread::Builder::new()
        .name("cleanup-watch".into())
        .spawn(move || {
            let why = loop {
                if signal::interrupted() {
                    break Cut::Signal;
                }
                if Instant::now() >= deadline {
                    break Cut::TimeLimit;
                }
                std::thread::sleep(Duration::from_millis(50));
            };
            CUT.store(
                match why {
                    Cut::Signal => 1,
                    Cut::TimeLimit => 2,
                },
                Ordering::SeqCst,
            );
            match why {
                Cut::Signal => eprintln!("\ninterrupted: stopping every process and cleaning up"),
                Cut::TimeLimit => {
                    eprintln!("\ntime limit of {limit:?} reached: stopping and cleaning up")
                }
            }
            kill_namespace_processes();
            std::thread::sleep(grace);
            // The main thread did not finish in time: clean up from here and leave.
            eprintln!("cleanup: the run did not stop by itself; removing what it created");
            kill_namespace_processes();
            for ns in lock(&NETNS).iter() {
                let _ = run(Command::new("ip").args(["netns", "del", ns]));
                remove_socket_dir(ns);
            }
            for d in lock(&DIRS).iter() {
                let _ = std::fs::remove_dir_all(d);
            }
            std::process::exit(why.exit_code());
        });
    if let Err(e) = spawned {
        eprintln!("warning: no cleanup watcher ({e}); Ctrl-C may leave namespaces behind");
    }
}

/// SIGTERM, then SIGKILL after 1 s, to every process in the registered namespaces.
fn kill_namespace_processes() {
    let names = lock(&NETNS).clone();
    let me = std::process::id();
    let pids = |ns: &str| -> Vec<i32> {
        run(Command::new("ip").args(["netns", "pids", ns]))
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .filter(|&p: &i32| p as u32 != me)
            .collect()
    };
    for sig in [libc::SIGTERM, libc::SIGKILL] {
        for ns in &names {
            for p in pids(ns) {
                // SAFETY: kill(2) with a pid read from `ip netns pids` for a namespace this
                // process created; at worst the process is already gone (ESRCH).
                unsafe {
                    libc::kill(p, sig);
                }
            }
        }
        if sig == libc::SIGTERM {
            std::thread::sleep(Duration::from_secs(1));
        }
    }
}

/// Removes `/run/dco/<ns>` when it is empty. Our daemon puts its IPC socket there inside a
/// named namespace and removes the socket, not the directory, when it stops.
pub fn remove_socket_dir(ns: &str) {
    if !ns.is_empty() && !ns.contains('/') && !ns.starts_with('.') {
        let _ = std::fs::remove_dir(Path::new("/run/dco").join(ns));
    }
}

/// Runs a short command with a 5 s limit and returns its stdout.
fn run(cmd: &mut Command) -> Option<String> {
    let out = e2e::run_timeout(cmd, Duration::from_secs(5)).ok()?;
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}
