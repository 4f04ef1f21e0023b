//! Fragments: the first is tracked, later ones inherit its verdict or are invalid.

mod common;

use common::*;
use conntrack::build::{self, IpOpts};
use conntrack::{
    Config, Conntrack, CtState, DropReason, InvalidReason, PacketCtx, PeerRef, RuleSet, Timestamp,
    Verdict,
};
use std::net::IpAddr;

fn ctx(now: u64) -> PacketCtx<'static> {
    PacketCtx::from_peer(PeerRef::new(1, "alice"), Timestamp::from_millis(now))
}

/// A UDP datagram of `len` payload bytes split into fragments of `mtu_payload` bytes.
fn fragments(
    src: IpAddr,
    dst: IpAddr,
    id: u32,
    dport: u16,
    len: usize,
    chunk: usize,
) -> Vec<Vec<u8>> {
    let seg = build::udp_segment(src, dst, 5000, dport, &vec![7u8; len]);
    seg.chunks(chunk)
        .enumerate()
        .map(|(i, c)| {
            let off = (i * chunk) as u32;
            let more = (i + 1) * chunk < seg.len();
            build::ip(
                src,
                dst,
                17,
                c,
                &IpOpts {
                    id,
                    frag: Some((off, more)),
                    ext: vec![],
                },
            )
        })
        .collect()
}

#[test]
fn later_fragments_inherit_the_first_fragments_verdict() {
    let ct = Conntrack::new(Config::default()).unwrap();
    let (a, b) = (ip("10.8.0.2"), ip("192.0.2.9"));
    let frags = fragments(a, b, 4242, 9000, 3000, 1480);
    assert_eq!(frags.len(), 3);
    let o = ct.track_detailed(&frags[0], &ctx(0));
    assert_eq!((o.state, o.verdict), (CtState::New, Verdict::Accept));
    for f in &frags[1..] {
        let o = ct.track_detailed(f, &ctx(1));
        assert_eq!((o.state, o.verdict), (CtState::New, Verdict::Accept));
        assert_eq!(
            o.conn_id,
            ct.dump(Timestamp::from_millis(1)).first().map(|e| e.id)
        );
    }
    let e = &ct.dump(Timestamp::from_millis(1))[0];
    // One packet, and the bytes of the reassembled datagram (20 + 8 + 3000).
    assert_eq!((e.orig_packets, e.orig_bytes), (1, 3028));
    let s = ct.stats().total;
    assert_eq!((s.frag_first, s.frag_matched), (1, 2));
}

#[test]
fn ipv6_fragments_count_like_reassembly() {
    let ct = Conntrack::new(Config::default()).unwrap();
    let (a, b) = (ip("fd00:8::2"), ip("2001:db8::9"));
    let seg = build::udp_segment(a, b, 5000, 9000, &[1u8; 2000]);
    let f1 = build::ip(
        a,
        b,
        17,
        &seg[..1232],
        &IpOpts {
            id: 99,
            frag: Some((0, true)),
            ext: vec![],
        },
    );
    let f2 = build::ip(
        a,
        b,
        17,
        &seg[1232..],
        &IpOpts {
            id: 99,
            frag: Some((1232, false)),
            ext: vec![],
        },
    );
    assert_eq!(ct.track(&f1, &ctx(0)), Verdict::Accept);
    assert_eq!(ct.track(&f2, &ctx(0)), Verdict::Accept);
    let e = &ct.dump(Timestamp::from_millis(0))[0];
    assert_eq!(e.orig_bytes, 40 + 2008);
}

#[test]
fn later_fragment_without_first_is_invalid() {
    let ct = Conntrack::with_rules(
        Config::default(),
        RuleSet::parse("ct state invalid drop").unwrap(),
    )
    .unwrap();
    let (a, b) = (ip("10.8.0.2"), ip("192.0.2.9"));
    let frags = fragments(a, b, 1, 9000, 3000, 1480);
    let o = ct.track_detailed(&frags[1], &ctx(0));
    assert_eq!(o.invalid, Some(InvalidReason::FragmentUnmatched));
    assert!(matches!(o.verdict, Verdict::Drop(DropReason::Rule { .. })));
    // Another datagram's id does not match either.
    ct.track(&frags[0], &ctx(1));
    let other = fragments(a, b, 2, 9000, 3000, 1480);
    assert_eq!(
        ct.track_detailed(&other[1], &ctx(2)).invalid,
        Some(InvalidReason::FragmentUnmatched)
    );
}

#[test]
fn fragments_of_a_dropped_first_fragment_are_dropped() {
    let rules = RuleSet::parse("policy drop\nudp dport 53 accept").unwrap();
    let ct = Conntrack::with_rules(Config::default(), rules).unwrap();
    let frags = fragments(ip("10.8.0.2"), ip("192.0.2.9"), 7, 9000, 3000, 1480);
    assert_eq!(
        ct.track(&frags[0], &ctx(0)),
        Verdict::Drop(DropReason::Policy)
    );
    assert_eq!(
        ct.track(&frags[1], &ctx(0)),
        Verdict::Drop(DropReason::Policy)
    );
    assert!(ct.is_empty());
}

#[test]
fn overlapping_the_transport_header_is_invalid() {
    let ct = Conntrack::new(Config::default()).unwrap();
    let (a, b) = (ip("10.8.0.2"), ip("192.0.2.80"));
    let syn = build::Tcp {
        sport: 1,
        dport: 80,
        seq: 1,
        flags: SYN,
        win: 100,
        payload: vec![0; 40],
        ..Default::default()
    }
    .segment(a, b);
    let first = build::ip(
        a,
        b,
        6,
        &syn[..24],
        &IpOpts {
            id: 5,
            frag: Some((0, true)),
            ext: vec![],
        },
    );
    // RFC 1858: a fragment at offset 8 rewriting the TCP flags.
    let evil = build::ip(
        a,
        b,
        6,
        &[0x12; 16],
        &IpOpts {
            id: 5,
            frag: Some((8, false)),
            ext: vec![],
        },
    );
    ct.track(&first, &ctx(0));
    let o = ct.track_detailed(&evil, &ctx(0));
    assert_eq!(o.invalid, Some(InvalidReason::FragmentOverlapsHeader));
}

#[test]
fn tiny_first_fragment_is_invalid_and_its_followers_too() {
    let ct = Conntrack::new(Config::default()).unwrap();
    let (a, b) = (ip("10.8.0.2"), ip("192.0.2.80"));
    let syn = build::Tcp {
        sport: 1,
        dport: 80,
        seq: 1,
        flags: SYN,
        win: 100,
        ..Default::default()
    }
    .segment(a, b);
    let first = build::ip(
        a,
        b,
        6,
        &syn[..8],
        &IpOpts {
            id: 6,
            frag: Some((0, true)),
            ext: vec![],
        },
    );
    let rest = build::ip(
        a,
        b,
        6,
        &syn[8..],
        &IpOpts {
            id: 6,
            frag: Some((8, false)),
            ext: vec![],
        },
    );
    assert_eq!(
        ct.track_detailed(&first, &ctx(0)).invalid,
        Some(InvalidReason::FirstFragmentTooShort)
    );
    assert_eq!(
        ct.track_detailed(&rest, &ctx(0)).invalid,
        Some(InvalidReason::FragmentUnmatched)
    );
    assert!(ct.is_empty());
}

#[test]
fn fragment_records_expire() {
    let ct = Conntrack::new(Config::default()).unwrap();
    let frags = fragments(ip("10.8.0.2"), ip("192.0.2.9"), 8, 9000, 3000, 1480);
    ct.track(&frags[0], &ctx(0));
    let o = ct.track_detailed(&frags[1], &ctx(31_000));
    assert_eq!(o.invalid, Some(InvalidReason::FragmentUnmatched));
}

#[test]
fn fragment_table_is_bounded() {
    let cfg = Config {
        frag: conntrack::FragConfig {
            max_entries: 64,
            timeout: 30,
        },
        shards: Some(1),
        ..Config::default()
    };
    let ct = Conntrack::new(cfg).unwrap();
    for id in 0..200 {
        let f = fragments(ip("10.8.0.2"), ip("192.0.2.9"), id, 9000, 3000, 1480);
        ct.track(&f[0], &ctx(u64::from(id)));
    }
    let s = ct.stats().total;
    assert_eq!(s.frag_first, 200);
    assert_eq!(s.frag_evicted, 200 - 64);
    // The newest records survive.
    let f = fragments(ip("10.8.0.2"), ip("192.0.2.9"), 199, 9000, 3000, 1480);
    assert_eq!(ct.track_detailed(&f[1], &ctx(300)).invalid, None);
}
