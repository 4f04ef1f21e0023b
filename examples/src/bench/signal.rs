//! SIGINT/SIGTERM/SIGHUP set a flag that the run loop polls, so an interrupted run still
//! unwinds through its guards and removes every namespace and process it created.
//!
//! Repeated signals only set the flag again: a Ctrl-C typically arrives twice (once from the
//! terminal, once forwarded by a `timeout` wrapper to its process group), and the second
//! must not kill the process half-way through its cleanup. What bounds a run that does not
//! stop is its caller (`timeout --kill-after`, or the demo's own watcher).

use std::sync::atomic::{AtomicBool, Ordering};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_sig: libc::c_int) {
    // Only an atomic store: async-signal-safe.
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Installs the handlers (once per process).
pub fn install() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: a zeroed sigaction is a valid "no flags, empty mask" value; the handler
        // only performs an atomic store, which is async-signal-safe. SA_RESTART keeps
        // blocking calls of other threads from failing with EINTR.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as *const () as usize;
            sa.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

/// True once a termination signal arrived.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// An error to return when interrupted.
pub fn check() -> anyhow::Result<()> {
    if interrupted() {
        anyhow::bail!("interrupted by a signal; cleaning up");
    }
    Ok(())
}
