//! The comparison tool's smoke mode runs in the test suite so it cannot rot: 1 repetition,
//! 2 s tests, and the packet-rate benchmark for 1 s. Checks that numbers come out for the
//! systems that can run here, that the unavailable ones are reported as such, that every
//! output file is written, and that nothing is left behind.

use std::process::Command;
use std::time::Duration;

/// Namespaces left with this prefix (a listing failure counts as none: `ip` is checked
/// elsewhere).
fn namespaces_with(prefix: &str) -> Vec<String> {
    e2e::Netns::list(prefix).unwrap_or_default()
}

#[test]
fn bench_smoke_mode_measures_and_cleans_up() -> anyhow::Result<()> {
    if !e2e::require_tools(&["openvpn", "iperf3", "ping", "ethtool", "wg", "wireguard-go"]) {
        return Ok(());
    }
    let out = e2e::TempDir::new("hbsmoke")?;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dco-bench"));
    cmd.args(["--smoke", "--prefix", "hbsm", "--out"])
        .arg(out.path());
    let res = e2e::run_timeout(&mut cmd, Duration::from_secs(240))?;
    let stdout = String::from_utf8_lossy(&res.stdout);
    let stderr = String::from_utf8_lossy(&res.stderr);
    assert!(
        res.status.success(),
        "dco-bench --smoke failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );

    let csv = std::fs::read_to_string(out.path().join("results.csv"))?;
    assert!(csv.starts_with("system,label,cipher,rep,test,ok,"), "{csv}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("results.json"))?)?;
    assert!(json["machine"]["cores"].as_u64().is_some_and(|c| c >= 1));
    let samples = json["samples"].as_array().cloned().unwrap_or_default();
    assert_eq!(
        csv.lines().count(),
        samples.len() + 1,
        "one CSV line per sample"
    );
    let find = |system: &str, test: &str| {
        samples
            .iter()
            .find(|s| s["system"] == system && s["test"] == test && s["ok"] == true)
            .cloned()
    };
    for sys in ["underlay", "stock/AES-256-GCM", "wireguard-go"] {
        for test in ["tcp1-up", "tcp4-down", "udp-up"] {
            let s = find(sys, test)
                .unwrap_or_else(|| panic!("no successful {sys} {test} sample in\n{csv}"));
            assert!(s["mbps"].as_f64().is_some_and(|v| v > 0.0), "{s}");
        }
        let ping = find(sys, "ping-idle").unwrap_or_else(|| panic!("no idle ping for {sys}"));
        assert!(
            ping["rtt_avg_ms"].as_f64().is_some_and(|v| v > 0.0),
            "{ping}"
        );
    }
    // Stock OpenVPN's processes were charged CPU time; the underlay has none to charge.
    let stock = find("stock/AES-256-GCM", "tcp1-up").unwrap_or_default();
    assert!(
        stock["cpu_cores"].as_f64().is_some_and(|v| v > 0.0),
        "{stock}"
    );
    assert!(find("underlay", "tcp1-up").unwrap_or_default()["cpu_s"].is_null());
    let summary = std::fs::read_to_string(out.path().join("summary.md"))?;
    assert!(
        summary.contains("| stock 2.6 ↔ stock 2.6 AES-256-GCM |") && summary.contains("×1.00"),
        "{summary}"
    );
    let ours = dco_examples::bench::sut::ours_available(&e2e_root().join("target/release"));
    if ours.is_err() {
        assert!(
            summary.contains("not available yet"),
            "ours must be reported as unavailable:\n{summary}"
        );
    } else {
        // Our server with the stock client, and ours on both ends, moved data.
        for sys in ["stock-ours/AES-256-GCM", "ours/AES-256-GCM"] {
            for test in ["tcp1-up", "tcp4-down", "udp-up"] {
                let s = find(sys, test)
                    .unwrap_or_else(|| panic!("no successful {sys} {test} sample in\n{csv}"));
                assert!(s["mbps"].as_f64().is_some_and(|v| v > 0.0), "{s}");
                assert!(s["cpu_cores"].as_f64().is_some_and(|v| v > 0.0), "{s}");
            }
        }
        // Ours with the server's firewall on (the tool checked that it tracked the ping
        // before measuring); it needs ovpnctl for that check and says so without it.
        if e2e_root().join("target/release/ovpnctl").exists() {
            for test in ["tcp1-up", "tcp4-down", "udp-up"] {
                let s = find("ours-fw/AES-256-GCM", test)
                    .unwrap_or_else(|| panic!("no successful ours-fw {test} sample in\n{csv}"));
                assert!(s["mbps"].as_f64().is_some_and(|v| v > 0.0), "{s}");
            }
        } else {
            assert!(
                summary.contains("ovpnctl is not built"),
                "ours-fw must be reported as unavailable:\n{summary}"
            );
        }
    }
    let svg = std::fs::read_to_string(out.path().join("chart.svg"))?;
    assert!(
        svg.starts_with("<svg") && svg.contains("<rect"),
        "chart.svg"
    );
    assert!(
        namespaces_with("hbsm").is_empty(),
        "namespaces left behind: {:?}",
        namespaces_with("hbsm")
    );

    // The packet-rate benchmark: the generator against the underlay and stock OpenVPN.
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dco-bench"));
    cmd.args([
        "pps",
        "--prefix",
        "hbsm",
        "--systems",
        "underlay,stock,ours",
        "--sizes",
        "1000",
        "--duration",
        "1",
        "--reps",
        "1",
        "--out",
    ])
    .arg(out.path().join("pps"));
    let res = e2e::run_timeout(&mut cmd, Duration::from_secs(120))?;
    let stdout = String::from_utf8_lossy(&res.stdout);
    assert!(
        res.status.success(),
        "dco-bench pps failed\n{stdout}\n{}",
        String::from_utf8_lossy(&res.stderr)
    );
    let pps: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("pps/pps.json"))?)?;
    let samples = pps["samples"].as_array().cloned().unwrap_or_default();
    for sys in ["underlay", "stock"] {
        assert!(
            samples
                .iter()
                .any(|s| s["system"] == sys && s["delivered"].as_u64().is_some_and(|d| d > 0)),
            "no packets delivered for {sys}: {pps}"
        );
    }
    if ours.is_err() {
        assert!(
            stdout.contains("- ours forward: not available yet"),
            "{stdout}"
        );
    } else {
        // Both directions through our daemon, with 1 and 2 workers; the daemon's own
        // counters agree with what arrived (every delivered packet passed through it).
        for dir in ["forward", "reverse"] {
            for w in [1, 2] {
                let s = samples
                    .iter()
                    .find(|s| s["system"] == "ours" && s["direction"] == dir && s["workers"] == w)
                    .unwrap_or_else(|| panic!("no ours {dir} w={w} sample: {pps}"));
                let delivered = s["delivered"].as_u64().unwrap_or(0);
                assert!(delivered > 0, "{s}");
                let d = &s["daemon"]["data"][if dir == "forward" { 0 } else { 1 }];
                assert!(d.as_u64().is_some_and(|v| v >= delivered), "{s}");
            }
        }
    }
    assert!(
        namespaces_with("hbsm").is_empty(),
        "namespaces left behind: {:?}",
        namespaces_with("hbsm")
    );
    Ok(())
}

fn e2e_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(std::path::PathBuf::from)
        .unwrap_or_default()
}
