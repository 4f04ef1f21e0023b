//! Samples of every run, their medians, and the outputs: a markdown table (printed and
//! saved), a CSV and a JSON of every sample, and the SVG chart.

use anyhow::Result;
use serde::Serialize;
use std::fmt::Write as _;
use std::path::Path;

use super::machine::Machine;

/// One measurement (one iperf3 run or one ping series) of one system in one repetition.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Sample {
    /// System id (`stock/AES-256-GCM`).
    pub system: String,
    /// System label.
    pub label: String,
    /// Data cipher, if any.
    pub cipher: String,
    /// Repetition number (0-based).
    pub rep: u32,
    /// Test name (`tcp1-up`, `ping-idle`, ...).
    pub test: String,
    /// False when the run failed; `error` says why.
    pub ok: bool,
    /// Failure message.
    pub error: String,
    /// Planned duration in seconds.
    pub duration_s: f64,
    /// Received (goodput) Mbit/s.
    pub mbps: Option<f64>,
    /// Sent Mbit/s.
    pub sent_mbps: Option<f64>,
    /// TCP retransmissions.
    pub retransmits: Option<u64>,
    /// UDP loss in percent.
    pub loss_pct: Option<f64>,
    /// UDP jitter.
    pub jitter_ms: Option<f64>,
    /// CPU seconds used by the system's processes during the run.
    pub cpu_s: Option<f64>,
    /// CPU cores busy on average (cpu_s / duration).
    pub cpu_cores: Option<f64>,
    /// Mbit/s per busy core.
    pub mbps_per_core: Option<f64>,
    /// Average RTT in ms (ping tests).
    pub rtt_avg_ms: Option<f64>,
    /// Maximum RTT in ms (ping tests).
    pub rtt_max_ms: Option<f64>,
    /// Ping loss in percent (ping tests).
    pub ping_loss_pct: Option<f64>,
}

/// A system that did not run, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Unavailable {
    /// System id.
    pub system: String,
    /// System label.
    pub label: String,
    /// Why it did not run.
    pub reason: String,
}

/// Everything a run produced.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The machine.
    pub machine: Machine,
    /// The exact command line.
    pub command: String,
    /// Run settings, human readable.
    pub settings: String,
    /// Every sample, in run order.
    pub samples: Vec<Sample>,
    /// Systems that were skipped.
    pub unavailable: Vec<Unavailable>,
}

/// Median, min, max and count of a set of values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stats {
    /// Median.
    pub median: f64,
    /// Minimum.
    pub min: f64,
    /// Maximum.
    pub max: f64,
    /// Number of values.
    pub n: usize,
}

impl Stats {
    /// None for an empty set.
    pub fn of(values: impl IntoIterator<Item = f64>) -> Option<Stats> {
        let mut v: Vec<f64> = values.into_iter().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(|a, b| a.total_cmp(b));
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Some(Stats {
            median,
            min: v[0],
            max: v[n - 1],
            n,
        })
    }
}

/// Systems in first-seen order with their labels.
pub fn system_order(samples: &[Sample]) -> Vec<(String, String, String)> {
    let mut out: Vec<(String, String, String)> = Vec::new();
    for s in samples {
        if !out.iter().any(|(id, _, _)| id == &s.system) {
            out.push((s.system.clone(), s.label.clone(), s.cipher.clone()));
        }
    }
    out
}

/// Throughput tests in first-seen order.
pub fn throughput_tests(samples: &[Sample]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for s in samples {
        // "start" marks a system that did not come up: a failure, not a test column.
        if !s.test.starts_with("ping") && s.test != "start" && !out.contains(&s.test) {
            out.push(s.test.clone());
        }
    }
    out
}

impl Report {
    fn values(
        &self,
        system: &str,
        test: &str,
        f: impl Fn(&Sample) -> Option<f64>,
    ) -> Option<Stats> {
        Stats::of(
            self.samples
                .iter()
                .filter(|s| s.ok && s.system == system && s.test == test)
                .filter_map(f),
        )
    }

    /// Median received Mbit/s of (system, test).
    pub fn mbps(&self, system: &str, test: &str) -> Option<Stats> {
        self.values(system, test, |s| s.mbps)
    }

    /// The stock↔stock system a system is compared with: same cipher, else AES-256-GCM,
    /// else any stock system.
    pub fn baseline_for(&self, cipher: &str) -> Option<String> {
        let stock: Vec<(String, String, String)> = system_order(&self.samples)
            .into_iter()
            .filter(|(id, _, _)| id.starts_with("stock/"))
            .collect();
        stock
            .iter()
            .find(|(_, _, c)| c == cipher)
            .or_else(|| stock.iter().find(|(_, _, c)| c == "AES-256-GCM"))
            .or_else(|| stock.first())
            .map(|(id, _, _)| id.clone())
    }

    /// The markdown summary: machine, settings, throughput, efficiency and latency tables.
    pub fn markdown(&self) -> String {
        let mut m = String::new();
        let _ = writeln!(m, "```\n{}```\n", self.machine.summary());
        let _ = writeln!(
            m,
            "Command: `{}`  \nSettings: {}\n",
            self.command, self.settings
        );
        let systems = system_order(&self.samples);
        let tests = throughput_tests(&self.samples);

        let _ = writeln!(
            m,
            "Throughput in Mbit/s received: median (min–max) over the repetitions, and the ratio to stock OpenVPN with the same cipher.\n"
        );
        let _ = write!(m, "| system |");
        for t in &tests {
            let _ = write!(m, " {t} |");
        }
        let _ = write!(m, "\n|---|");
        for _ in &tests {
            let _ = write!(m, "---:|");
        }
        m.push('\n');
        for (id, label, cipher) in &systems {
            let base = self.baseline_for(cipher);
            let _ = write!(m, "| {label} |");
            for t in &tests {
                let cell = match self.mbps(id, t) {
                    Some(st) => {
                        let ratio = base
                            .as_ref()
                            .and_then(|b| self.mbps(b, t))
                            .filter(|b| b.median > 0.0)
                            .map(|b| format!(" ×{:.2}", st.median / b.median))
                            .unwrap_or_default();
                        format!(
                            "{} ({}–{}){ratio}",
                            fmt_mbps(st.median),
                            fmt_mbps(st.min),
                            fmt_mbps(st.max)
                        )
                    }
                    None => self.failure_note(id, t),
                };
                let _ = write!(m, " {cell} |");
            }
            m.push('\n');
        }

        let _ = writeln!(
            m,
            "\nCPU cost (both VPN processes; the underlay's cost is in the kernel and not counted), medians:\n"
        );
        let _ = write!(m, "| system |");
        for t in &tests {
            let _ = write!(m, " {t} cores | {t} Mbit/s per core |");
        }
        let _ = write!(m, "\n|---|");
        for _ in &tests {
            let _ = write!(m, "---:|---:|");
        }
        m.push('\n');
        for (id, label, _) in &systems {
            if id == "underlay" {
                continue;
            }
            let _ = write!(m, "| {label} |");
            for t in &tests {
                let cores = self
                    .values(id, t, |s| s.cpu_cores)
                    .map(|s| format!("{:.2}", s.median))
                    .unwrap_or_else(|| "–".into());
                let per = self
                    .values(id, t, |s| s.mbps_per_core)
                    .map(|s| fmt_mbps(s.median))
                    .unwrap_or_else(|| "–".into());
                let _ = write!(m, " {cores} | {per} |");
            }
            m.push('\n');
        }

        let _ = writeln!(m, "\nLatency and loss, medians:\n");
        let _ = writeln!(
            m,
            "| system | RTT idle ms | RTT under load ms (during tcp1-up) | UDP loss % | TCP retransmits (tcp1-up) |\n|---|---:|---:|---:|---:|"
        );
        for (id, label, _) in &systems {
            let idle = self
                .values(id, "ping-idle", |s| s.rtt_avg_ms)
                .map(|s| format!("{:.3}", s.median))
                .unwrap_or_else(|| "–".into());
            let load = self
                .values(id, "ping-load", |s| s.rtt_avg_ms)
                .map(|s| format!("{:.3}", s.median))
                .unwrap_or_else(|| "–".into());
            let loss = tests
                .iter()
                .filter(|t| t.starts_with("udp"))
                .filter_map(|t| {
                    self.values(id, t, |s| s.loss_pct)
                        .map(|s| format!("{t}: {:.2}", s.median))
                })
                .collect::<Vec<_>>()
                .join(", ");
            let retr = self
                .values(id, "tcp1-up", |s| s.retransmits.map(|r| r as f64))
                .map(|s| format!("{:.0}", s.median))
                .unwrap_or_else(|| "–".into());
            let _ = writeln!(
                m,
                "| {label} | {idle} | {load} | {} | {retr} |",
                if loss.is_empty() { "–".into() } else { loss }
            );
        }

        if !self.unavailable.is_empty() {
            let _ = writeln!(m, "\nNot measured:\n");
            for u in &self.unavailable {
                let _ = writeln!(m, "- {}: {}", u.label, u.reason);
            }
        }
        let failures: Vec<&Sample> = self.samples.iter().filter(|s| !s.ok).collect();
        if !failures.is_empty() {
            let _ = writeln!(m, "\nFailed runs ({}):\n", failures.len());
            for s in failures.iter().take(20) {
                let _ = writeln!(
                    m,
                    "- {} {} rep {}: {}",
                    s.label,
                    s.test,
                    s.rep,
                    s.error.lines().next().unwrap_or("")
                );
            }
        }
        m
    }

    fn failure_note(&self, system: &str, test: &str) -> String {
        if self
            .samples
            .iter()
            .any(|s| s.system == system && s.test == test && !s.ok)
        {
            "failed".into()
        } else {
            "–".into()
        }
    }

    /// Every sample as CSV (header + one line per sample).
    pub fn csv(&self) -> String {
        let mut c = String::from(
            "system,label,cipher,rep,test,ok,duration_s,mbps,sent_mbps,retransmits,loss_pct,jitter_ms,cpu_s,cpu_cores,mbps_per_core,rtt_avg_ms,rtt_max_ms,ping_loss_pct,error\n",
        );
        let o = |v: Option<f64>| v.map(|x| format!("{x:.4}")).unwrap_or_default();
        for s in &self.samples {
            let _ = writeln!(
                c,
                "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
                csv_field(&s.system),
                csv_field(&s.label),
                csv_field(&s.cipher),
                s.rep,
                csv_field(&s.test),
                s.ok,
                s.duration_s,
                o(s.mbps),
                o(s.sent_mbps),
                s.retransmits.map(|r| r.to_string()).unwrap_or_default(),
                o(s.loss_pct),
                o(s.jitter_ms),
                o(s.cpu_s),
                o(s.cpu_cores),
                o(s.mbps_per_core),
                o(s.rtt_avg_ms),
                o(s.rtt_max_ms),
                o(s.ping_loss_pct),
                csv_field(&s.error),
            );
        }
        c
    }

    /// Writes `results.csv`, `results.json`, `summary.md` and `chart.svg` into `dir`.
    pub fn write_all(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("results.csv"), self.csv())?;
        std::fs::write(
            dir.join("results.json"),
            serde_json::to_string_pretty(self)?,
        )?;
        std::fs::write(dir.join("summary.md"), self.markdown())?;
        let svg = dir.join("chart.svg");
        std::fs::write(&svg, super::svg::bar_chart(self))?;
        // A PNG copy when librsvg's converter is installed (optional).
        if let Some(conv) = e2e::find_tool("rsvg-convert") {
            let mut cmd = std::process::Command::new(conv);
            cmd.arg("-o").arg(dir.join("chart.png")).arg(&svg);
            let _ = e2e::run_timeout(&mut cmd, std::time::Duration::from_secs(30));
        }
        Ok(())
    }
}

/// Mbit/s with sensible precision.
pub fn fmt_mbps(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\"").replace('\n', " "))
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(system: &str, cipher: &str, test: &str, mbps: f64) -> Sample {
        Sample {
            system: system.into(),
            label: system.into(),
            cipher: cipher.into(),
            test: test.into(),
            ok: true,
            mbps: Some(mbps),
            ..Default::default()
        }
    }

    #[test]
    fn stats_median_min_max() {
        let s = Stats::of([3.0, 1.0, 2.0]).unwrap();
        assert_eq!((s.median, s.min, s.max, s.n), (2.0, 1.0, 3.0, 3));
        assert_eq!(Stats::of([4.0, 1.0]).unwrap().median, 2.5);
        assert!(Stats::of([]).is_none());
    }

    #[test]
    fn a_failed_start_is_not_a_test_column() {
        let samples = vec![
            Sample {
                system: "ours/AES-256-GCM".into(),
                test: "start".into(),
                error: "exited".into(),
                ..Default::default()
            },
            Sample {
                system: "ours/AES-256-GCM".into(),
                test: "tcp1-up".into(),
                ok: true,
                mbps: Some(1.0),
                ..Default::default()
            },
            Sample {
                system: "ours/AES-256-GCM".into(),
                test: "ping-idle".into(),
                ok: true,
                ..Default::default()
            },
        ];
        assert_eq!(throughput_tests(&samples), vec!["tcp1-up".to_string()]);
    }

    #[test]
    fn table_has_ratios_to_the_same_cipher() {
        let report = Report {
            machine: Machine::describe(),
            command: "dco-bench".into(),
            settings: String::new(),
            samples: vec![
                sample("stock/AES-256-GCM", "AES-256-GCM", "tcp1-up", 400.0),
                sample("stock/AES-256-GCM", "AES-256-GCM", "tcp1-up", 500.0),
                sample(
                    "stock/CHACHA20-POLY1305",
                    "CHACHA20-POLY1305",
                    "tcp1-up",
                    300.0,
                ),
                sample(
                    "ours/CHACHA20-POLY1305",
                    "CHACHA20-POLY1305",
                    "tcp1-up",
                    900.0,
                ),
                sample("underlay", "", "tcp1-up", 9000.0),
                Sample {
                    system: "wg".into(),
                    label: "wg".into(),
                    test: "tcp1-up".into(),
                    error: "boom, x".into(),
                    ..Default::default()
                },
            ],
            unavailable: vec![],
        };
        let md = report.markdown();
        assert!(
            md.contains("| stock/AES-256-GCM | 450 (400–500) ×1.00 |"),
            "{md}"
        );
        assert!(
            md.contains("| ours/CHACHA20-POLY1305 | 900 (900–900) ×3.00 |"),
            "{md}"
        );
        assert!(
            md.contains("| underlay | 9000 (9000–9000) ×20.00 |"),
            "{md}"
        );
        assert!(md.contains("| wg | failed |"), "{md}");
        let csv = report.csv();
        assert_eq!(csv.lines().count(), 7);
        assert!(csv.lines().last().unwrap().ends_with("\"boom, x\""));
    }
}
