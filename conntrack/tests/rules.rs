//! Rules: matching on state, addresses, ports, ICMP, peers and paths;
//! verdicts, reject replies, counters and atomic replacement.

mod common;

use common::*;
use conntrack::build::{self, Tcp};
use conntrack::{
    Config, Conntrack, CtState, DropReason, IcmpxCode, PacketCtx, PeerRef, REJECT_BUF_LEN,
    RejectError, RejectKind, RuleSet, Timestamp, Verdict, build_reject,
};
use std::net::IpAddr;

const EXAMPLE: &str = r#"
policy drop
ct state established,related accept
ct state invalid drop
from-peer cn "alice" ip daddr 10.8.0.0/24 tcp dport 22 accept
between-peers tcp dport 80 reject
icmp type echo-request accept
"#;

const ALICE: PeerRef<'static> = PeerRef::new(1, "alice");
const BOB: PeerRef<'static> = PeerRef::new(2, "bob");

fn t(ms: u64) -> Timestamp {
    Timestamp::from_millis(ms)
}

fn syn(src: &str, dst: &str, dport: u16) -> Vec<u8> {
    Tcp {
        sport: 40000,
        dport,
        seq: 1,
        flags: SYN,
        win: 1000,
        ..Default::default()
    }
    .packet(ip(src), ip(dst))
}

fn tracker(rules: &str) -> Conntrack {
    Conntrack::with_rules(Config::default(), RuleSet::parse(rules).expect("rules")).expect("config")
}

#[test]
fn example_ruleset_behaves() {
    let ct = tracker(EXAMPLE);
    // alice may ssh into 10.8.0.0/24 ...
    let p = syn("10.8.0.2", "10.8.0.5", 22);
    let o = ct.track_detailed(&p, &PacketCtx::between_peers(ALICE, BOB, t(0)));
    assert_eq!((o.verdict, o.rule), (Verdict::Accept, Some(2)));
    // ... and the reply is established.
    let r = Tcp {
        sport: 22,
        dport: 40000,
        seq: 9,
        ack: 2,
        flags: SYN | ACK,
        win: 1000,
        ..Default::default()
    }
    .packet(ip("10.8.0.5"), ip("10.8.0.2"));
    let o = ct.track_detailed(&r, &PacketCtx::between_peers(BOB, ALICE, t(1)));
    assert_eq!(
        (o.verdict, o.state, o.rule),
        (Verdict::Accept, CtState::Established, Some(0))
    );
    // bob may not.
    let p = syn("10.8.0.3", "10.8.0.5", 22);
    let v = ct.track(&p, &PacketCtx::between_peers(BOB, ALICE, t(2)));
    assert_eq!(v, Verdict::Drop(DropReason::Policy));
    // Client-to-client HTTP is rejected with a RST.
    let p = syn("10.8.0.3", "10.8.0.2", 80);
    assert_eq!(
        ct.track(&p, &PacketCtx::between_peers(BOB, ALICE, t(3))),
        Verdict::Reject(RejectKind::TcpReset)
    );
    // The same port from the host side is not between peers: policy.
    let p = syn("192.0.2.1", "10.8.0.2", 80);
    assert_eq!(
        ct.track(&p, &PacketCtx::to_peer(ALICE, t(4))),
        Verdict::Drop(DropReason::Policy)
    );
    // Pings are fine, other ICMP not.
    let p = build::echo_request(ip("10.8.0.3"), ip("192.0.2.1"), 1, 1);
    assert_eq!(
        ct.track(&p, &PacketCtx::from_peer(BOB, t(5))),
        Verdict::Accept
    );
    // Invalid packets are dropped by rule 1.
    let p = Tcp {
        sport: 1,
        dport: 2,
        flags: SYN | FIN,
        ..Default::default()
    }
    .packet(ip("10.8.0.3"), ip("192.0.2.1"));
    assert_eq!(
        ct.track(&p, &PacketCtx::from_peer(BOB, t(6))),
        Verdict::Drop(DropReason::Rule { index: 1, line: 4 })
    );
    // Rejected and dropped new connections leave no entry.
    assert_eq!(ct.len(), 2);
}

#[test]
fn per_rule_counters_and_listing() {
    let ct = tracker(EXAMPLE);
    for i in 0..3 {
        let p = build::echo_request(ip("10.8.0.3"), ip("192.0.2.1"), i, 1);
        ct.track(&p, &PacketCtx::from_peer(BOB, t(0)));
    }
    let p = udp("10.8.0.3", "192.0.2.1", 1, 2, 10);
    ct.track(&p, &PacketCtx::from_peer(BOB, t(0)));
    let rules = ct.rules();
    assert_eq!(rules.counters(4).packets, 3);
    assert_eq!(rules.counters(4).bytes, 3 * 36);
    assert_eq!(rules.policy_counters().packets, 1);
    let listing = rules.to_string();
    assert!(
        listing.contains("icmp type echo-request accept  # line 7: packets 3 bytes 108"),
        "{listing}"
    );
    assert!(
        listing.starts_with("policy drop  # packets 1 bytes 38"),
        "{listing}"
    );
    // The listing parses back to the same rules.
    assert_eq!(*RuleSet::parse(&listing).unwrap().rules(), *rules.rules());
}

#[test]
fn counters_are_summed_over_threads() {
    let ct = std::sync::Arc::new(tracker("udp dport 9 accept"));
    let hs: Vec<_> = (0..4)
        .map(|i| {
            let ct = ct.clone();
            std::thread::spawn(move || {
                for j in 0..250u16 {
                    let p = udp("10.8.0.2", "192.0.2.1", 1000 + i * 250 + j, 9, 0);
                    ct.track(&p, &PacketCtx::from_peer(ALICE, t(0)));
                }
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    assert_eq!(ct.rules().counters(0).packets, 1000);
    let s = ct.stats();
    assert_eq!(s.total.insert, 1000);
    assert!(s.per_cpu.len() >= 2, "{s:?}");
}

#[test]
fn peer_identity_and_paths() {
    let ct = tracker(
        r#"policy drop
        from-peer cn { "alice", "carol" } to-host udp dport 53 accept
        from-peer peer-id 100-199 accept
        to-peer cn "bob" tcp dport 25 accept
        from-host icmp type echo-request accept
        from-peer cn != "alice" udp dport 123 accept
        "#,
    );
    let dns = udp("10.8.0.2", "192.0.2.53", 1000, 53, 0);
    assert_eq!(
        ct.track(&dns, &PacketCtx::from_peer(ALICE, t(0))),
        Verdict::Accept
    );
    let dns2 = udp("10.8.0.3", "192.0.2.53", 1001, 53, 0);
    assert!(matches!(
        ct.track(&dns2, &PacketCtx::from_peer(BOB, t(0))),
        Verdict::Drop(_)
    ));
    // to-host: alice's DNS to another peer is not allowed by rule 0.
    let dns3 = udp("10.8.0.2", "10.8.0.3", 1002, 53, 0);
    assert!(matches!(
        ct.track(&dns3, &PacketCtx::between_peers(ALICE, BOB, t(0))),
        Verdict::Drop(_)
    ));
    // Peer ids 100-199 may do anything.
    let any = udp("10.8.0.150", "192.0.2.1", 1, 2, 0);
    assert_eq!(
        ct.track(&any, &PacketCtx::from_peer(PeerRef::new(150, "x"), t(0))),
        Verdict::Accept
    );
    assert!(matches!(
        ct.track(&any, &PacketCtx::from_peer(PeerRef::new(200, "x"), t(0))),
        Verdict::Drop(_)
    ));
    // Mail to bob from the host.
    let smtp = syn("192.0.2.25", "10.8.0.3", 25);
    assert_eq!(
        ct.track(&smtp, &PacketCtx::to_peer(BOB, t(0))),
        Verdict::Accept
    );
    assert!(matches!(
        ct.track(
            &syn("192.0.2.25", "10.8.0.2", 25),
            &PacketCtx::to_peer(ALICE, t(0))
        ),
        Verdict::Drop(_)
    ));
    // Host pings peers, peers do not ping out.
    let ping = build::echo_request(ip("192.0.2.1"), ip("10.8.0.2"), 1, 1);
    assert_eq!(
        ct.track(&ping, &PacketCtx::to_peer(ALICE, t(0))),
        Verdict::Accept
    );
    let ping = build::echo_request(ip("10.8.0.2"), ip("192.0.2.1"), 1, 1);
    assert!(matches!(
        ct.track(&ping, &PacketCtx::from_peer(ALICE, t(0))),
        Verdict::Drop(_)
    ));
    // Negated common name.
    let ntp = udp("10.8.0.3", "192.0.2.123", 1, 123, 0);
    assert_eq!(
        ct.track(&ntp, &PacketCtx::from_peer(BOB, t(0))),
        Verdict::Accept
    );
    let ntp = udp("10.8.0.2", "192.0.2.123", 1, 123, 0);
    assert!(matches!(
        ct.track(&ntp, &PacketCtx::from_peer(ALICE, t(0))),
        Verdict::Drop(_)
    ));
}

#[test]
fn addresses_ports_and_negation() {
    let ct = tracker(
        "policy drop\n\
         ip saddr != 10.8.0.0/16 drop\n\
         ip6 daddr fd00::/8 tcp dport { 80, 443, 8000-8080 } accept\n\
         ip daddr { 192.0.2.0/24, 198.51.100.7 } udp sport 1000-2000 accept\n\
         tcp flags syn / syn,ack tcp dport 2222 accept\n",
    );
    let ok = udp("10.8.1.1", "198.51.100.7", 1500, 9, 0);
    assert_eq!(
        ct.track(&ok, &PacketCtx::from_peer(ALICE, t(0))),
        Verdict::Accept
    );
    let bad_src = udp("10.9.1.1", "198.51.100.7", 1500, 9, 0);
    assert_eq!(
        ct.track(&bad_src, &PacketCtx::from_peer(ALICE, t(0))),
        Verdict::Drop(DropReason::Rule { index: 0, line: 2 })
    );
    let bad_port = udp("10.8.1.1", "198.51.100.7", 2001, 9, 0);
    assert_eq!(
        ct.track(&bad_port, &PacketCtx::from_peer(ALICE, t(0))),
        Verdict::Drop(DropReason::Policy)
    );
    for port in [80, 443, 8000, 8080] {
        let p = Tcp {
            sport: 1,
            dport: port,
            flags: SYN,
            win: 1,
            ..Default::default()
        }
        .packet(ip("fd00:8::2"), ip("fd00::80"));
        assert_eq!(
            ct.track(&p, &PacketCtx::from_peer(ALICE, t(0))),
            Verdict::Accept,
            "port {port}"
        );
    }
    let p = Tcp {
        sport: 1,
        dport: 8081,
        flags: SYN,
        win: 1,
        ..Default::default()
    }
    .packet(ip("fd00:8::2"), ip("fd00::80"));
    assert_eq!(
        ct.track(&p, &PacketCtx::from_peer(ALICE, t(0))),
        Verdict::Drop(DropReason::Policy)
    );
    assert_eq!(
        ct.track(
            &syn("10.8.0.2", "192.0.2.1", 2222),
            &PacketCtx::from_peer(ALICE, t(0))
        ),
        Verdict::Accept
    );
}

#[test]
fn rule_replacement_is_atomic_and_resets_counters() {
    let ct = tracker("policy drop");
    let p = udp("10.8.0.2", "192.0.2.1", 1, 2, 0);
    assert_eq!(
        ct.track(&p, &PacketCtx::from_peer(ALICE, t(0))),
        Verdict::Drop(DropReason::Policy)
    );
    let old = ct.set_rules(RuleSet::parse("policy accept").unwrap());
    assert_eq!(old.policy_counters().packets, 1);
    assert_eq!(
        ct.track(&p, &PacketCtx::from_peer(ALICE, t(0))),
        Verdict::Accept
    );
    assert_eq!(ct.rules().policy_counters().packets, 1);
}

#[test]
fn rules_swap_while_workers_run() {
    let ct = std::sync::Arc::new(tracker("policy accept"));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let done = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let worker = {
        let (ct, stop, done) = (ct.clone(), stop.clone(), done.clone());
        std::thread::spawn(move || {
            let mut n = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                done.store(n, std::sync::atomic::Ordering::Relaxed);
                let p = udp("10.8.0.2", "192.0.2.1", (n % 60000) as u16, 2, 0);
                let v = ct.track(&p, &PacketCtx::from_peer(ALICE, t(0)));
                assert!(matches!(
                    v,
                    Verdict::Accept | Verdict::Drop(DropReason::Policy)
                ));
                n += 1;
            }
            n
        })
    };
    let mut i = 0;
    while i < 200 || done.load(std::sync::atomic::Ordering::Relaxed) < 2000 {
        let r = if i % 2 == 0 {
            "policy drop"
        } else {
            "policy accept"
        };
        ct.set_rules(RuleSet::parse(r).unwrap());
        i += 1;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(worker.join().unwrap() > 0);
}

fn check_reply(reply: &[u8], from: IpAddr, to: IpAddr) {
    // The reply parses and goes back to the sender.
    let ct = Conntrack::new(Config::default()).unwrap();
    let o = ct.track_detailed(reply, &PacketCtx::to_peer(ALICE, t(0)));
    // Parses: whatever state a fresh table gives it, it is never malformed.
    assert!(
        !matches!(o.verdict, Verdict::Drop(DropReason::Malformed(_))),
        "the reply does not parse: {o:?}"
    );
    let s = ip_src_dst(reply);
    assert_eq!(s, (from, to));
}

fn ip_src_dst(p: &[u8]) -> (IpAddr, IpAddr) {
    if p[0] >> 4 == 4 {
        let a: [u8; 4] = p[12..16].try_into().unwrap();
        let b: [u8; 4] = p[16..20].try_into().unwrap();
        (IpAddr::from(a), IpAddr::from(b))
    } else {
        let a: [u8; 16] = p[8..24].try_into().unwrap();
        let b: [u8; 16] = p[24..40].try_into().unwrap();
        (IpAddr::from(a), IpAddr::from(b))
    }
}

/// One's-complement sum over the buffer plus a pseudo-header, folded.
fn csum(data: &[u8], mut acc: u64) -> u16 {
    for c in data.chunks(2) {
        acc += u64::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    while acc >> 16 != 0 {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

fn pseudo(src: &[u8], dst: &[u8], proto: u8, len: usize) -> u64 {
    let mut acc = 0u64;
    for c in src.chunks(2).chain(dst.chunks(2)) {
        acc += u64::from(u16::from_be_bytes([c[0], c[1]]));
    }
    acc + u64::from(proto) + len as u64
}

#[test]
fn tcp_reset_reply_is_well_formed() {
    let p = Tcp {
        sport: 40000,
        dport: 80,
        seq: 1000,
        flags: SYN,
        win: 1000,
        payload: vec![0; 10],
        ..Default::default()
    }
    .packet(ip("10.8.0.2"), ip("192.0.2.80"));
    let mut buf = [0u8; REJECT_BUF_LEN];
    let n = build_reject(&p, RejectKind::TcpReset, &mut buf).unwrap();
    let r = &buf[..n];
    assert_eq!(n, 40);
    check_reply(r, ip("192.0.2.80"), ip("10.8.0.2"));
    assert_eq!(csum(&r[..20], 0), 0, "IPv4 header checksum");
    assert_eq!(
        csum(&r[20..], pseudo(&r[12..16], &r[16..20], 6, 20)),
        0,
        "TCP checksum"
    );
    // Ports swapped; no ACK in the SYN, so RST+ACK acknowledging SYN + 10 bytes.
    assert_eq!(&r[20..24], &[0, 80, 0x9c, 0x40]);
    assert_eq!(u32::from_be_bytes(r[28..32].try_into().unwrap()), 1011);
    assert_eq!(r[33], RST | ACK);

    // A segment with ACK gets a bare RST at its ack number, IPv6 too.
    let p = Tcp {
        sport: 1,
        dport: 2,
        seq: 5,
        ack: 777,
        flags: ACK,
        win: 1,
        ..Default::default()
    }
    .packet(ip("fd00:8::2"), ip("2001:db8::1"));
    let n = build_reject(&p, RejectKind::TcpReset, &mut buf).unwrap();
    let r = &buf[..n];
    assert_eq!(n, 60);
    check_reply(r, ip("2001:db8::1"), ip("fd00:8::2"));
    assert_eq!(
        csum(&r[40..], pseudo(&r[8..24], &r[24..40], 6, 20)),
        0,
        "TCP checksum"
    );
    assert_eq!(u32::from_be_bytes(r[44..48].try_into().unwrap()), 777);
    assert_eq!(r[53], RST);
}

#[test]
fn icmp_unreachable_reply_is_well_formed() {
    let p = udp("10.8.0.2", "192.0.2.53", 5353, 53, 1000);
    let mut buf = [0u8; REJECT_BUF_LEN];
    let n = build_reject(&p, RejectKind::Icmp(IcmpxCode::AdminProhibited), &mut buf).unwrap();
    let r = &buf[..n];
    // Capped at 576 bytes (RFC 1812).
    assert_eq!(n, 576);
    check_reply(r, ip("192.0.2.53"), ip("10.8.0.2"));
    assert_eq!((r[20], r[21]), (3, 13));
    assert_eq!(csum(&r[20..], 0), 0, "ICMP checksum");
    assert_eq!(&r[28..48], &p[..20], "quotes the offending header");
    // The reply is RELATED to the flow it answers.
    let ct = Conntrack::new(Config::default()).unwrap();
    ct.track(&p, &PacketCtx::from_peer(ALICE, t(0)));
    assert_eq!(
        ct.track_detailed(r, &PacketCtx::to_peer(ALICE, t(1))).state,
        CtState::Related
    );

    let p6 = udp("fd00:8::2", "2001:db8::53", 5353, 53, 2000);
    let n = build_reject(&p6, RejectKind::Icmp(IcmpxCode::PortUnreachable), &mut buf).unwrap();
    let r = &buf[..n];
    assert_eq!(n, 1280);
    assert_eq!((r[40], r[41]), (1, 4));
    assert_eq!(
        csum(&r[40..], pseudo(&r[8..24], &r[24..40], 58, n - 40)),
        0,
        "ICMPv6 checksum"
    );
    let ct = Conntrack::new(Config::default()).unwrap();
    ct.track(&p6, &PacketCtx::from_peer(ALICE, t(0)));
    assert_eq!(
        ct.track_detailed(r, &PacketCtx::to_peer(ALICE, t(1))).state,
        CtState::Related
    );
}

#[test]
fn some_packets_are_never_answered() {
    let mut buf = [0u8; REJECT_BUF_LEN];
    let rst = Tcp {
        sport: 1,
        dport: 2,
        flags: RST,
        ..Default::default()
    }
    .packet(ip("10.8.0.2"), ip("192.0.2.1"));
    assert!(matches!(
        build_reject(&rst, RejectKind::TcpReset, &mut buf),
        Err(RejectError::NotRejectable(_))
    ));
    let mcast = udp("10.8.0.2", "224.0.0.251", 5353, 5353, 10);
    assert!(matches!(
        build_reject(
            &mcast,
            RejectKind::Icmp(IcmpxCode::PortUnreachable),
            &mut buf
        ),
        Err(RejectError::NotRejectable(_))
    ));
    let err = build::icmp_error(ip("192.0.2.1"), ip("10.8.0.2"), 3, 3, &mcast);
    assert!(matches!(
        build_reject(&err, RejectKind::Icmp(IcmpxCode::PortUnreachable), &mut buf),
        Err(RejectError::NotRejectable(_))
    ));
    let u = udp("10.8.0.2", "192.0.2.1", 1, 2, 10);
    assert!(matches!(
        build_reject(&u, RejectKind::TcpReset, &mut buf),
        Err(RejectError::NotRejectable(_))
    ));
    assert!(matches!(
        build_reject(&u, RejectKind::Icmp(IcmpxCode::NoRoute), &mut [0u8; 40]),
        Err(RejectError::BufferTooSmall { need: 56 })
    ));
    assert!(matches!(
        build_reject(&[1, 2, 3], RejectKind::TcpReset, &mut buf),
        Err(RejectError::Malformed(_))
    ));

    // A reject rule on such packets drops instead.
    let ct = tracker("reject");
    assert_eq!(
        ct.track(&mcast, &PacketCtx::from_peer(ALICE, t(0))),
        Verdict::Drop(DropReason::Rule { index: 0, line: 1 })
    );
    assert_eq!(
        ct.track(&u, &PacketCtx::from_peer(ALICE, t(0))),
        Verdict::Reject(RejectKind::Icmp(IcmpxCode::PortUnreachable))
    );
    assert_eq!(ct.stats().total.reject, 1);
}

#[test]
fn rules_from_file_report_the_path() {
    let dir = std::env::temp_dir().join(format!("ctk-rules-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("fw.rules");
    std::fs::write(&f, "policy drop\ntcp dport 22 acept\n").unwrap();
    let e = RuleSet::from_file(&f).unwrap_err().to_string();
    assert!(e.ends_with("fw.rules:2:14: unknown keyword 'acept' (expected a match such as 'ct state', 'ip saddr', 'tcp dport', 'from-peer', or accept/drop/reject)"), "{e}");
    std::fs::write(&f, "policy drop\ntcp dport 22 accept\n").unwrap();
    assert_eq!(RuleSet::from_file(&f).unwrap().len(), 1);
    let missing = RuleSet::from_file(dir.join("nope"))
        .unwrap_err()
        .to_string();
    assert!(missing.contains("nope"), "{missing}");
    std::fs::remove_dir_all(&dir).unwrap();
}
