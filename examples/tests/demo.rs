//! The demo runs in the test suite (quick mode: 2 s iperf3 per direction) so it cannot rot:
//! both clients must connect, ping, move data both ways and show up in the server daemon's
//! counters; nothing may be left behind, also when the demo is interrupted half-way.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn can_run() -> bool {
    e2e::require_tools(&["openvpn", "iperf3", "ping", "ethtool", "openssl"]) && e2e::require_ours()
}

/// Namespaces left with this prefix (a listing failure counts as none: `ip` is checked
/// elsewhere).
fn namespaces_with(prefix: &str) -> Vec<String> {
    e2e::Netns::list(prefix).unwrap_or_default()
}

/// Processes whose command line mentions `needle` (e.g. a run's work directory).
fn processes_mentioning(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if cmd.contains(needle) {
            found.push(format!("{}: {cmd}", e.file_name().to_string_lossy()));
        }
    }
    found
}

fn temp_dirs_with(prefix: &str) -> Vec<String> {
    std::fs::read_dir(std::env::temp_dir())
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&format!("{prefix}-")))
        .collect()
}

/// Directories our daemons made under /run/dco for namespaces of `prefix`.
fn socket_dirs_with(prefix: &str) -> Vec<String> {
    std::fs::read_dir("/run/dco")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&format!("{prefix}-")))
        .collect()
}

fn demo() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dco-demo"));
    cmd.arg("--bin-dir").arg(e2e::bin_dir());
    cmd
}

#[test]
fn demo_quick_mode_runs_both_clients_and_cleans_up() -> anyhow::Result<()> {
    if !can_run() {
        return Ok(());
    }
    let dirs_before = temp_dirs_with("dmq");
    let out = e2e::TempDir::new("dmqout")?;
    let json = out.path().join("demo.json");
    let mut cmd = demo();
    cmd.args(["--quick", "--prefix", "dmq", "--json"])
        .arg(&json);
    let res = e2e::run_timeout(&mut cmd, Duration::from_secs(180))?;
    let stdout = String::from_utf8_lossy(&res.stdout);
    let stderr = String::from_utf8_lossy(&res.stderr);
    assert!(
        res.status.success(),
        "dco-demo --quick failed ({})\nstdout:\n{stdout}\nstderr:\n{stderr}",
        res.status
    );
    for n in 1..=7 {
        assert!(
            stdout.contains(&format!("[{n}/7] ")),
            "step {n} missing:\n{stdout}"
        );
    }
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json)?)?;
    let rows = report["rows"].as_array().cloned().unwrap_or_default();
    assert_eq!(rows.len(), 2, "{report}");
    assert!(
        rows[0]["client"]
            .as_str()
            .unwrap_or("")
            .starts_with("stock OpenVPN 2.6")
    );
    assert!(rows[1]["client"].as_str().unwrap_or("").starts_with("ours"));
    for r in &rows {
        assert!(r["error"].is_null(), "{r}");
        assert!(r["handshake_s"].as_f64().is_some_and(|v| v > 0.0), "{r}");
        let (got, sent) = (&r["ping_replies"][0], &r["ping_replies"][1]);
        assert!(got.as_u64().is_some_and(|g| g > 0) && got == sent, "{r}");
        assert!(r["ping_ms"].as_f64().is_some_and(|v| v > 0.0), "{r}");
        assert!(r["up_mbps"].as_f64().is_some_and(|v| v > 0.0), "{r}");
        assert!(r["down_mbps"].as_f64().is_some_and(|v| v > 0.0), "{r}");
        let cipher = r["cipher"].as_str().unwrap_or("");
        assert!(
            ["AES-256-GCM", "AES-128-GCM", "CHACHA20-POLY1305"].contains(&cipher),
            "{r}"
        );
        // The server daemon decrypted and encrypted data packets for this client: at
        // least the pings and more than the iperf3 control traffic.
        let data = &r["server"]["data"];
        assert!(data[0].as_u64().is_some_and(|v| v > 100), "{r}");
        assert!(data[1].as_u64().is_some_and(|v| v > 100), "{r}");
    }
    // Our client's own daemon counted its side too.
    assert!(
        rows[1]["client_daemon"]["data"][0]
            .as_u64()
            .is_some_and(|v| v > 100),
        "{}",
        rows[1]
    );
    // The table is printed with one line per client.
    assert!(stdout.contains("| client "), "{stdout}");
    assert!(
        stdout.lines().any(|l| l.starts_with("| stock OpenVPN 2.6")),
        "{stdout}"
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("| ours (dco-control)")),
        "{stdout}"
    );
    assert!(
        namespaces_with("dmq").is_empty(),
        "{:?}",
        namespaces_with("dmq")
    );
    let left: Vec<String> = temp_dirs_with("dmq")
        .into_iter()
        .filter(|d| !dirs_before.contains(d))
        .collect();
    assert!(left.is_empty(), "directories left behind: {left:?}");
    Ok(())
}

#[test]
fn demo_cleans_up_when_interrupted() -> anyhow::Result<()> {
    if !can_run() {
        return Ok(());
    }
    let mut child = demo()
        .args(["--prefix", "dmi", "--iperf-secs", "30"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let pid = child.id();
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow::anyhow!("stdout"))?;
    // Read the progress lines on a thread; interrupt once the first iperf3 is running
    // (the client is connected and traffic flows: the most to clean up).
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut seen = Vec::new();
    loop {
        let timeout = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(timeout) {
            Ok(line) => {
                let ping_done = line.contains("ping 10.8.0.1");
                seen.push(line);
                if ping_done {
                    break;
                }
            }
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the demo never got to its first ping:\n{}", seen.join("\n"));
            }
        }
    }
    // iperf3 (30 s) is starting now; interrupt it half-way in.
    std::thread::sleep(Duration::from_secs(2));
    let work = format!("dmi-demo-{pid}-");
    assert!(
        !processes_mentioning(&work).is_empty(),
        "nothing is running yet?"
    );
    // SAFETY: kill(2) on the child we spawned and have not reaped.
    unsafe {
        libc::kill(pid as i32, libc::SIGINT);
    }
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break s;
        }
        if start.elapsed() > Duration::from_secs(40) {
            let _ = child.kill();
            panic!("the demo did not exit within 40 s of SIGINT");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let _ = reader.join();
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut err);
    }
    assert_eq!(status.code(), Some(130), "{status}\n{err}");
    let ours = format!("-{pid}-");
    let ns: Vec<String> = namespaces_with("dmi")
        .into_iter()
        .filter(|n| n.contains(&ours))
        .collect();
    assert!(ns.is_empty(), "namespaces left behind: {ns:?}");
    let dirs: Vec<String> = temp_dirs_with("dmi")
        .into_iter()
        .filter(|n| n.contains(&ours))
        .collect();
    assert!(dirs.is_empty(), "directories left behind: {dirs:?}");
    let run_dirs: Vec<String> = socket_dirs_with("dmi")
        .into_iter()
        .filter(|n| n.contains(&ours))
        .collect();
    assert!(
        run_dirs.is_empty(),
        "socket directories left behind: {run_dirs:?}"
    );
    let left = processes_mentioning(&work);
    assert!(left.is_empty(), "processes left behind: {left:?}");
    Ok(())
}
