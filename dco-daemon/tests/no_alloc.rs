//! Fast-path discipline, checked: once warm, the receive path (demultiplex, decrypt, replay,
//! source check, MSS clamp, route, GRO batching) and the send path (route, seal) allocate
//! nothing per packet. A counting allocator counts this thread's allocations.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use crypto::{CipherKind, DATA_V2_OVERHEAD};
use dco_daemon::events::RateLimit;
use dco_daemon::filter::REPLY_BUF;
use dco_daemon::gro::TunWriter;
use dco_daemon::testkit::{Scenario, tcp4};
use dco_daemon::worker::{HEADROOM, RxAction, RxPath, TxAction, TxPath};

struct Counting;

thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: defers to the system allocator; the counter is a thread-local Cell, which does not
// allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: same layout contract as the caller's.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: p was allocated by System with l.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: p was allocated by System with l.
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static A: Counting = Counting;

fn allocs() -> u64 {
    ALLOCS.with(|c| c.get())
}

#[test]
fn receive_and_send_paths_allocate_nothing_per_packet() {
    // The counter sees allocations on this thread.
    let before = allocs();
    let v = std::hint::black_box(vec![1u8; 10]);
    assert!(allocs() > before, "the counting allocator does not count");
    drop(v);
    for cipher in CipherKind::ALL {
        let s = Scenario::new(cipher);
        let table = s.shared.table.load_full();
        let ctr = s.shared.counters.slot(2);
        let mut relay = RateLimit::new(1000, 100);
        let mut reply = vec![0u8; DATA_V2_OVERHEAD + REPLY_BUF];
        let mut tun = TunWriter::new(128);
        let filter = s.shared.filter();
        // Inputs prepared up front: 2000 sealed TCP segments from the peer, and plaintexts.
        let mut wires: Vec<Vec<u8>> = (0..2000u32)
            .map(|i| {
                let inner = tcp4([10, 8, 0, 2], [10, 8, 0, 1], 1 + i * 1400, 1400);
                let mut buf = vec![0u8; DATA_V2_OVERHEAD + inner.len()];
                let n = s.seal_from_peer(&inner, &mut buf);
                buf.truncate(n);
                buf
            })
            .collect();
        let plain = tcp4([10, 8, 0, 1], [10, 8, 0, 2], 1, 1400);
        let mut txbuf = vec![0u8; HEADROOM + plain.len()];
        let mut tx_reply = vec![0u8; REPLY_BUF];
        let mut run = |range: std::ops::Range<usize>, wires: &mut [Vec<u8>]| {
            let mut rx = RxPath {
                shared: &s.shared,
                table: &table,
                ctr,
                slot: 2,
                now: 1,
                relay: &mut relay,
                reply: &mut reply,
                local_port: 1194,
            };
            // Batches of 128 as the receive thread uses them (flushing needs a TUN; here a
            // batch is filled and dropped).
            for chunk in wires[range.clone()].chunks_mut(128) {
                let mut batch = tun.batch();
                for w in chunk {
                    match rx.packet(w, s.peer_addr, None) {
                        RxAction::Tun(r) => batch.push(&w[r]),
                        other => panic!("unexpected {other:?}"),
                    }
                }
                assert!(batch.len() <= 128);
            }
            let mut txp = TxPath {
                shared: &s.shared,
                table: &table,
                filter: &filter,
                ctr,
                slot: 3,
                now: 1,
                reply: &mut tx_reply,
            };
            for _ in range {
                txbuf[HEADROOM..].copy_from_slice(&plain);
                assert!(matches!(
                    txp.packet(&mut txbuf, plain.len()),
                    TxAction::Udp(..)
                ));
            }
        };
        // Warm up (lazy statics, thread-local slots), then count.
        run(0..100, &mut wires);
        let before = allocs();
        run(100..2000, &mut wires);
        let n = allocs() - before;
        assert_eq!(
            n, 0,
            "{cipher}: {n} allocations for 1900 received and 1900 sent packets"
        );
        let st = s.shared.counters.snapshot();
        assert_eq!(st.get(dco_daemon::stats::Ctr::RecvData), 2000);
    }
}

#[test]
fn batched_send_path_with_the_firewall_allocates_nothing_on_tracked_flows() {
    for cipher in CipherKind::ALL {
        let s = Scenario::new(cipher);
        s.load_firewall("policy drop\nct state established,related accept\nto-peer tcp dport 9000-9999 accept\n");
        let table = s.shared.table.load_full();
        let ctr = s.shared.counters.slot(3);
        let filter = s.shared.filter();
        let mut reply = vec![0u8; REPLY_BUF];
        // 64 flows (a TCP segment each, repeated): the first round creates the entries.
        let plains: Vec<Vec<u8>> = (0..64u16)
            .map(|i| {
                let mut p = tcp4([10, 8, 0, 1], [10, 8, 0, 2], 1, 1000);
                p[22..24].copy_from_slice(&(9000 + i).to_be_bytes());
                p
            })
            .collect();
        let mut bufs: Vec<Vec<u8>> = plains
            .iter()
            .map(|p| vec![0u8; HEADROOM + p.len()])
            .collect();
        let sizes: Vec<usize> = plains.iter().map(Vec::len).collect();
        let mut actions = vec![TxAction::None; plains.len()];
        let mut round = |bufs: &mut Vec<Vec<u8>>, actions: &mut Vec<TxAction>| {
            for (b, p) in bufs.iter_mut().zip(&plains) {
                b[HEADROOM..].copy_from_slice(p);
            }
            let mut txp = TxPath {
                shared: &s.shared,
                table: &table,
                filter: &filter,
                ctr,
                slot: 3,
                now: 1,
                reply: &mut reply,
            };
            txp.batch(bufs, &sizes, actions, &mut |_| panic!("no rejects here"));
            assert!(
                actions.iter().all(|a| matches!(a, TxAction::Udp(..))),
                "{actions:?}"
            );
        };
        round(&mut bufs, &mut actions);
        round(&mut bufs, &mut actions);
        let before = allocs();
        for _ in 0..30 {
            round(&mut bufs, &mut actions);
        }
        let n = allocs() - before;
        assert_eq!(
            n, 0,
            "{cipher}: {n} allocations for 30 batches of 64 packets"
        );
        assert_eq!(s.shared.conntrack.len(), 64);
    }
}
