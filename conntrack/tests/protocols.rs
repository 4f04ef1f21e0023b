//! UDP, ICMP, ICMPv6, RELATED errors, generic protocols and IPv6 extension headers.

mod common;

use common::*;
use conntrack::build::{self, IpOpts};
use conntrack::{
    Config, Conntrack, CtDir, CtState, InvalidReason, PacketCtx, PeerRef, RuleSet, Timestamp,
    TupleL4, Verdict,
};

fn ctx(now: u64) -> PacketCtx<'static> {
    PacketCtx::from_peer(PeerRef::new(1, "alice"), Timestamp::from_millis(now))
}

fn back(now: u64) -> PacketCtx<'static> {
    PacketCtx::to_peer(PeerRef::new(1, "alice"), Timestamp::from_millis(now))
}

#[test]
fn udp_unreplied_then_replied() {
    let ct = Conntrack::new(Config::default()).unwrap();
    let q = udp("10.8.0.2", "192.0.2.53", 5353, 53, 30);
    let o = ct.track_detailed(&q, &ctx(1000));
    assert_eq!(o.state, CtState::New);
    let e = &ct.dump(Timestamp::from_millis(1000))[0];
    assert!(!e.seen_reply && !e.assured);
    assert_eq!(e.timeout, 30);
    // A second query before any answer is still NEW.
    assert_eq!(ct.track_detailed(&q, &ctx(1500)).state, CtState::New);

    let r = udp("192.0.2.53", "10.8.0.2", 53, 5353, 60);
    let o = ct.track_detailed(&r, &back(1600));
    assert_eq!((o.state, o.dir), (CtState::Established, Some(CtDir::Reply)));
    let e = &ct.dump(Timestamp::from_millis(1600))[0];
    // Answered within two seconds of the first packet: not a stream yet.
    assert!(e.seen_reply && !e.assured);
    assert_eq!(e.timeout, 30);
    assert_eq!(
        ct.track_detailed(&q, &ctx(1700)).state,
        CtState::Established
    );
}

#[test]
fn udp_stream_becomes_assured_after_two_seconds() {
    let ct = Conntrack::new(Config::default()).unwrap();
    let q = udp("10.8.0.2", "192.0.2.7", 4000, 4001, 10);
    let r = udp("192.0.2.7", "10.8.0.2", 4001, 4000, 10);
    ct.track(&q, &ctx(10_000));
    ct.track(&r, &back(10_100));
    ct.track(&q, &ctx(12_500));
    let e = &ct.dump(Timestamp::from_millis(12_500))[0];
    assert!(e.assured);
    assert_eq!(e.timeout, 120);
    assert_eq!((e.orig_packets, e.reply_packets), (2, 1));
}

#[test]
fn icmp_echo_request_and_reply() {
    let ct = Conntrack::new(Config::default()).unwrap();
    let (a, b) = (ip("10.8.0.2"), ip("192.0.2.1"));
    let o = ct.track_detailed(&build::echo_request(a, b, 77, 1), &ctx(0));
    assert_eq!(o.state, CtState::New);
    let o = ct.track_detailed(&build::echo_reply(b, a, 77, 1), &back(10));
    assert_eq!((o.state, o.dir), (CtState::Established, Some(CtDir::Reply)));
    let e = &ct.dump(Timestamp::from_millis(10))[0];
    assert_eq!(e.timeout, 30);
    assert_eq!(
        e.original.l4,
        TupleL4::Icmp {
            typ: 8,
            code: 0,
            id: 77
        }
    );
    assert_eq!(
        e.reply.l4,
        TupleL4::Icmp {
            typ: 0,
            code: 0,
            id: 77
        }
    );
    assert!(e.to_string().starts_with(
        "icmp     1 30 src=10.8.0.2 dst=192.0.2.1 type=8 code=0 id=77 packets=1 bytes=36 src=192.0.2.1 dst=10.8.0.2 type=0 code=0 id=77 packets=1 bytes=36"
    ), "{e}");
}

#[test]
fn echo_reply_without_request_is_invalid() {
    let ct = Conntrack::new(Config::default()).unwrap();
    let o = ct.track_detailed(
        &build::echo_reply(ip("10.8.0.2"), ip("192.0.2.1"), 5, 1),
        &ctx(0),
    );
    assert_eq!(o.invalid, Some(InvalidReason::IcmpNoConnection));
    assert!(ct.is_empty());
}

#[test]
fn echo_request_from_responder_is_a_new_flow() {
    let ct = Conntrack::new(Config::default()).unwrap();
    let (a, b) = (ip("10.8.0.2"), ip("192.0.2.1"));
    ct.track(&build::echo_request(a, b, 77, 1), &ctx(0));
    let o = ct.track_detailed(&build::echo_request(b, a, 77, 1), &back(1));
    assert_eq!(o.state, CtState::New);
    assert_eq!(ct.len(), 2);
}

#[test]
fn icmpv6_echo() {
    let ct = Conntrack::new(Config::default()).unwrap();
    let (a, b) = (ip("fd00:8::2"), ip("2001:db8::1"));
    assert_eq!(
        ct.track_detailed(&build::echo_request(a, b, 9, 1), &ctx(0))
            .state,
        CtState::New
    );
    assert_eq!(
        ct.track_detailed(&build::echo_reply(b, a, 9, 1), &back(1))
            .state,
        CtState::Established
    );
    let e = &ct.dump(Timestamp::from_millis(1))[0];
    assert!(
        e.to_string()
            .starts_with("icmpv6   58 30 src=fd00:8::2 dst=2001:db8::1 type=128 code=0 id=9"),
        "{e}"
    );
}

#[test]
fn icmp_error_is_related_in_the_right_direction() {
    let ct = Conntrack::new(Config::default()).unwrap();
    let (c, s) = (ip("10.8.0.2"), ip("192.0.2.53"));
    let q = build::udp(c, s, 5353, 53, b"query");
    ct.track(&q, &ctx(0));
    // The server (or a router on the way) answers with port unreachable.
    let err = build::icmp_error(s, c, 3, 3, &q);
    let o = ct.track_detailed(&err, &back(5));
    assert_eq!((o.state, o.dir), (CtState::Related, Some(CtDir::Reply)));
    // A router in the middle sends time exceeded: also related.
    let err = build::icmp_error(ip("198.51.100.1"), c, 11, 0, &q);
    assert_eq!(ct.track_detailed(&err, &back(6)).state, CtState::Related);
    // The error does not count as a reply.
    let e = &ct.dump(Timestamp::from_millis(6))[0];
    assert!(!e.seen_reply);
    assert_eq!(ct.stats().total.related, 2);
}

#[test]
fn icmp_error_quoting_a_reply_is_related_in_the_original_direction() {
    let ct = Conntrack::new(Config::default()).unwrap();
    let (c, s) = (ip("10.8.0.2"), ip("192.0.2.53"));
    ct.track(&build::udp(c, s, 5353, 53, b"q"), &ctx(0));
    let reply = build::udp(s, c, 53, 5353, b"a");
    ct.track(&reply, &back(1));
    // The client side cannot deliver the reply.
    let err = build::icmp_error(c, s, 3, 3, &reply);
    let o = ct.track_detailed(&err, &ctx(2));
    assert_eq!((o.state, o.dir), (CtState::Related, Some(CtDir::Original)));
}

#[test]
fn icmp_errors_for_tcp_and_ping_and_v6() {
    let ct = Conntrack::new(Config::default()).unwrap();
    let (c, s) = (ip("10.8.0.2"), ip("192.0.2.80"));
    let syn = build::Tcp {
        sport: 40000,
        dport: 80,
        seq: 1,
        flags: SYN,
        win: 1000,
        ..Default::default()
    }
    .packet(c, s);
    ct.track(&syn, &ctx(0));
    let err = build::icmp_error(ip("198.51.100.1"), c, 3, 4, &syn[..28]);
    assert_eq!(ct.track_detailed(&err, &back(1)).state, CtState::Related);

    let ping = build::echo_request(c, s, 1234, 1);
    ct.track(&ping, &ctx(2));
    let err = build::icmp_error(ip("198.51.100.1"), c, 11, 0, &ping);
    assert_eq!(ct.track_detailed(&err, &back(3)).state, CtState::Related);

    let (c6, s6) = (ip("fd00:8::2"), ip("2001:db8::80"));
    let q6 = build::udp(c6, s6, 7000, 7001, b"hello");
    ct.track(&q6, &ctx(4));
    let err = build::icmp_error(ip("2001:db8::1"), c6, 2, 0, &q6);
    let o = ct.track_detailed(&err, &back(5));
    assert_eq!((o.state, o.dir), (CtState::Related, Some(CtDir::Reply)));
}

#[test]
fn icmp_error_for_unknown_flow_or_wrong_target_is_invalid() {
    let ct = Conntrack::new(Config::default()).unwrap();
    let (c, s) = (ip("10.8.0.2"), ip("192.0.2.53"));
    let q = build::udp(c, s, 5353, 53, b"q");
    let err = build::icmp_error(s, c, 3, 3, &q);
    let o = ct.track_detailed(&err, &back(0));
    assert_eq!(o.invalid, Some(InvalidReason::RelatedNotFound));
    ct.track(&q, &ctx(1));
    // Quotes alice's flow but is addressed to someone else.
    let err = build::icmp_error(s, ip("10.8.0.99"), 3, 3, &q);
    let o = ct.track_detailed(&err, &back(2));
    assert_eq!(o.invalid, Some(InvalidReason::RelatedAddressMismatch));
    assert_eq!(ct.stats().total.error, 2);
}

#[test]
fn generic_protocols_tracked_by_addresses() {
    let ct = Conntrack::new(Config::default()).unwrap();
    let (a, b) = (ip("10.8.0.2"), ip("192.0.2.9"));
    let gre = build::ip(a, b, 47, &[0; 24], &IpOpts::default());
    assert_eq!(ct.track_detailed(&gre, &ctx(0)).state, CtState::New);
    let back_gre = build::ip(b, a, 47, &[0; 24], &IpOpts::default());
    assert_eq!(
        ct.track_detailed(&back_gre, &back(1)).state,
        CtState::Established
    );
    let e = &ct.dump(Timestamp::from_millis(1))[0];
    assert_eq!(e.timeout, 600);
    assert_eq!(
        e.to_string(),
        "gre      47 600 src=10.8.0.2 dst=192.0.2.9 packets=1 bytes=44 src=192.0.2.9 dst=10.8.0.2 packets=1 bytes=44"
    );
}

#[test]
fn neighbour_discovery_is_untracked() {
    let ct = Conntrack::new(Config::default()).unwrap();
    let ns = build::icmp(
        ip("fe80::1"),
        ip("ff02::1:ff00:2"),
        135,
        0,
        [0; 4],
        &[0; 16],
    );
    assert_eq!(ct.track_detailed(&ns, &ctx(0)).state, CtState::Untracked);
    assert!(ct.is_empty());
    assert_eq!(ct.stats().total.untracked, 1);
}

#[test]
fn ipv6_tcp_behind_extension_headers_is_tracked() {
    let p = Pair::v(
        Config::default(),
        RuleSet::default(),
        "fd00:8::2",
        "2001:db8::22",
    );
    let seg = build::Tcp {
        sport: p.cport,
        dport: p.sport,
        seq: 1000,
        flags: SYN,
        win: 64000,
        ..Default::default()
    }
    .segment(p.client, p.server);
    let o = IpOpts {
        ext: vec![(0, vec![0; 6]), (60, vec![0; 6]), (43, vec![0; 6])],
        ..IpOpts::default()
    };
    let syn = build::ip(p.client, p.server, 6, &seg, &o);
    assert_eq!(p.send(true, &syn).state, CtState::New);
    p.s2c(SYN | ACK, 5000, 1001, 0);
    p.c2s(ACK, 1001, 5001, 0);
    let e = p.only();
    assert!(e.assured);
    assert!(
        e.to_string().starts_with(
            "tcp      6 432000 ESTABLISHED src=fd00:8::2 dst=2001:db8::22 sport=40000 dport=22"
        ),
        "{e}"
    );
}

#[test]
fn malformed_ip_is_dropped_unconditionally() {
    let ct =
        Conntrack::with_rules(Config::default(), RuleSet::parse("policy accept").unwrap()).unwrap();
    let v = ct.track(&[0x45, 0, 0, 10], &ctx(0));
    assert!(matches!(
        v,
        Verdict::Drop(conntrack::DropReason::Malformed(
            InvalidReason::Ipv4Truncated
        ))
    ));
    let s = ct.stats();
    assert_eq!((s.total.malformed, s.total.invalid), (1, 1));
    assert_eq!(s.invalid_reasons, vec![(InvalidReason::Ipv4Truncated, 1)]);
}
