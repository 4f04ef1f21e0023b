//! A one-line progress bar with an ETA on stderr (a plain line per step when stderr is not a
//! terminal).

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// Progress over a known amount of planned work, counted in seconds of planned time.
#[derive(Debug)]
pub struct Progress {
    total: f64,
    done: f64,
    start: Instant,
    tty: bool,
}

impl Progress {
    /// `total` = planned seconds of work.
    pub fn new(total: Duration) -> Progress {
        Progress {
            total: total.as_secs_f64().max(1.0),
            done: 0.0,
            start: Instant::now(),
            tty: std::io::stderr().is_terminal(),
        }
    }

    /// Shows `what` as the step being run.
    pub fn step(&mut self, what: &str) {
        let frac = (self.done / self.total).clamp(0.0, 1.0);
        let elapsed = self.start.elapsed().as_secs_f64();
        let eta = if self.done > 0.0 {
            elapsed / self.done * (self.total - self.done)
        } else {
            self.total
        };
        let width = 30;
        let filled = (frac * width as f64).round() as usize;
        let bar: String = "#".repeat(filled) + &".".repeat(width - filled);
        let line = format!(
            "[{bar}] {:3.0}% {} ETA {}  {what}",
            frac * 100.0,
            fmt_secs(elapsed),
            fmt_secs(eta.max(0.0))
        );
        let mut err = std::io::stderr();
        if self.tty {
            let _ = write!(err, "\r\x1b[2K{line}");
        } else {
            let _ = writeln!(err, "{line}");
        }
        let _ = err.flush();
    }

    /// Marks `planned` seconds of work as done.
    pub fn advance(&mut self, planned: Duration) {
        self.done += planned.as_secs_f64();
    }

    /// Prints a message on its own line without breaking the bar.
    pub fn note(&self, msg: &str) {
        let mut err = std::io::stderr();
        if self.tty {
            let _ = write!(err, "\r\x1b[2K");
        }
        let _ = writeln!(err, "{msg}");
    }

    /// Ends the bar.
    pub fn finish(&self) {
        if self.tty {
            let _ = writeln!(std::io::stderr());
        }
    }
}

fn fmt_secs(s: f64) -> String {
    let s = s as u64;
    format!("{}:{:02}", s / 60, s % 60)
}
