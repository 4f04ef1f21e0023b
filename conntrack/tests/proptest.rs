//! Property tests: parsers never panic, random traffic never breaks the
//! table's invariants, the rules listing parses back to the same rules.

mod common;

use common::ip;
use conntrack::build::{self, IpOpts, Tcp};
use conntrack::packet::{self, L4};
use conntrack::{
    BatchItem, Config, Conntrack, IcmpxCode, PacketCtx, PeerRef, REJECT_BUF_LEN, RejectKind,
    RuleSet, Timestamp, build_reject,
};
use proptest::prelude::*;
use std::net::IpAddr;

/// A valid packet of some kind, from a small universe of endpoints so flows collide.
fn arb_packet() -> impl Strategy<Value = Vec<u8>> {
    let v4 = prop_oneof![Just("10.8.0.2"), Just("10.8.0.3"), Just("192.0.2.1")];
    let v6 = prop_oneof![Just("fd00::2"), Just("fd00::3"), Just("2001:db8::1")];
    let addrs = prop_oneof![
        (v4.clone(), v4).prop_map(|(a, b)| (ip(a), ip(b))),
        (v6.clone(), v6).prop_map(|(a, b)| (ip(a), ip(b))),
    ];
    let port = prop_oneof![
        Just(22u16),
        Just(80),
        Just(40000),
        Just(40001),
        any::<u16>()
    ];
    let seqn = prop_oneof![
        Just(1000u32),
        Just(1001),
        Just(5000),
        Just(5001),
        any::<u32>()
    ];
    (
        addrs,
        0u8..8,
        port.clone(),
        port,
        seqn.clone(),
        seqn,
        any::<u8>(),
        any::<u16>(),
        0usize..64,
        any::<u8>(),
    )
        .prop_map(
            |((s, d), kind, sp, dp, seq, ack, flags, win, len, b)| match kind {
                0..=2 => Tcp {
                    sport: sp,
                    dport: dp,
                    seq,
                    ack,
                    flags,
                    win,
                    options: if b & 1 == 1 {
                        vec![1, 3, 3, b % 16]
                    } else {
                        vec![]
                    },
                    payload: vec![b; len],
                }
                .packet(s, d),
                3 => build::udp(s, d, sp, dp, &vec![b; len]),
                4 => {
                    if b & 1 == 0 {
                        build::echo_request(s, d, sp, dp)
                    } else {
                        build::echo_reply(s, d, sp, dp)
                    }
                }
                5 => {
                    let q = build::udp(d, s, dp, sp, b"quoted");
                    let t = if s.is_ipv4() { 3 } else { 1 };
                    build::icmp_error(s, d, t, b % 5, &q)
                }
                6 => {
                    let seg = build::udp_segment(s, d, sp, dp, &[b; 64]);
                    let off = u32::from(b & 0x3f) * 8;
                    let body = if off == 0 { &seg[..] } else { &seg[8..] };
                    build::ip(
                        s,
                        d,
                        17,
                        body,
                        &IpOpts {
                            id: u32::from(sp % 4),
                            frag: Some((off, b & 0x40 != 0)),
                            ext: vec![],
                        },
                    )
                }
                _ => build::ip(s, d, 47, &vec![b; len], &IpOpts::default()),
            },
        )
}

/// A valid packet with a few bytes overwritten.
fn arb_mutated() -> impl Strategy<Value = Vec<u8>> {
    (
        arb_packet(),
        prop::collection::vec((any::<usize>(), any::<u8>()), 0..4),
    )
        .prop_map(|(mut p, m)| {
            let n = p.len();
            for (i, v) in m {
                p[i % n] = v;
            }
            p
        })
}

fn ctx(i: usize, now: u64) -> PacketCtx<'static> {
    const PEERS: [PeerRef<'static>; 2] = [PeerRef::new(1, "alice"), PeerRef::new(2, "bob")];
    match i % 3 {
        0 => PacketCtx::from_peer(PEERS[0], Timestamp::from_millis(now)),
        1 => PacketCtx::to_peer(PEERS[1], Timestamp::from_millis(now)),
        _ => PacketCtx::between_peers(PEERS[0], PEERS[1], Timestamp::from_millis(now)),
    }
}

const RULES: &str = r#"
policy drop
ct state established,related accept
ct state invalid drop
from-peer cn "alice" tcp dport { 22, 80 } accept
between-peers reject
icmp type echo-request accept
icmpv6 type echo-request accept
udp dport 40000-40001 reject with icmpx admin-prohibited
meta l4proto gre accept
"#;

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn parser_never_panics_on_bytes(b in prop::collection::vec(any::<u8>(), 0..200)) {
        let _ = packet::parse(&b);
    }

    #[test]
    fn parser_never_panics_on_mutated_packets(p in arb_mutated()) {
        if let Ok(pk) = packet::parse(&p) {
            prop_assert!(pk.bytes().len() <= p.len());
            prop_assert!(pk.l4_offset() <= pk.bytes().len());
            let _ = pk.tcp_options();
        }
    }

    #[test]
    fn valid_packets_parse(p in arb_packet()) {
        let pk = packet::parse(&p).expect("built packets parse");
        prop_assert_eq!(pk.bytes().len(), p.len());
        if pk.proto == 6 {
            prop_assert!(matches!(pk.l4, L4::Tcp(_) | L4::Invalid(_) | L4::Fragment));
        }
    }

    #[test]
    fn random_traffic_keeps_table_invariants(
        pkts in prop::collection::vec((arb_mutated(), 0u64..5000), 1..120),
        max in 1usize..40,
    ) {
        let cfg = Config { max_entries: max, shards: Some(4), ..Config::default() };
        let ct = Conntrack::with_rules(cfg, RuleSet::parse(RULES).unwrap()).unwrap();
        let sub = ct.subscribe(1000);
        let mut now = 0u64;
        let mut buf = [0u8; REJECT_BUF_LEN];
        for (i, (p, dt)) in pkts.iter().enumerate() {
            now += dt;
            let o = ct.track_detailed(p, &ctx(i, now));
            prop_assert!(ct.len() <= max);
            if let conntrack::Verdict::Reject(k) = o.verdict {
                let n = build_reject(p, k, &mut buf).expect("reject verdicts can be answered");
                prop_assert!(packet::parse(&buf[..n]).is_ok());
            }
            if i % 17 == 0 {
                ct.gc_slice(Timestamp::from_millis(now), 8);
            }
        }
        let dump = ct.dump(Timestamp::from_millis(0));
        prop_assert_eq!(dump.len(), ct.len());
        let s = ct.stats().total;
        let destroyed = s.early_drop + s.expired + s.closed + s.flushed;
        prop_assert_eq!(s.insert - destroyed, ct.len() as u64);
        // Every insert and destroy produced an event (none missed with room for 1000).
        let mut ev = Vec::new();
        sub.drain_into(&mut ev);
        let news = ev.iter().filter(|e| e.kind == conntrack::EventKind::New).count() as u64;
        let gone = ev.iter().filter(|e| e.kind == conntrack::EventKind::Destroy).count() as u64;
        prop_assert_eq!((news, gone), (s.insert, destroyed));
        for e in &dump {
            let _ = e.to_string();
        }
    }

    #[test]
    fn tcp_exchanges_never_break(
        segs in prop::collection::vec((any::<bool>(), 0u8..6, -70_000i64..70_000, -70_000i64..70_000, 0usize..1500, any::<u16>()), 1..60),
        liberal in any::<bool>(),
    ) {
        let mut cfg = Config::default();
        cfg.tcp.liberal = liberal;
        let ct = Conntrack::new(cfg).unwrap();
        let (c, s): (IpAddr, IpAddr) = (ip("10.8.0.2"), ip("192.0.2.1"));
        let flag_sets = [0x02u8, 0x12, 0x10, 0x11, 0x04, 0x14];
        let (mut cseq, mut sseq) = (1000u32, 5000u32);
        for (i, (from_c, f, dseq, dack, len, win)) in segs.into_iter().enumerate() {
            let flags = flag_sets[usize::from(f)];
            let (src, dst, sp, dp, seq, ack) = if from_c {
                (c, s, 40000, 22, cseq, sseq)
            } else {
                (s, c, 22, 40000, sseq, cseq)
            };
            let p = Tcp {
                sport: sp, dport: dp,
                seq: seq.wrapping_add(dseq as u32),
                ack: ack.wrapping_add(dack as u32),
                flags, win, payload: vec![0; len], ..Tcp::default()
            }.packet(src, dst);
            let o = ct.track_detailed(&p, &ctx(if from_c { 0 } else { 1 }, i as u64 * 10));
            prop_assert!(ct.len() <= 1);
            if o.invalid.is_none() {
                if from_c { cseq = cseq.wrapping_add(len as u32) } else { sseq = sseq.wrapping_add(len as u32) }
            }
        }
    }

    #[test]
    fn reject_builder_never_panics(p in arb_mutated(), code in 0u8..5, small in 0usize..100) {
        let kind = match code {
            0 => RejectKind::TcpReset,
            1 => RejectKind::Icmp(IcmpxCode::PortUnreachable),
            2 => RejectKind::Icmp(IcmpxCode::HostUnreachable),
            3 => RejectKind::Icmp(IcmpxCode::NoRoute),
            _ => RejectKind::Icmp(IcmpxCode::AdminProhibited),
        };
        let mut buf = vec![0u8; if code == 4 { small } else { REJECT_BUF_LEN }];
        if let Ok(n) = build_reject(&p, kind, &mut buf) {
            prop_assert!(n <= buf.len());
            prop_assert!(packet::parse(&buf[..n]).is_ok());
        }
    }

    #[test]
    fn rules_parser_never_panics_on_text(s in "\\PC{0,200}") {
        let _ = RuleSet::parse(&s);
    }

    #[test]
    fn rules_parser_never_panics_on_token_soup(words in prop::collection::vec(prop_oneof![
        Just("ct"), Just("state"), Just("new,established"), Just("{"), Just("}"), Just(","),
        Just("!="), Just("=="), Just("ip"), Just("ip6"), Just("saddr"), Just("10.0.0.0/8"),
        Just("fd00::/8"), Just("tcp"), Just("udp"), Just("dport"), Just("22"), Just("1-2"),
        Just("from-peer"), Just("to-peer"), Just("cn"), Just("\"a\""), Just("peer-id"),
        Just("accept"), Just("drop"), Just("reject"), Just("with"), Just("icmpx"),
        Just("policy"), Just("icmp"), Just("type"), Just("echo-request"), Just("#"),
        Just("\n"), Just("flags"), Just("syn"), Just("/"), Just("meta"), Just("l4proto"),
    ], 0..30)) {
        let text = words.join(" ");
        match RuleSet::parse(&text) {
            Ok(rs) => {
                let again = RuleSet::parse(&rs.to_string()).expect("listing parses back");
                prop_assert_eq!(again.rules(), rs.rules());
                prop_assert_eq!(again.policy(), rs.policy());
            }
            Err(e) => {
                prop_assert!(e.line >= 1 && e.col >= 1);
                prop_assert!(!e.msg.is_empty());
            }
        }
    }

    #[test]
    fn generated_rules_round_trip(
        rules in prop::collection::vec((
            prop::option::of(prop::sample::subsequence(vec!["new", "established", "related", "invalid", "untracked"], 1..3)),
            prop::option::of((any::<bool>(), any::<[u8; 4]>(), 0u32..=32)),
            prop::option::of((prop_oneof![Just("tcp"), Just("udp")], any::<bool>(), any::<u16>(), 0u16..100)),
            prop::option::of(prop_oneof![Just("from-peer cn \"a b\""), Just("to-peer peer-id 5-9"), Just("between-peers"), Just("from-host")]),
            prop_oneof![Just("accept"), Just("drop"), Just("reject"), Just("counter"), Just("reject with icmpx no-route")],
        ), 0..10),
        drop_policy in any::<bool>(),
    ) {
        let mut text = String::from(if drop_policy { "policy drop\n" } else { "" });
        for (st, addr, port, path, action) in &rules {
            let mut line = String::new();
            if let Some(st) = st {
                line += &format!("ct state {} ", st.join(","));
            }
            if let Some((neg, a, len)) = addr {
                let mask = if *len == 0 { 0 } else { u32::MAX << (32 - len) };
                let net = std::net::Ipv4Addr::from(u32::from_be_bytes(*a) & mask);
                line += &format!("ip saddr {}{net}/{len} ", if *neg { "!= " } else { "" });
            }
            if let Some((p, neg, lo, span)) = port {
                let hi = lo.saturating_add(*span);
                line += &format!("{p} dport {}{{ {lo}-{hi}, 7 }} ", if *neg { "!= " } else { "" });
            }
            if let Some(path) = path {
                line += path;
                line += " ";
            }
            line += action;
            text += &line;
            text += "\n";
        }
        let rs = RuleSet::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        prop_assert_eq!(rs.len(), rules.len());
        let again = RuleSet::parse(&rs.to_string()).unwrap();
        prop_assert_eq!(again.rules(), rs.rules());
        prop_assert_eq!(again.policy(), rs.policy());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]
    #[test]
    fn batch_tracking_equals_sequential_tracking(
        pkts in prop::collection::vec(arb_mutated(), 1..100),
    ) {
        // Both trackers start with the same 20000 unrelated flows so the batch
        // takes its prefetching path (small tables are tracked one by one).
        let filler: Vec<Vec<u8>> = (0..20_000u32)
            .map(|i| build::udp(IpAddr::from([10, 99, (i >> 8) as u8, i as u8]), ip("192.0.2.99"), 1, 2, b""))
            .collect();
        let mk = || {
            let cfg = Config { max_entries: 20_100, shards: Some(64), ..Config::default() };
            let ct = Conntrack::with_rules(cfg, RuleSet::parse(RULES).unwrap()).unwrap();
            let c = PacketCtx::from_peer(PeerRef::new(1, "alice"), Timestamp::from_millis(0));
            for f in &filler {
                ct.track(f, &c);
            }
            ct
        };
        let (seq, bat) = (mk(), mk());
        let ctxs: Vec<PacketCtx<'static>> = (0..pkts.len()).map(|i| ctx(i, i as u64 * 100)).collect();
        let want: Vec<_> = pkts.iter().zip(&ctxs).map(|(p, c)| seq.track(p, c)).collect();
        let items: Vec<BatchItem<'_>> = pkts.iter().zip(&ctxs).map(|(p, c)| BatchItem { pkt: p, ctx: *c }).collect();
        let mut got = vec![conntrack::Verdict::Accept; items.len()];
        bat.track_batch(&items, &mut got);
        prop_assert_eq!(got, want);
        let strip = |mut v: Vec<conntrack::ConnSnapshot>| {
            for e in &mut v { e.id = 0; }
            v.sort_by_key(|e| format!("{e}"));
            v
        };
        let now = Timestamp::from_millis(pkts.len() as u64 * 100);
        prop_assert_eq!(strip(bat.dump(now)), strip(seq.dump(now)));
        let (a, b) = (seq.stats().total, bat.stats().total);
        prop_assert_eq!(a, b);
    }
}
