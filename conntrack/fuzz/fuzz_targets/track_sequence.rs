//! Sequences of arbitrary packets through a small tracker with rules:
//! never panics, never exceeds its bound. Input: records of
//! [len_hi, len_lo, ctx byte, time step] followed by `len` packet bytes.
#![no_main]

use conntrack::{Config, Conntrack, PacketCtx, PeerRef, RuleSet, Timestamp};
use libfuzzer_sys::fuzz_target;

const RULES: &str = "policy drop\nct state established,related accept\nct state invalid drop\nfrom-peer cn \"a\" accept\nbetween-peers tcp dport 80 reject\nicmp type echo-request accept\n";

fuzz_target!(|data: &[u8]| {
    let cfg = Config { max_entries: 16, shards: Some(2), ..Config::default() };
    let ct = Conntrack::with_rules(cfg, RuleSet::parse(RULES).unwrap()).unwrap();
    let (a, b) = (PeerRef::new(1, "a"), PeerRef::new(2, "b"));
    let mut rest = data;
    let mut now = 0u64;
    while rest.len() >= 4 {
        let len = usize::from(u16::from_be_bytes([rest[0], rest[1]])).min(rest.len() - 4);
        let sel = rest[2];
        now += u64::from(rest[3]) * 500;
        let pkt = &rest[4..4 + len];
        rest = &rest[4 + len..];
        let t = Timestamp::from_millis(now);
        let ctx = match sel % 3 {
            0 => PacketCtx::from_peer(a, t),
            1 => PacketCtx::to_peer(b, t),
            _ => PacketCtx::between_peers(a, b, t),
        };
        let _ = ct.track_detailed(pkt, &ctx);
        assert!(ct.len() <= 16);
        if sel & 0x80 != 0 {
            ct.gc_slice(t, 4);
        }
    }
    assert_eq!(ct.dump(Timestamp::from_millis(0)).len(), ct.len());
});
