//! Replay real captures through the tracker and compare its table with what
//! Linux's own conntrack listed for the same traffic.
//!
//! The fixture (`tests/fixtures/kernel.*`) was made by
//! `tests/fixtures/capture.sh`: real TCP/UDP/ICMP/ICMPv6 traffic between
//! network namespaces through a router namespace with netfilter conntrack on,
//! recorded with tcpdump on the router, and `conntrack -L -o extended` run in
//! the router at a recorded time. Both tables are printed in conntrack's
//! format and parsed back by the same code, so the comparison also checks our
//! listing format against the real tool's.

use conntrack::{Config, Conntrack, ListFormat, PacketCtx, PeerRef, Timestamp};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Raw IP packets and their capture times (ms) from a pcap file.
fn read_pcap(path: &Path) -> Vec<(u64, Vec<u8>)> {
    let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(data.len() >= 24, "pcap header");
    let magic = u32::from_le_bytes(data[0..4].try_into().unwrap());
    let (le, nanos) = match magic {
        0xa1b2_c3d4 => (true, false),
        0xa1b2_3c4d => (true, true),
        0xd4c3_b2a1 => (false, false),
        0x4d3c_b2a1 => (false, true),
        m => panic!("not a pcap file: magic {m:#x}"),
    };
    let u32_at = |b: &[u8], o: usize| {
        let a: [u8; 4] = b[o..o + 4].try_into().unwrap();
        if le {
            u32::from_le_bytes(a)
        } else {
            u32::from_be_bytes(a)
        }
    };
    let linktype = u32_at(&data, 20);
    let mut out = Vec::new();
    let mut off = 24;
    while off + 16 <= data.len() {
        let sec = u64::from(u32_at(&data, off));
        let frac = u64::from(u32_at(&data, off + 4));
        let incl = u32_at(&data, off + 8) as usize;
        off += 16;
        let Some(frame) = data.get(off..off + incl) else {
            break;
        };
        off += incl;
        let ms = sec * 1000 + if nanos { frac / 1_000_000 } else { frac / 1000 };
        let ip = match linktype {
            // Ethernet: keep IPv4/IPv6 frames.
            1 if frame.len() > 14 && matches!(frame[12..14], [0x08, 0x00] | [0x86, 0xdd]) => {
                &frame[14..]
            }
            1 => continue,
            // Raw IP.
            101 | 228 | 229 => frame,
            l => panic!("unsupported link type {l}"),
        };
        out.push((ms, ip.to_vec()));
    }
    out
}

/// One `conntrack -L -o extended` line, normalised.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Line {
    proto: String,
    state: Option<String>,
    timeout: i64,
    orig: Vec<String>,
    reply: Vec<String>,
    counters: [u64; 4],
    unreplied: bool,
    assured: bool,
}

fn parse_line(l: &str) -> Line {
    let t: Vec<&str> = l.split_whitespace().collect();
    assert!(t.len() > 6, "short line: {l}");
    let proto = t[2].to_string();
    let timeout: i64 = t[4].parse().unwrap_or_else(|_| panic!("timeout in {l}"));
    let mut i = 5;
    let state = if !t[i].contains('=') && !t[i].starts_with('[') {
        i += 1;
        Some(t[i - 1].to_string())
    } else {
        None
    };
    let (mut orig, mut reply, mut counters) = (Vec::new(), Vec::new(), [0u64; 4]);
    let (mut unreplied, mut assured) = (false, false);
    let mut side = 0;
    let mut seen_src = 0;
    for tok in &t[i..] {
        match *tok {
            "[UNREPLIED]" => unreplied = true,
            "[ASSURED]" => assured = true,
            _ => {
                let Some((k, v)) = tok.split_once('=') else {
                    continue;
                };
                match k {
                    "src" => {
                        seen_src += 1;
                        side = seen_src - 1;
                        if side == 0 {
                            orig.push(tok.to_string())
                        } else {
                            reply.push(tok.to_string())
                        }
                    }
                    "packets" | "bytes" => {
                        let idx = side * 2 + usize::from(k == "bytes");
                        counters[idx] = v.parse().unwrap();
                    }
                    "mark" | "use" | "id" | "zone" | "secctx" | "peer" => {}
                    _ if side == 0 => orig.push(tok.to_string()),
                    _ => reply.push(tok.to_string()),
                }
            }
        }
    }
    Line {
        proto,
        state,
        timeout,
        orig,
        reply,
        counters,
        unreplied,
        assured,
    }
}

struct Meta {
    dump_ms: u64,
    client_nets: Vec<(IpAddr, u8)>,
}

fn read_meta(path: &Path) -> Meta {
    let text = std::fs::read_to_string(path).unwrap();
    let mut dump_ms = 0;
    let mut client_nets = Vec::new();
    for l in text.lines() {
        if let Some(v) = l.strip_prefix("dump_time=") {
            let (s, frac) = v.split_once('.').unwrap_or((v, "0"));
            let frac3: String = frac.chars().chain("000".chars()).take(3).collect();
            dump_ms = s.parse::<u64>().unwrap() * 1000 + frac3.parse::<u64>().unwrap();
        }
        if let Some(v) = l.strip_prefix("client_net=") {
            for n in v.split_whitespace() {
                let (a, len) = n.split_once('/').unwrap();
                client_nets.push((a.parse().unwrap(), len.parse().unwrap()));
            }
        }
    }
    assert!(
        dump_ms > 0 && !client_nets.is_empty(),
        "meta file incomplete"
    );
    Meta {
        dump_ms,
        client_nets,
    }
}

fn in_net(a: IpAddr, (net, len): (IpAddr, u8)) -> bool {
    match (a, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let m = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            u32::from(a) & m == u32::from(n) & m
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let m = if len == 0 {
                0
            } else {
                u128::MAX << (128 - len)
            };
            u128::from(a) & m == u128::from(n) & m
        }
        _ => false,
    }
}

fn src_of(p: &[u8]) -> Option<IpAddr> {
    match p.first()? >> 4 {
        4 => Some(IpAddr::from(<[u8; 4]>::try_from(p.get(12..16)?).ok()?)),
        6 => Some(IpAddr::from(<[u8; 16]>::try_from(p.get(8..24)?).ok()?)),
        _ => None,
    }
}

/// Replay `dir/name.pcap` and compare with `name.conntrack`; returns a report of differences.
fn compare(dir: &Path, name: &str) -> Vec<String> {
    let meta = read_meta(&dir.join(format!("{name}.meta")));
    let pkts = read_pcap(&dir.join(format!("{name}.pcap")));
    let kernel_text = std::fs::read_to_string(dir.join(format!("{name}.conntrack"))).unwrap();
    assert!(!pkts.is_empty());

    let ct = Conntrack::new(Config::default()).unwrap();
    let peer = PeerRef::new(1, "client");
    for (ms, p) in &pkts {
        let now = Timestamp::from_millis(*ms);
        let from_client = src_of(p).is_some_and(|a| meta.client_nets.iter().any(|n| in_net(a, *n)));
        let ctx = if from_client {
            PacketCtx::from_peer(peer, now)
        } else {
            PacketCtx::to_peer(peer, now)
        };
        ct.track(p, &ctx);
    }
    let ours_text: Vec<String> = ct
        .dump(Timestamp::from_millis(meta.dump_ms))
        .iter()
        .map(|e| {
            e.format(ListFormat {
                extended: true,
                ..ListFormat::default()
            })
        })
        .collect();

    let key = |l: &Line| format!("{} {}", l.proto, l.orig.join(" "));
    let kernel: BTreeMap<String, Line> = kernel_text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let p = parse_line(l);
            (key(&p), p)
        })
        .collect();
    let ours: BTreeMap<String, Line> = ours_text
        .iter()
        .map(|l| {
            let p = parse_line(l);
            (key(&p), p)
        })
        .collect();

    let mut diffs = Vec::new();
    for (k, kl) in &kernel {
        match ours.get(k) {
            None => diffs.push(format!("missing: {k}")),
            Some(ol) => {
                let mut o = ol.clone();
                let mut kk = kl.clone();
                // Timers: the kernel printed at its own instant; allow 2 s.
                if (o.timeout - kk.timeout).abs() <= 2 {
                    o.timeout = kk.timeout;
                }
                kk.timeout = kk.timeout.max(0);
                if o != kk {
                    diffs.push(format!("differs: {k}\n  kernel: {kk:?}\n  ours:   {o:?}"));
                }
            }
        }
    }
    for k in ours.keys() {
        if !kernel.contains_key(k) {
            diffs.push(format!("extra: {k}"));
        }
    }
    if !diffs.is_empty() {
        diffs.push(format!("our stats: {}", ct.stats().detail()));
    }
    diffs
}

#[test]
fn replay_matches_linux_conntrack() {
    let diffs = compare(&fixture_dir(), "kernel");
    assert!(
        diffs.is_empty(),
        "{} differences:\n{}",
        diffs.len(),
        diffs.join("\n")
    );
}

#[test]
fn replay_counts_related_icmp_errors() {
    let dir = fixture_dir();
    let meta = read_meta(&dir.join("kernel.meta"));
    let ct = Conntrack::new(Config::default()).unwrap();
    let peer = PeerRef::new(1, "client");
    for (ms, p) in read_pcap(&dir.join("kernel.pcap")) {
        let now = Timestamp::from_millis(ms);
        let from_client =
            src_of(&p).is_some_and(|a| meta.client_nets.iter().any(|n| in_net(a, *n)));
        let ctx = if from_client {
            PacketCtx::from_peer(peer, now)
        } else {
            PacketCtx::to_peer(peer, now)
        };
        ct.track(&p, &ctx);
    }
    let s = ct.stats().total;
    // Port unreachable for the closed UDP ports, IPv4 and IPv6.
    assert!(s.related >= 2, "{s:?}");
    // One 3000-byte datagram per family, three fragments each at MTU 1500.
    assert_eq!((s.frag_first, s.frag_matched), (2, 4), "{s:?}");
    assert_eq!(s.invalid, 0, "{s:?}");
    // The refused connection's entry was removed by the RST.
    assert!(s.closed >= 1, "{s:?}");
}

/// Regenerate a capture on this machine's kernel and compare (root only).
#[test]
fn live_capture_matches_this_kernel() {
    if std::env::var_os("CTK_SKIP_LIVE").is_some() {
        eprintln!("SKIPPED live_capture_matches_this_kernel: CTK_SKIP_LIVE is set");
        return;
    }
    // Root check without libc: the real uid on the Uid line of /proc/self/status.
    let uid0 = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false);
    if !uid0 {
        eprintln!("SKIPPED live_capture_matches_this_kernel: needs root for network namespaces");
        return;
    }
    let out = std::env::temp_dir().join(format!("ctk-live-{}", std::process::id()));
    let status = std::process::Command::new("timeout")
        .arg("300")
        .arg(fixture_dir().join("capture.sh"))
        .arg(&out)
        .arg("live")
        .status()
        .expect("run capture.sh");
    assert!(status.success(), "capture.sh failed: {status}");
    let diffs = compare(&out, "live");
    let _ = std::fs::remove_dir_all(&out);
    assert!(
        diffs.is_empty(),
        "{} differences:\n{}",
        diffs.len(),
        diffs.join("\n")
    );
}
