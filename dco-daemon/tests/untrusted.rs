//! Peer and TUN bytes through the data path: arbitrary datagrams, arbitrary (authenticated)
//! inner packets, mutated valid TCP segments and arbitrary TUN packets never panic, every
//! range handed back lies inside the buffer, and every packet the path consumes without
//! delivering is counted under a drop reason.

use crypto::{CipherKind, DATA_V2_OVERHEAD};
use dco_daemon::events::RateLimit;
use dco_daemon::filter::REPLY_BUF;
use dco_daemon::gro::TunWriter;
use dco_daemon::stats::CounterSnapshot;
use dco_daemon::testkit::{Scenario, tcp4};
use dco_daemon::worker::{HEADROOM, RxAction, RxPath, TxAction, TxPath};
use proptest::prelude::*;

fn drops(s: &CounterSnapshot) -> u64 {
    s.drop_reasons().iter().map(|(_, n)| n).sum()
}

/// Runs `wire` through the receive path; checks the action against the buffer and the
/// counters. Returns the action's kind for the caller's own checks.
fn receive(s: &Scenario, wire: &mut [u8]) -> &'static str {
    let table = s.shared.table.load_full();
    let ctr = s.shared.counters.slot(2);
    let mut relay = RateLimit::new(1000, 100);
    let mut reply = vec![0u8; DATA_V2_OVERHEAD + REPLY_BUF];
    let mut tun = TunWriter::new(8);
    let before = s.shared.counters.snapshot();
    let len = wire.len();
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
    let action = rx.packet(wire, s.peer_addr, None);
    let after = s.shared.counters.snapshot();
    match action {
        RxAction::Tun(r) => {
            assert!(
                r.start <= r.end && r.end <= len,
                "range {r:?} outside {len}"
            );
            // The TUN batcher takes whatever the path delivers.
            let mut batch = tun.batch();
            batch.push(&wire[r]);
            "tun"
        }
        RxAction::Udp(_, _, n) => {
            assert!(n <= len);
            "udp"
        }
        RxAction::Reject(_, _, n) => {
            assert!(n <= DATA_V2_OVERHEAD + REPLY_BUF);
            "reject"
        }
        RxAction::None => {
            let consumed = drops(&after) - drops(&before);
            let relayed = after.get(dco_daemon::stats::Ctr::RecvCtrl)
                - before.get(dco_daemon::stats::Ctr::RecvCtrl);
            assert!(
                consumed + relayed >= 1,
                "a packet vanished without a counted reason"
            );
            "none"
        }
    }
}

fn sealed(s: &Scenario, inner: &[u8]) -> Vec<u8> {
    let mut buf = vec![0u8; DATA_V2_OVERHEAD + inner.len()];
    let n = s.seal_from_peer(inner, &mut buf);
    buf.truncate(n);
    buf
}

fn cipher() -> impl Strategy<Value = CipherKind> {
    prop::sample::select(CipherKind::ALL.to_vec())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Unauthenticated bytes at the UDP port.
    #[test]
    fn arbitrary_datagrams(c in cipher(), mut wire in prop::collection::vec(any::<u8>(), 0..1600)) {
        let s = Scenario::new(c);
        let kind = receive(&s, &mut wire);
        prop_assert!(kind == "none", "forged datagram accepted: {kind}");
    }

    /// Authenticated but arbitrary inner bytes from a known peer.
    #[test]
    fn arbitrary_inner_packets(c in cipher(), inner in prop::collection::vec(any::<u8>(), 0..1600)) {
        let s = Scenario::new(c);
        let mut wire = sealed(&s, &inner);
        receive(&s, &mut wire);
    }

    /// A valid TCP segment from the peer with a few bytes of its headers changed.
    #[test]
    fn mutated_tcp_segments(
        c in cipher(),
        payload in 0usize..1400,
        edits in prop::collection::vec((0usize..60, any::<u8>()), 1..6),
        cut in prop::option::of(0usize..1440),
    ) {
        let s = Scenario::new(c);
        let mut inner = tcp4([10, 8, 0, 2], [10, 8, 0, 1], 7, payload);
        for (at, v) in edits {
            if at < inner.len() {
                inner[at] = v;
            }
        }
        if let Some(n) = cut {
            inner.truncate(n);
        }
        let mut wire = sealed(&s, &inner);
        receive(&s, &mut wire);
    }

    /// Arbitrary packets read from the TUN device.
    #[test]
    fn arbitrary_tun_packets(c in cipher(), pkt in prop::collection::vec(any::<u8>(), 0..1600)) {
        let s = Scenario::new(c);
        let table = s.shared.table.load_full();
        let filter = s.shared.filter();
        let ctr = s.shared.counters.slot(3);
        let mut reply = vec![0u8; REPLY_BUF];
        let mut buf = vec![0u8; HEADROOM + pkt.len() + 64];
        buf[HEADROOM..HEADROOM + pkt.len()].copy_from_slice(&pkt);
        let before = drops(&s.shared.counters.snapshot());
        let mut tx = TxPath { shared: &s.shared, table: &table, filter: &filter, ctr, slot: 3, now: 1, reply: &mut reply };
        match tx.packet(&mut buf, pkt.len()) {
            TxAction::Udp(_, _, n) => prop_assert!(n <= buf.len()),
            TxAction::RejectToTun(n) => prop_assert!(n <= REPLY_BUF),
            TxAction::None => prop_assert!(drops(&s.shared.counters.snapshot()) > before, "TUN packet vanished uncounted"),
        }
    }
}

/// The same valid segment is delivered, then refused as a replay, and both are counted.
#[test]
fn valid_then_replayed() {
    for c in CipherKind::ALL {
        let s = Scenario::new(c);
        let inner = tcp4([10, 8, 0, 2], [10, 8, 0, 1], 1, 100);
        let wire = sealed(&s, &inner);
        assert_eq!(receive(&s, &mut wire.clone()), "tun", "{c}");
        assert_eq!(receive(&s, &mut wire.clone()), "none", "{c}");
        let snap = s.shared.counters.snapshot();
        assert_eq!(snap.crypto_dropped(crypto::DropReason::Replayed), 1, "{c}");
    }
}
