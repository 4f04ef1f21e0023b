//! The send path's batched firewall ([`dco_daemon::worker::TxPath::batch`], one conntrack
//! `track_batch` call per batch) decides and delivers exactly as the per-packet path does,
//! in the same order, on a table large enough for the tracker's prefetch pipeline.

use std::net::IpAddr;

use conntrack::build::{self, Tcp};
use crypto::CipherKind;
use dco_daemon::testkit::{Delivered, Scenario};

const RULES: &str = "\
policy drop
ct state established,related accept
ct state invalid drop
to-peer udp dport 5000-65000 accept
to-peer tcp dport 22 accept
to-peer tcp dport 23 reject
to-peer icmp type echo-request accept
";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn syn(src: &str, sport: u16, dport: u16) -> Vec<u8> {
    Tcp {
        sport,
        dport,
        seq: 1000,
        flags: 0x02,
        win: 64000,
        ..Tcp::default()
    }
    .packet(ip(src), ip("10.8.0.2"))
}

/// Host `i` of 192.168.0.0/16 behind the TUN.
fn host(i: u32) -> String {
    format!("192.168.{}.{}", (i >> 8) & 0xff, i & 0xff)
}

/// A mixed workload: accepted, rejected and dropped TCP, accepted and dropped UDP, ICMP,
/// unroutable and malformed packets, and repeats of earlier flows (established).
fn mixed(n: u32) -> Vec<Vec<u8>> {
    let mut v = Vec::new();
    for i in 0..n {
        let h = host(i % 997 + 1);
        v.push(match i % 9 {
            0 => syn(&h, 40000 + (i % 1000) as u16, 22),
            1 => syn(&h, 40000 + (i % 1000) as u16, 23),
            2 => syn(&h, 40000 + (i % 1000) as u16, 80),
            3 => build::udp(ip(&h), ip("10.8.0.2"), 5353, 53, b"dns"),
            4 => build::echo_request(ip(&h), ip("10.8.0.2"), i as u16, 1),
            5 => build::udp(ip(&h), ip("10.9.9.9"), 7000, 7000, b"nowhere"),
            6 => vec![0x45, 0, 0, 3],
            _ => build::udp(
                ip(&host(i % 50)),
                ip("10.8.0.2"),
                6000,
                6000,
                &i.to_be_bytes(),
            ),
        });
    }
    v
}

/// The plaintext inside a packet the daemon sealed for the peer.
fn open(s: &Scenario, wire: &[u8]) -> Vec<u8> {
    let mut w = wire.to_vec();
    let o = s
        .client_rx
        .open(&mut w)
        .expect("the peer opens what the daemon sent");
    w[o.payload].to_vec()
}

fn run(cipher: CipherKind) {
    let one = Scenario::new(cipher);
    let batched = Scenario::new(cipher);
    one.load_firewall(RULES);
    batched.load_firewall(RULES);

    // 20 000 UDP flows first: past the 16 384 entries where track_batch starts prefetching.
    let warm: Vec<Vec<u8>> = (0..20_000u32)
        .map(|i| {
            build::udp(
                ip(&host(i)),
                ip("10.8.0.2"),
                6000 + (i >> 16) as u16,
                9000,
                b"w",
            )
        })
        .collect();
    for chunk in warm.chunks(256) {
        let (got, rejects) = batched.send_batch(chunk);
        assert!(rejects.is_empty());
        for (p, (d, wire)) in chunk.iter().zip(got) {
            assert_eq!(one.send(p), Delivered::Udp);
            assert_eq!(d, Delivered::Udp);
            assert_eq!(&open(&batched, &wire), p);
        }
    }
    assert!(batched.shared.conntrack.len() >= 20_000);

    let pkts = mixed(3000);
    let mut want = Vec::new();
    for p in &pkts {
        want.push(one.send(p));
    }
    let mut got = Vec::new();
    let mut replies = Vec::new();
    // Uneven batch sizes: lanes of 64 inside, chunk edges everywhere.
    let mut rest = &pkts[..];
    for size in [1usize, 7, 64, 65, 128, 250].iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (now, later) = rest.split_at((*size).min(rest.len()));
        let (d, r) = batched.send_batch(now);
        got.extend(d.into_iter().zip(now));
        replies.extend(r);
        rest = later;
    }
    // Same fate for every packet, in order; a reject reply (to the TUN) for each rejected one.
    let mut n_reject = 0;
    for (i, ((d, wire), p)) in got.iter().enumerate() {
        match want[i] {
            Delivered::Reject => {
                assert_eq!(*d, Delivered::Consumed, "packet {i}");
                n_reject += 1;
            }
            w => assert_eq!(*d, w, "packet {i}"),
        }
        if *d == Delivered::Udp {
            assert_eq!(
                &open(&batched, wire),
                *p,
                "packet {i} reached the peer changed"
            );
        }
    }
    assert_eq!(replies.len(), n_reject);
    assert!(n_reject > 0, "the workload has rejected packets");
    assert!(
        want.contains(&Delivered::Udp) && want.contains(&Delivered::Consumed),
        "the workload has accepted and dropped packets"
    );
    // The replies are TCP resets from the peer's address back to the sender.
    for r in &replies {
        assert_eq!(r[0] >> 4, 4);
        assert_eq!(r[9], 6, "a TCP reset");
        assert_eq!(&r[12..16], &[10, 8, 0, 2]);
    }
    // Both trackers end in the same state.
    assert_eq!(one.shared.conntrack.len(), batched.shared.conntrack.len());
    let (a, b) = (
        one.shared.conntrack.stats(),
        batched.shared.conntrack.stats(),
    );
    assert_eq!(a.total, b.total);
}

#[test]
fn batched_send_path_matches_per_packet_aes_gcm() {
    run(CipherKind::Aes256Gcm);
}

#[test]
fn batched_send_path_matches_per_packet_chacha() {
    run(CipherKind::Chacha20Poly1305);
}
