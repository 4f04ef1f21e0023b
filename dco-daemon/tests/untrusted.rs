//! Peer and TUN bytes through the data path: arbitrary datagrams, arbitrary (authenticated)
//! inner packets, mutated valid TCP segments and arbitrary TUN packets never panic, every
//! range handed back lies inside the buffer, and every packet the path consumes without
//! delivering is counted under a drop reason (the checks are `Scenario::receive`/`send`'s,
//! shared with the fuzz target `fuzz/fuzz_targets/data_path.rs`).

use crypto::CipherKind;
use dco_daemon::testkit::{Delivered, Scenario, tcp4};
use proptest::prelude::*;

fn cipher() -> impl Strategy<Value = CipherKind> {
    prop::sample::select(CipherKind::ALL.to_vec())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Unauthenticated bytes at the UDP port.
    #[test]
    fn arbitrary_datagrams(c in cipher(), mut wire in prop::collection::vec(any::<u8>(), 0..1600)) {
        let s = Scenario::new(c);
        let kind = s.receive(&mut wire);
        prop_assert_eq!(kind, Delivered::Consumed, "forged datagram accepted");
    }

    /// Authenticated but arbitrary inner bytes from a known peer.
    #[test]
    fn arbitrary_inner_packets(c in cipher(), inner in prop::collection::vec(any::<u8>(), 0..1600)) {
        let s = Scenario::new(c);
        s.receive(&mut s.sealed(&inner));
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
        s.receive(&mut s.sealed(&inner));
    }

    /// Arbitrary packets read from the TUN device.
    #[test]
    fn arbitrary_tun_packets(c in cipher(), pkt in prop::collection::vec(any::<u8>(), 0..1600)) {
        Scenario::new(c).send(&pkt);
    }
}

/// The same valid segment is delivered, then refused as a replay, and both are counted.
#[test]
fn valid_then_replayed() {
    for c in CipherKind::ALL {
        let s = Scenario::new(c);
        let wire = s.sealed(&tcp4([10, 8, 0, 2], [10, 8, 0, 1], 1, 100));
        assert_eq!(s.receive(&mut wire.clone()), Delivered::Tun, "{c}");
        assert_eq!(s.receive(&mut wire.clone()), Delivered::Consumed, "{c}");
        let snap = s.shared.counters.snapshot();
        assert_eq!(snap.crypto_dropped(crypto::DropReason::Replayed), 1, "{c}");
    }
}

/// The checks themselves bite: a valid segment to the TUN and a plain packet out to the peer
/// are delivered (so `Consumed` above is not the only possible answer).
#[test]
fn valid_traffic_is_delivered_both_ways() {
    for c in CipherKind::ALL {
        let s = Scenario::new(c);
        let wire = s.sealed(&tcp4([10, 8, 0, 2], [10, 8, 0, 1], 1, 1000));
        assert_eq!(s.receive(&mut wire.clone()), Delivered::Tun, "{c}");
        assert_eq!(
            s.send(&tcp4([10, 8, 0, 1], [10, 8, 0, 2], 1, 1000)),
            Delivered::Udp,
            "{c}"
        );
    }
}

/// `client-to-client` decides where a packet between two peers goes: re-encrypted for the
/// other peer inside the data path, or to the TUN device for the host to route (OpenVPN
/// without the option). The control process sets it with SET_IFMODE.
#[test]
fn client_to_client_switch() {
    for c in CipherKind::ALL {
        let s = Scenario::new(c);
        s.add_peer(2, "10.8.0.3", "192.0.2.11:40000".parse().unwrap());
        let to_other = tcp4([10, 8, 0, 2], [10, 8, 0, 3], 1, 100);
        s.shared
            .client_to_client
            .store(true, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(s.receive(&mut s.sealed(&to_other)), Delivered::Udp, "{c}");
        s.shared
            .client_to_client
            .store(false, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(s.receive(&mut s.sealed(&to_other)), Delivered::Tun, "{c}");
    }
}
