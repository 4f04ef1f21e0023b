//! Fuzz the control packet parser, every unwrap mode, and the reliability layer behind them.
//!
//! Byte 0 of the input picks the mode; the rest is either a raw datagram (even modes) or a
//! cleartext packet that is sealed first so the fuzzer reaches past authentication (odd
//! modes).
#![no_main]

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;

use control::packet;
use control::reliable::{ReliableConfig, ReliableLayer};
use control::static_key::{KeyDirection, StaticKey};
use control::wrap::{AuthDigest, ControlWrap, ReplayId, Role, WrapKeys};

fn wraps() -> &'static [(WrapKeys, WrapKeys)] {
    static W: OnceLock<Vec<(WrapKeys, WrapKeys)>> = OnceLock::new();
    W.get_or_init(|| {
        let mut b = [0u8; 256];
        for (i, x) in b.iter_mut().enumerate() {
            *x = (i as u8) ^ 0x5c;
        }
        let k = StaticKey::from_bytes(&b);
        vec![
            (WrapKeys::none(), WrapKeys::none()),
            (
                WrapKeys::tls_auth(&k, KeyDirection::Inverse, AuthDigest::Sha1),
                WrapKeys::tls_auth(&k, KeyDirection::Normal, AuthDigest::Sha1),
            ),
            (
                WrapKeys::tls_auth(&k, KeyDirection::Inverse, AuthDigest::Sha512),
                WrapKeys::tls_auth(&k, KeyDirection::Normal, AuthDigest::Sha512),
            ),
            (WrapKeys::tls_crypt(&k, Role::Client), WrapKeys::tls_crypt(&k, Role::Server)),
        ]
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let (client, server) = &wraps()[usize::from(sel >> 1) % wraps().len()];
    let _ = packet::peek(rest);
    let mut scratch = Vec::new();
    let mut sealed = Vec::new();
    let datagram: &[u8] = if sel & 1 == 0 {
        rest
    } else {
        // Structure-aware: treat the input as cleartext and seal it.
        match packet::parse(rest) {
            Ok(p) if p.validate_for_send().is_ok() => {
                let rid = ReplayId { packet_id: 1, time: 7 };
                if client.seal(&p, Some(rid), &mut sealed).is_err() {
                    return;
                }
                &sealed
            }
            _ => return,
        }
    };
    // Stateless open and stateful unwrap must agree on authenticity.
    let stateless_ok = server.open(datagram, &mut scratch).is_ok();
    let mut ctx = ControlWrap::new(server.clone(), 0);
    let now = Instant::now();
    let mut scratch2 = Vec::new();
    let opened = ctx.unwrap(now, datagram, &mut scratch2);
    assert_eq!(stateless_ok, opened.is_ok());
    let Ok(o) = opened else { return };
    let p = o.packet;
    if sel & 1 == 1 {
        // What we sealed opens to exactly what we parsed.
        assert_eq!(Ok(p), packet::parse(rest));
    }
    if let Some(tlvs) = p.reset_tlvs() {
        tlvs.for_each(drop);
    }
    // Feed it through a reliability layer and drain everything.
    let mut rel = ReliableLayer::new(ReliableConfig::default()).expect("default config");
    let _ = rel.send_reset(packet::Opcode::HardResetServerV2);
    let _ = rel.on_packet(&p);
    let mut sink = Vec::new();
    rel.read_tls_to_end(&mut sink);
    let later = now + Duration::from_secs(3);
    for t in [now, later] {
        while let Some(tx) = rel.poll_transmit(t) {
            let pkt = tx.to_packet(p.key_id, p.session_id, Some(p.session_id));
            let mut buf = vec![0u8; pkt.encoded_len()];
            pkt.encode(&mut buf).expect("layer output encodes");
        }
    }
});
