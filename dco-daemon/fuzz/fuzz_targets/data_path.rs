//! Peer and TUN bytes through the daemon's I/O-free receive and send paths. The first byte
//! picks the cipher and what the rest is: a raw datagram at the UDP port, an inner packet
//! sealed by the (authenticated) peer, or a packet read from the TUN device. Nothing may
//! panic, a forged datagram is never delivered, ranges stay inside the buffer, and a packet
//! the path consumes is counted.
#![no_main]

use crypto::{CipherKind, DATA_V2_OVERHEAD};
use dco_daemon::events::RateLimit;
use dco_daemon::filter::REPLY_BUF;
use dco_daemon::gro::TunWriter;
use dco_daemon::testkit::Scenario;
use dco_daemon::worker::{HEADROOM, RxAction, RxPath, TxAction, TxPath};
use libfuzzer_sys::fuzz_target;

fn drops(s: &Scenario) -> u64 {
    let snap = s.shared.counters.snapshot();
    snap.drop_reasons().iter().map(|(_, n)| n).sum::<u64>()
        + snap.get(dco_daemon::stats::Ctr::RecvCtrl)
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, body)) = data.split_first() else {
        return;
    };
    if body.len() > 9000 {
        return;
    }
    let s = Scenario::new(CipherKind::ALL[usize::from(sel % 3)]);
    let table = s.shared.table.load_full();
    let before = drops(&s);
    match (sel >> 2) % 3 {
        mode @ (0 | 1) => {
            let mut wire = if mode == 0 {
                body.to_vec()
            } else {
                let mut buf = vec![0u8; DATA_V2_OVERHEAD + body.len()];
                let n = s.seal_from_peer(body, &mut buf);
                buf.truncate(n);
                buf
            };
            let len = wire.len();
            let mut relay = RateLimit::new(1000, 100);
            let mut reply = vec![0u8; DATA_V2_OVERHEAD + REPLY_BUF];
            let mut rx = RxPath {
                shared: &s.shared,
                table: &table,
                ctr: s.shared.counters.slot(2),
                slot: 2,
                now: 1,
                relay: &mut relay,
                reply: &mut reply,
                local_port: 1194,
            };
            match rx.packet(&mut wire, s.peer_addr, None) {
                RxAction::Tun(r) => {
                    assert!(mode == 1, "forged datagram delivered");
                    assert!(r.start <= r.end && r.end <= len);
                    let mut tun = TunWriter::new(8);
                    tun.batch().push(&wire[r]);
                }
                RxAction::Udp(_, _, n) => assert!(mode == 1 && n <= len),
                RxAction::Reject(_, _, n) => assert!(n <= DATA_V2_OVERHEAD + REPLY_BUF),
                RxAction::None => assert!(drops(&s) > before, "consumed without a count"),
            }
        }
        _ => {
            let filter = s.shared.filter();
            let mut reply = vec![0u8; REPLY_BUF];
            let mut buf = vec![0u8; HEADROOM + body.len() + 64];
            buf[HEADROOM..HEADROOM + body.len()].copy_from_slice(body);
            let mut tx = TxPath {
                shared: &s.shared,
                table: &table,
                filter: &filter,
                ctr: s.shared.counters.slot(3),
                slot: 3,
                now: 1,
                reply: &mut reply,
            };
            match tx.packet(&mut buf, body.len()) {
                TxAction::Udp(_, _, n) => assert!(n <= buf.len()),
                TxAction::RejectToTun(n) => assert!(n <= REPLY_BUF),
                TxAction::None => assert!(drops(&s) > before, "consumed without a count"),
            }
        }
    }
});
