//! Criterion benchmarks of the per-packet cost.
//!
//! `cargo bench -p dco-conntrack --bench conntrack`
//!
//! * `established/{udp,tcp}/N`: `track()` of a packet of an established flow,
//!   flows drawn at random from N tracked ones (cache-cold at 1M), no rules.
//! * `new/{udp,tcp_syn}`: `track()` of the first packet of a new flow (insert).
//! * `rules/*/N`: established packets (N flows) through no rules, a 20-rule
//!   set with `ct state established,related accept` first, and one where it
//!   is last (every packet walks all 20).
//! * `baseline/*`: a dependent random load over 16 and 256 MB (the cost of a
//!   cache miss here) and `std::collections::HashMap::get`, for scale.
//! * `threads/N`: N threads tracking their own flows in one shared table.
//!
//! Packets are patched in place (address bytes) rather than rebuilt; the
//! tracker does not verify checksums, so that costs a few stores.
//!
//! Times are the measuring thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`), not
//! wall-clock time, so other load on a shared machine does not inflate them
//! (it still costs cache). Setup (filling tables) runs only for the
//! benchmarks selected by the filter.

use conntrack::build::{self, Tcp};
use conntrack::{BatchItem, Config, Conntrack, PacketCtx, PeerRef, RuleSet, Timestamp, Verdict};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use std::net::IpAddr;
use std::time::Duration;

const PEER: PeerRef<'static> = PeerRef::new(1, "alice");

/// This thread's CPU time.
fn cpu_now() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// `iters` calls of `f`, timed in thread CPU time.
fn cpu_iters(iters: u64, mut f: impl FnMut(u64)) -> Duration {
    let t0 = cpu_now();
    for i in 0..iters {
        f(i);
    }
    cpu_now() - t0
}
const NOW: Timestamp = Timestamp::from_millis(1_000_000);

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Client address of flow `i`: 10.x.y.z (16M flows).
fn put_client(buf: &mut [u8], off: usize, i: u32) {
    let b = i.to_be_bytes();
    buf[off] = 10;
    buf[off + 1..off + 4].copy_from_slice(&b[1..4]);
}

struct Templates {
    udp_q: Vec<u8>,
    udp_r: Vec<u8>,
    syn: Vec<u8>,
    synack: Vec<u8>,
    ack: Vec<u8>,
}

fn templates() -> Templates {
    let (c, s) = (ip("10.0.0.1"), ip("192.0.2.1"));
    let tcp = |src, dst, sp, dp, seq, ack, flags| {
        Tcp {
            sport: sp,
            dport: dp,
            seq,
            ack,
            flags,
            win: 64000,
            ..Tcp::default()
        }
        .packet(src, dst)
    };
    Templates {
        udp_q: build::udp(c, s, 40000, 9, b""),
        udp_r: build::udp(s, c, 9, 40000, b""),
        syn: tcp(c, s, 40000, 22, 1000, 0, 0x02),
        synack: tcp(s, c, 22, 40000, 5000, 1001, 0x12),
        ack: tcp(c, s, 40000, 22, 1001, 5001, 0x10),
    }
}

fn tracker(max: usize, rules: &str) -> Conntrack {
    Conntrack::with_rules(
        Config {
            max_entries: max,
            ..Config::default()
        },
        RuleSet::parse(rules).unwrap(),
    )
    .unwrap()
}

/// UDP flows as a table holds them in steady state: seen both ways, for
/// more than two seconds, so assured (a stream) like `conntrack -L` shows
/// long-lived UDP.
fn prefill_udp(ct: &Conntrack, t: &mut Templates, n: u32) {
    let earlier = Timestamp::from_millis(NOW.as_millis() - 3000);
    let (q, r) = (
        PacketCtx::from_peer(PEER, earlier),
        PacketCtx::to_peer(PEER, earlier),
    );
    let q_now = PacketCtx::from_peer(PEER, NOW);
    for i in 0..n {
        put_client(&mut t.udp_q, 12, i);
        put_client(&mut t.udp_r, 16, i);
        ct.track(&t.udp_q, &q);
        ct.track(&t.udp_r, &r);
        ct.track(&t.udp_q, &q_now);
    }
}

fn prefill_tcp(ct: &Conntrack, t: &mut Templates, n: u32) {
    let (q, r) = (
        PacketCtx::from_peer(PEER, NOW),
        PacketCtx::to_peer(PEER, NOW),
    );
    for i in 0..n {
        put_client(&mut t.syn, 12, i);
        put_client(&mut t.synack, 16, i);
        put_client(&mut t.ack, 12, i);
        ct.track(&t.syn, &q);
        ct.track(&t.synack, &r);
        ct.track(&t.ack, &q);
    }
}

/// Length of the random flow order a benchmark cycles through: 2^20 draws,
/// so even the 1M-entry table is visited nearly everywhere (63 % of its flows
/// per cycle) rather than through a cache-sized subset.
const ORDER_LEN: usize = 1 << 20;
const ORDER_MASK: usize = ORDER_LEN - 1;

/// A random order of flow indices (xorshift), so lookups miss the caches as real traffic does.
fn order(n: u32) -> Vec<u32> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    (0..ORDER_LEN)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % u64::from(n)) as u32
        })
        .collect()
}

struct Prefilled {
    ct: Conntrack,
    pkt: Vec<u8>,
    ord: Vec<u32>,
}

fn prefilled(n: u32, tcp: bool, rules: &str) -> Prefilled {
    let mut t = templates();
    // Sized like a deployment would be: twice the flows it holds.
    let ct = tracker((2 * n as usize).max(1024), rules);
    if tcp {
        prefill_tcp(&ct, &mut t, n);
    } else {
        prefill_udp(&ct, &mut t, n);
    }
    let m = ct.memory_usage();
    eprintln!(
        "{} n={n}: {} entries, {} heap bytes, {} bytes/entry (entry struct {} bytes)",
        if tcp { "tcp" } else { "udp" },
        m.entries,
        m.bytes,
        m.per_entry(),
        m.entry_size
    );
    Prefilled {
        ct,
        pkt: if tcp { t.ack } else { t.udp_q },
        ord: order(n),
    }
}

fn bench_track(b: &mut criterion::Bencher<'_>, st: &mut Prefilled) {
    let ctx = PacketCtx::from_peer(PEER, NOW);
    let Prefilled { ct, pkt, ord } = st;
    b.iter_custom(|iters| {
        cpu_iters(iters, |i| {
            put_client(pkt, 12, ord[i as usize & ORDER_MASK]);
            black_box(ct.track(black_box(pkt), &ctx));
        })
    });
}

/// Packets per `track_batch` call: what the daemon hands over (its send and
/// receive paths run the firewall in lanes of 64).
const BATCH: usize = 64;

/// The same through `track_batch`, [`BATCH`] packets a call.
fn bench_batch(b: &mut criterion::Bencher<'_>, st: &mut Prefilled) {
    let Prefilled { ct, pkt, ord } = st;
    let mut bufs: Vec<Vec<u8>> = (0..BATCH).map(|_| pkt.clone()).collect();
    let mut out = [Verdict::Accept; BATCH];
    b.iter_custom(|iters| {
        let rounds = iters.div_ceil(BATCH as u64);
        let el = cpu_iters(rounds, |r| {
            for (j, buf) in bufs.iter_mut().enumerate() {
                put_client(buf, 12, ord[(r as usize * BATCH + j) & ORDER_MASK]);
            }
            let items: [BatchItem<'_>; BATCH] = std::array::from_fn(|j| BatchItem {
                pkt: &bufs[j],
                ctx: PacketCtx::from_peer(PEER, NOW),
            });
            ct.track_batch(&items, &mut out);
            black_box(&out);
        });
        // Report per packet.
        el * iters as u32 / (rounds * BATCH as u64) as u32
    });
}

fn established(c: &mut Criterion) {
    let mut g = c.benchmark_group("established");
    g.throughput(Throughput::Elements(1));
    for &n in &[1_000u32, 100_000, 1_000_000] {
        for tcp in [false, true] {
            let mut st = None;
            let id = BenchmarkId::new(if tcp { "tcp" } else { "udp" }, n);
            g.bench_function(id, |b| {
                let st = st.get_or_insert_with(|| prefilled(n, tcp, "policy accept"));
                bench_track(b, st)
            });
            let id = BenchmarkId::new(if tcp { "tcp_batch" } else { "udp_batch" }, n);
            g.bench_function(id, |b| {
                let st = st.get_or_insert_with(|| prefilled(n, tcp, "policy accept"));
                bench_batch(b, st)
            });
        }
    }
    g.finish();
}

fn new_connections(c: &mut Criterion) {
    let mut g = c.benchmark_group("new");
    g.throughput(Throughput::Elements(1));
    g.sample_size(10);
    let t = templates();
    for (name, tpl) in [("udp", t.udp_q.clone()), ("tcp_syn", t.syn.clone())] {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                // A fresh table per sample, large enough that inserts never evict.
                let ct = tracker(iters as usize + 1, "policy accept");
                let ctx = PacketCtx::from_peer(PEER, NOW);
                let mut pkt = tpl.clone();
                let el = cpu_iters(iters, |i| {
                    put_client(&mut pkt, 12, i as u32);
                    black_box(ct.track(black_box(&pkt), &ctx));
                });
                assert_eq!(ct.len() as u64, iters.min(1 << 24));
                el
            })
        });
    }
    g.finish();
}

const RULES_FIRST: &str = r#"
policy drop
ct state established,related accept
ct state invalid drop
from-peer cn "alice" ip daddr 10.8.0.0/24 tcp dport 22 accept
from-peer cn { "bob", "carol" } tcp dport { 80, 443 } accept
between-peers tcp dport 80 reject
icmp type echo-request accept
icmpv6 type { echo-request, nd-neighbor-solicit } accept
ip saddr 192.168.0.0/16 drop
ip6 saddr fd00:dead::/32 drop
udp dport 53 accept
udp dport 123 accept
tcp dport 25 reject with tcp reset
from-peer peer-id 100-199 to-host accept
to-peer cn "dave" udp dport 5000-6000 accept
tcp flags syn / syn,ack tcp dport 8080 accept
meta l4proto gre accept
ip daddr 198.51.100.0/24 udp dport 9000 accept
from-peer cn "erin" ip saddr 10.0.0.0/8 accept
ip6 daddr 2001:db8::/32 udp dport 4500 accept
udp dport 9 accept
"#;

fn rules_last() -> String {
    // Same rules, the established rule moved to the end: every packet walks all 20.
    let mut lines: Vec<&str> = RULES_FIRST.lines().filter(|l| !l.is_empty()).collect();
    let est = lines.remove(1);
    lines.insert(lines.len() - 1, est);
    lines.join("\n")
}

fn rules(c: &mut Criterion) {
    let mut g = c.benchmark_group("rules");
    g.throughput(Throughput::Elements(1));
    let last = rules_last();
    assert_eq!(RuleSet::parse(RULES_FIRST).unwrap().len(), 20);
    assert_eq!(RuleSet::parse(&last).unwrap().len(), 20);
    for n in [1_000u32, 100_000] {
        for (name, text) in [
            ("none", "policy accept"),
            ("20_established_first", RULES_FIRST),
            ("20_established_last", last.as_str()),
        ] {
            let mut st = None;
            g.bench_function(BenchmarkId::new(name, n), |b| {
                let st = st.get_or_insert_with(|| prefilled(n, false, text));
                bench_track(b, st)
            });
        }
    }
    g.finish();
}

/// W threads on one shared table; reported time is the mean per-thread CPU
/// time per packet, so contention shows as a rise over the 1-thread figure.
fn threads(c: &mut Criterion) {
    let mut g = c.benchmark_group("threads");
    g.sample_size(10);
    g.throughput(Throughput::Elements(1));
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut st: Option<Prefilled> = None;
    let mut w = 1;
    while w <= cores {
        g.bench_function(BenchmarkId::from_parameter(w), |b| {
            let st = st.get_or_insert_with(|| prefilled(100_000, false, RULES_FIRST));
            let (ct, ord, tpl) = (&st.ct, &st.ord, &st.pkt);
            b.iter_custom(|iters| {
                let total: Duration = std::thread::scope(|s| {
                    let hs: Vec<_> = (0..w)
                        .map(|id| {
                            s.spawn(move || {
                                let ctx = PacketCtx::from_peer(PEER, NOW);
                                let mut pkt = tpl.clone();
                                cpu_iters(iters, |i| {
                                    put_client(
                                        &mut pkt,
                                        12,
                                        ord[(i as usize * w + id) & ORDER_MASK],
                                    );
                                    black_box(ct.track(&pkt, &ctx));
                                })
                            })
                        })
                        .collect();
                    hs.into_iter().map(|h| h.join().unwrap()).sum()
                });
                total / w as u32
            })
        });
        w *= 2;
    }
    g.finish();
}

/// Baseline measured in the same run: one dependent random load over a
/// buffer of the given size (what a cache miss costs on this machine), and a
/// `std::collections::HashMap<u64, u64>` lookup with random keys.
fn baseline(c: &mut Criterion) {
    let mut g = c.benchmark_group("baseline");
    g.throughput(Throughput::Elements(1));
    for mb in [16usize, 256] {
        let mut st: Option<Vec<usize>> = None;
        g.bench_function(BenchmarkId::new("pointer_chase_mb", mb), |b| {
            let chain = st.get_or_insert_with(|| {
                // One random cycle through all slots (Sattolo's algorithm).
                let n = mb * (1 << 20) / 8;
                let mut v: Vec<usize> = (0..n).collect();
                let mut x = 0x2545_f491_4f6c_dd1du64;
                for i in (1..n).rev() {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let j = (x % i as u64) as usize;
                    v.swap(i, j);
                }
                v
            });
            let mut p = 0usize;
            b.iter_custom(|iters| {
                let t0 = cpu_now();
                for _ in 0..iters {
                    p = black_box(chain[p]);
                }
                cpu_now() - t0
            })
        });
    }
    for n in [1_000u64, 1_000_000] {
        let mut st: Option<(std::collections::HashMap<u64, u64>, Vec<u32>)> = None;
        g.bench_function(BenchmarkId::new("std_hashmap_get", n), |b| {
            let (m, ord) = st.get_or_insert_with(|| {
                (
                    (0..n).map(|i| (i * 0x9e37_79b9, i)).collect(),
                    order(n as u32),
                )
            });
            b.iter_custom(|iters| {
                cpu_iters(iters, |i| {
                    let k = u64::from(ord[i as usize & ORDER_MASK]) * 0x9e37_79b9;
                    black_box(m.get(&k));
                })
            })
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = baseline, established, new_connections, rules, threads
}
criterion_main!(benches);
