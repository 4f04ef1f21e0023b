//! Peer and TUN bytes through the daemon's I/O-free receive and send paths. The first byte
//! picks the cipher and what the rest is: a raw datagram at the UDP port, an inner packet
//! sealed by the (authenticated) peer, or a packet read from the TUN device. Nothing may
//! panic, a forged datagram is never delivered, and `Scenario::receive`/`send` check that
//! ranges stay inside the buffer and that a consumed packet is counted.
#![no_main]

use crypto::CipherKind;
use dco_daemon::testkit::{Delivered, Scenario};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, body)) = data.split_first() else {
        return;
    };
    if body.len() > 9000 {
        return;
    }
    let s = Scenario::new(CipherKind::ALL[usize::from(sel % 3)]);
    match (sel >> 2) % 3 {
        0 => {
            let got = s.receive(&mut body.to_vec());
            assert_eq!(got, Delivered::Consumed, "forged datagram delivered");
        }
        1 => {
            s.receive(&mut s.sealed(body));
        }
        _ => {
            s.send(body);
        }
    }
});
