//! `ovpnctl` end to end: the real binary against the real server with the mock daemon.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use control_ipc::mock::MockDaemon;
use control_ipc::schema::{CtEntry, CtTuple, KeySlot};
use control_ipc::server::{Server, ServerConfig, ShutdownHandle};

const BIN: &str = env!("CARGO_BIN_EXE_ovpnctl");

struct Daemon {
    dir: PathBuf,
    path: PathBuf,
    mock: Arc<MockDaemon>,
    stop: ShutdownHandle,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop.shutdown();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn daemon(rt: &tokio::runtime::Runtime, tag: &str) -> Daemon {
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "ipc-ovpnctl-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = dir.join("dco0.sock");
    let mock = Arc::new(MockDaemon::new("dco0"));
    let stop = rt.block_on(async {
        let server = Server::bind(ServerConfig::new(&path)).unwrap();
        mock.set_notifier(server.notifier());
        let stop = server.shutdown_handle();
        tokio::spawn(server.serve(Arc::clone(&mock)));
        stop
    });
    Daemon {
        dir,
        path,
        mock,
        stop,
    }
}

fn ovpnctl(sock: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("--socket")
        .arg(sock)
        .args(args)
        .output()
        .unwrap()
}

fn ok(sock: &Path, args: &[&str]) -> String {
    let o = ovpnctl(sock, args);
    assert!(
        o.status.success(),
        "ovpnctl {args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

fn fails(sock: &Path, args: &[&str]) -> String {
    let o = ovpnctl(sock, args);
    assert_eq!(o.status.code(), Some(1), "ovpnctl {args:?} should fail");
    let e = String::from_utf8(o.stderr).unwrap();
    assert_eq!(e.lines().count(), 1, "one line on stderr: {e}");
    assert!(!e.contains("panicked") && !e.contains("backtrace"), "{e}");
    e
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn no_daemon_gives_one_line() {
    let e = fails(Path::new("/nonexistent/dco9.sock"), &["show"]);
    assert!(
        e.starts_with("ovpnctl: cannot connect to /nonexistent/dco9.sock"),
        "{e}"
    );
    assert!(e.contains("is dco-daemon running"), "{e}");
    // The default path follows --ifname.
    let o = Command::new(BIN)
        .args(["--ifname", "ipcnone0", "stats"])
        .output()
        .unwrap();
    let e = String::from_utf8(o.stderr).unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(e.contains("ipcnone0.sock"), "{e}");
}

#[test]
fn help_has_examples_and_completions_work() {
    let top = Command::new(BIN).arg("--help").output().unwrap();
    let top = String::from_utf8(top.stdout).unwrap();
    for cmd in [
        "show",
        "info",
        "stats",
        "peer",
        "key",
        "watch",
        "ct",
        "fw",
        "listen",
        "ifconfig",
        "route",
        "iroute",
        "start",
        "ifmode",
        "send-control",
        "completions",
    ] {
        assert!(
            top.contains(&format!("  {cmd} ")),
            "{cmd} missing from --help"
        );
    }
    for path in [
        vec!["peer", "add"],
        vec!["key", "new"],
        vec!["ct", "list"],
        vec!["fw", "load"],
        vec!["watch"],
    ] {
        let o = Command::new(BIN)
            .args(&path)
            .arg("--help")
            .output()
            .unwrap();
        let h = String::from_utf8(o.stdout).unwrap();
        assert!(h.contains("Example:\n  "), "{path:?}: {h}");
    }
    let o = Command::new(BIN)
        .args(["completions", "bash"])
        .output()
        .unwrap();
    assert!(o.status.success());
    assert!(String::from_utf8(o.stdout).unwrap().contains("_ovpnctl"));
}

#[test]
fn operator_session() {
    let rt = runtime();
    let d = daemon(&rt, "session");
    let s = d.path.as_path();

    ok(s, &["ifmode", "subnet"]);
    ok(s, &["ifmode", "subnet", "--client-to-client", "off"]);
    // A bad value is a usage error (exit 2), named, before anything reaches the daemon.
    let o = ovpnctl(s, &["ifmode", "subnet", "--client-to-client", "maybe"]);
    assert_eq!(o.status.code(), Some(2));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("expected on or off"), "{e}");
    let l = ok(s, &["listen", "127.0.0.1:0"]);
    assert!(l.starts_with("listening on 127.0.0.1:"), "{l}");
    ok(
        s,
        &["ifconfig", "--ipv4", "10.8.0.1/24", "--mtu", "1420", "--up"],
    );
    ok(
        s,
        &[
            "peer",
            "add",
            "5",
            "--remote",
            "198.51.100.7:50000",
            "--local",
            "127.0.0.1:1194",
            "--vpn-ipv4",
            "10.8.0.6",
            "--vpn-ipv6",
            "fd00::6",
            "--cn",
            "alice",
            "--iroute",
            "192.168.10.0/24",
        ],
    );
    let e = fails(s, &["peer", "add", "5", "--remote", "198.51.100.7:50000"]);
    assert!(
        e.contains("NEW_PEER failed: peer 5 already exists (EEXIST)"),
        "daemon's message on stderr: {e}"
    );
    ok(
        s,
        &["peer", "set", "5", "--interval", "10", "--timeout", "60"],
    );

    // Key material from stdin, hex.
    let mut child = Command::new(BIN)
        .arg("--socket")
        .arg(s)
        .args([
            "key",
            "new",
            "5",
            "--slot",
            "primary",
            "--keyid",
            "1",
            "--key-file",
            "-",
        ])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let material: String = (0..80u8).map(|b| format!("{b:02x}")).collect();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(material.as_bytes())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // From a file, base64, wrong length for the cipher: refused before sending.
    let kf = d.dir.join("short.key");
    std::fs::write(&kf, "AAAA").unwrap();
    let e = fails(
        s,
        &[
            "key",
            "new",
            "5",
            "--keyid",
            "2",
            "--key-file",
            kf.to_str().unwrap(),
        ],
    );
    assert!(e.contains("needs 80 bytes"), "{e}");
    assert_eq!(
        d.mock.state().peers[&5].keys[usize::from(KeySlot::Primary.number())].map(|k| k.0),
        Some(1)
    );

    let show = ok(s, &["show"]);
    for want in [
        "interface: dco0",
        "peer 5: alice",
        "endpoint: 198.51.100.7:50000 (local 127.0.0.1:1194)",
        "vpn addresses: 10.8.0.6, fd00::6",
        "iroutes: 192.168.10.0/24",
        "keys: primary key-id 1 AES-256-GCM",
        "keepalive: every 10 s, timeout 60 s",
        "transfer: 0 B received (0 packets), 0 B sent (0 packets)",
    ] {
        assert!(show.contains(want), "show lacks {want:?}:\n{show}");
    }
    assert!(!show.contains("0001020304"), "no key bytes in show");
    let j: serde_json::Value = serde_json::from_str(&ok(s, &["show", "5", "--json"])).unwrap();
    assert_eq!(j["peers"][0]["remote"], "198.51.100.7:50000");
    assert_eq!(j["peers"][0]["keys"][0]["cipher"], "AES-256-GCM");
    assert_eq!(j["interface"]["ifname"], "dco0");
    let e = fails(s, &["show", "6"]);
    assert!(e.contains("no peer with id 6"), "{e}");

    let st: serde_json::Value = serde_json::from_str(&ok(s, &["stats", "--json"])).unwrap();
    assert_eq!(st["data"]["in"], 0);
    assert!(ok(s, &["stats"]).contains("transport"));
    let ps: serde_json::Value =
        serde_json::from_str(&ok(s, &["stats", "--peers", "--json"])).unwrap();
    assert_eq!(ps[0]["peerid"], 5);
    assert!(ok(s, &["peer", "list"]).contains("alice"));

    ok(s, &["iroute", "add", "5", "192.168.20.0/24"]);
    ok(s, &["iroute", "del", "5", "192.168.10.0/24"]);
    ok(s, &["route", "add", "192.168.20.0/24", "--via", "10.8.0.6"]);
    ok(s, &["route", "del", "192.168.20.0/24"]);
    ok(
        s,
        &[
            "send-control",
            "--remote",
            "198.51.100.7:50000",
            "--hex",
            "38a1b2",
        ],
    );
    assert_eq!(
        d.mock.state().sent_control[0].packet.0,
        vec![0x38, 0xa1, 0xb2]
    );

    let rules = d.dir.join("rules.conf");
    std::fs::write(
        &rules,
        "# test rules\npolicy drop\nct state established,related accept\nct state invalid drop\n",
    )
    .unwrap();
    assert_eq!(
        ok(s, &["fw", "load", rules.to_str().unwrap()]),
        "2 rules loaded\n"
    );
    let fl = ok(s, &["fw", "list"]);
    assert!(fl.starts_with("policy drop"), "{fl}");
    assert!(fl.contains("ct state invalid drop"), "{fl}");
    std::fs::write(&rules, "bogus\n").unwrap();
    let e = fails(s, &["fw", "load", rules.to_str().unwrap()]);
    assert!(e.contains("line 1"), "{e}");
    assert!(ok(s, &["fw", "counters", "--zero"]).contains("policy:"));

    d.mock.state().conntrack = vec![CtEntry {
        proto: 6,
        state: "ESTABLISHED".into(),
        orig: CtTuple {
            src: "10.8.0.6".parse().unwrap(),
            dst: "192.0.2.80".parse().unwrap(),
            sport: Some(40000),
            dport: Some(443),
            icmp_type: None,
            icmp_code: None,
            icmp_id: None,
        },
        reply: CtTuple {
            src: "192.0.2.80".parse().unwrap(),
            dst: "10.8.0.6".parse().unwrap(),
            sport: Some(443),
            dport: Some(40000),
            icmp_type: None,
            icmp_code: None,
            icmp_id: None,
        },
        orig_packets: 3,
        orig_bytes: 180,
        reply_packets: 2,
        reply_bytes: 120,
        timeout: 431999,
        mark: 0,
        peerid: Some(5),
        assured: true,
    }];
    let ct = ok(s, &["ct", "list"]);
    assert!(
        ct.starts_with("tcp      6  431999 ESTABLISHED src=10.8.0.6 dst=192.0.2.80 sport=40000 dport=443 packets=3 bytes=180 src=192.0.2.80")
            || ct.contains("ESTABLISHED src=10.8.0.6 dst=192.0.2.80 sport=40000 dport=443 packets=3 bytes=180 src=192.0.2.80"),
        "{ct}"
    );
    assert!(ct.contains("[ASSURED] mark=0 peer=5"), "{ct}");
    assert!(ok(s, &["ct", "stats"]).contains("entries=1"));
    assert_eq!(
        ok(s, &["ct", "flush", "--peer", "5"]),
        "1 connections flushed\n"
    );

    ok(s, &["key", "del", "5", "--slot", "secondary"]);
    let e = fails(s, &["key", "swap", "5"]);
    assert!(e.contains("ENOLINK"), "{e}");
    ok(s, &["start"]);
    assert!(ok(s, &["info"]).contains("state: running"));
    let e = fails(s, &["ifmode", "p2p"]);
    assert!(e.contains("EBUSY"), "{e}");
    ok(s, &["peer", "del", "5"]);
    drop(d);
}

#[test]
fn watch_prints_notifications_as_they_come() {
    let rt = runtime();
    let d = daemon(&rt, "watch");
    let s = d.path.as_path();
    ok(s, &["peer", "add", "9", "--remote", "192.0.2.9:1194"]);
    let mut child = Command::new(BIN)
        .arg("--socket")
        .arg(s)
        .args(["watch", "--json", "--count", "1"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the watcher is subscribed, then delete the peer.
    let notifier = d.mock.notifier().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while notifier.subscriber_count() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "watch never subscribed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    ok(s, &["peer", "del", "9"]);
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let status = child.wait().unwrap();
    assert!(status.success());
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["notification"], "DEL_PEER");
    assert_eq!(v["peerid"], 9);
    assert_eq!(v["del_reason"], 0);
    drop(d);
}
