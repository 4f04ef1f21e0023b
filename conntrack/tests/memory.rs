//! Memory per entry, measured as the growth of the process's resident set
//! (target: <= 256 bytes; the table's entries and indexes live in their own
//! mappings, not on the heap), and no allocation per packet for established
//! flows (counting allocator).

use conntrack::build;
use conntrack::{Config, Conntrack, CtState, PacketCtx, PeerRef, RuleSet, Timestamp, Verdict};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;

static CALLS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        CALLS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same layout contract as the caller's.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: `p` came from `alloc` with this layout.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        CALLS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: `p` came from `alloc` with layout `l`.
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static A: Counting = Counting;

const PEER: PeerRef<'static> = PeerRef::new(1, "alice");

fn put_client(buf: &mut [u8], off: usize, i: u32) {
    let b = i.to_be_bytes();
    buf[off] = 10;
    buf[off + 1..off + 4].copy_from_slice(&b[1..4]);
}

/// Resident bytes of this process (`/proc/self/statm`).
fn resident() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("statm");
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .expect("resident pages");
    // SAFETY: sysconf with a valid name has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
    pages * page
}

/// One test so the global counters are not shared with a concurrent test.
#[test]
fn memory_per_entry_and_no_allocation_on_established_flows() {
    let now = Timestamp::from_millis(1000);
    let mut q = build::udp(
        "10.0.0.1".parse().unwrap(),
        "192.0.2.1".parse().unwrap(),
        40000,
        9,
        b"",
    );
    // The reply of flow i: 192.0.2.1:9 -> 10.x.y.z:40000.
    let mut r = build::udp(
        "192.0.2.1".parse().unwrap(),
        "10.0.0.1".parse().unwrap(),
        9,
        40000,
        b"",
    );

    for n in [100_000u32, 1_000_000] {
        let before = resident();
        let ct = Conntrack::with_rules(
            Config {
                max_entries: n as usize,
                ..Config::default()
            },
            RuleSet::parse("policy drop\nct state established accept\nudp dport 9 accept").unwrap(),
        )
        .unwrap();
        let ctx = PacketCtx::from_peer(PEER, now);
        for i in 0..n {
            put_client(&mut q, 12, i);
            ct.track(&q, &ctx);
        }
        assert_eq!(ct.len(), n as usize);
        let used = resident().saturating_sub(before);
        let per = used / n as usize;
        let reported = ct.memory_usage();
        eprintln!(
            "{n} entries: resident set grew {used} bytes = {per} bytes/entry; memory_usage() says {} bytes/entry",
            reported.per_entry()
        );
        assert!(per <= 256, "{per} bytes per entry at {n}");
        // memory_usage() is honest to within 10%.
        let diff = (reported.bytes as f64 - used as f64).abs() / used as f64;
        assert!(
            diff < 0.10,
            "reported {} vs measured {used}",
            reported.bytes
        );

        // Established flows (a reply seen, then more packets): tracking allocates nothing.
        let calls = CALLS.load(Ordering::Relaxed);
        for i in 0..10_000 {
            let flow = i * 7 % n;
            put_client(&mut r, 16, flow);
            assert_eq!(ct.track(&r, &ctx), Verdict::Accept);
            put_client(&mut q, 12, flow);
            let o = ct.track_detailed(&q, &ctx);
            assert_eq!(o.state, CtState::Established);
            assert_eq!(o.verdict, Verdict::Accept);
        }
        assert_eq!(
            CALLS.load(Ordering::Relaxed),
            calls,
            "allocation on the established path"
        );
    }
}
