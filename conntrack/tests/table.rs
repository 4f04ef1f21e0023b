//! The table: bound, early drop, GC slices, flush, events, listing and stats text.

mod common;

use common::*;
use conntrack::{
    Config, Conntrack, CtEvent, DestroyReason, DropReason, EventKind, ListFormat, PacketCtx,
    PeerRef, RuleSet, Timestamp, Verdict, list_footer,
};
use std::sync::Arc;
use std::time::Duration;

const ALICE: PeerRef<'static> = PeerRef::new(1, "alice");

fn t(ms: u64) -> Timestamp {
    Timestamp::from_millis(ms)
}

fn small(max: usize, shards: usize) -> Conntrack {
    Conntrack::new(Config {
        max_entries: max,
        shards: Some(shards),
        ..Config::default()
    })
    .unwrap()
}

fn flow(i: u32) -> Vec<u8> {
    udp(
        "10.8.0.2",
        "192.0.2.1",
        (i % 60000) as u16 + 1,
        9 + (i / 60000) as u16,
        0,
    )
}

#[test]
fn table_never_exceeds_its_bound_and_early_drops_unassured() {
    let ct = small(100, 4);
    for i in 0..1000 {
        ct.track(&flow(i), &PacketCtx::from_peer(ALICE, t(u64::from(i))));
        assert!(ct.len() <= 100);
    }
    assert_eq!(ct.len(), 100);
    let s = ct.stats().total;
    // Every new flow found an unassured victim in its shard.
    assert_eq!(s.insert, 1000);
    assert_eq!(s.early_drop, 900);
    assert_eq!(ct.dump(t(1000)).len(), 100);
}

#[test]
fn assured_entries_are_not_evicted_and_new_flows_are_dropped() {
    let ct = small(8, 1);
    // Eight assured TCP connections fill the table.
    let mut p = Pair::new();
    p.ct = small(8, 1);
    for i in 0..8 {
        p.cport = 1000 + i;
        p.handshake();
    }
    assert_eq!(p.ct.len(), 8);
    assert!(p.entries().iter().all(|e| e.assured));
    p.cport = 2000;
    let o = p.c2s(SYN, 1, 0, 0);
    assert_eq!(o.verdict, Verdict::Drop(DropReason::TableFull));
    assert_eq!(p.ct.stats().total.drop, 1);
    // Closing ones may be evicted.
    p.cport = 1000;
    p.c2s(FIN | ACK, 1001, 5001, 0);
    p.cport = 2000;
    assert_eq!(p.c2s(SYN, 1, 0, 0).verdict, Verdict::Accept);
    assert_eq!(p.ct.stats().total.early_drop, 1);
    drop(ct);
}

#[test]
fn expired_entries_are_reclaimed_before_evicting() {
    let ct = small(10, 1);
    for i in 0..10 {
        ct.track(&flow(i), &PacketCtx::from_peer(ALICE, t(0)));
    }
    ct.track(&flow(100), &PacketCtx::from_peer(ALICE, t(31_000)));
    let s = ct.stats().total;
    assert_eq!((s.expired, s.early_drop), (1, 0));
}

#[test]
fn gc_works_in_small_slices() {
    let ct = small(10_000, 16);
    for i in 0..5000 {
        ct.track(&flow(i), &PacketCtx::from_peer(ALICE, t(0)));
    }
    assert_eq!(ct.len(), 5000);
    // Nothing is due yet.
    let r = ct.gc_slice(t(1000), 100_000);
    assert_eq!(r.expired, 0);
    // After the UDP timeout, each slice removes at most its budget.
    let mut total = 0;
    let mut slices = 0;
    while !ct.is_empty() {
        let r = ct.gc_slice(t(31_000), 64);
        assert!(r.scanned <= 64);
        total += r.expired;
        slices += 1;
        assert!(slices < 1000);
    }
    assert_eq!(total, 5000);
    assert!(slices >= 5000 / 64);
    assert_eq!(ct.stats().total.expired, 5000);
}

#[test]
fn gc_on_empty_table_terminates() {
    let ct = small(100, 64);
    let r = ct.gc_slice(t(0), 10);
    assert_eq!(r.expired, 0);
    let r = ct.gc_slice(t(0), 1000);
    assert!(r.wrapped);
}

#[test]
fn flush_and_flush_matching() {
    let ct = small(1000, 8);
    for i in 0..100 {
        let ctx = PacketCtx::from_peer(PeerRef::new(i % 2, "x"), t(0));
        ct.track(&flow(i), &ctx);
    }
    assert_eq!(ct.flush_matching(t(0), |e| e.orig_peer == Some(1)), 50);
    assert_eq!(ct.len(), 50);
    assert_eq!(ct.flush(t(0)), 50);
    assert!(ct.is_empty());
    assert!(ct.dump(t(0)).is_empty());
    assert_eq!(ct.stats().total.flushed, 100);
    // Still usable after a flush.
    ct.track(&flow(1), &PacketCtx::from_peer(ALICE, t(0)));
    assert_eq!(ct.len(), 1);
}

#[test]
fn events_new_update_destroy() {
    let p = Pair::new();
    let sub = p.ct.subscribe(16);
    p.handshake();
    p.ct.flush(t(p.now));
    let mut ev = Vec::new();
    sub.drain_into(&mut ev);
    let kinds: Vec<_> = ev.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [
            EventKind::New,
            EventKind::Update,
            EventKind::Update,
            EventKind::Destroy
        ]
    );
    assert_eq!(ev[3].reason, Some(DestroyReason::Flush));
    assert_eq!(
        ev[0].to_string(),
        "    [NEW] tcp      6 120 SYN_SENT src=10.8.0.2 dst=192.0.2.10 sport=40000 dport=22 [UNREPLIED] src=192.0.2.10 dst=10.8.0.2 sport=22 dport=40000"
    );
    assert_eq!(
        ev[1].to_string(),
        " [UPDATE] tcp      6 60 SYN_RECV src=10.8.0.2 dst=192.0.2.10 sport=40000 dport=22 src=192.0.2.10 dst=10.8.0.2 sport=22 dport=40000"
    );
    assert_eq!(
        ev[2].to_string(),
        " [UPDATE] tcp      6 432000 ESTABLISHED src=10.8.0.2 dst=192.0.2.10 sport=40000 dport=22 src=192.0.2.10 dst=10.8.0.2 sport=22 dport=40000 [ASSURED]"
    );
    assert_eq!(
        ev[3].to_string(),
        "[DESTROY] tcp      6 src=10.8.0.2 dst=192.0.2.10 sport=40000 dport=22 packets=2 bytes=80 src=192.0.2.10 dst=10.8.0.2 sport=22 dport=40000 packets=1 bytes=40 [ASSURED]"
    );
    assert_eq!(sub.take_missed(), 0);
}

#[test]
fn slow_subscriber_misses_events_and_is_told() {
    let ct = small(1000, 4);
    let sub = ct.subscribe(10);
    for i in 0..25 {
        ct.track(&flow(i), &PacketCtx::from_peer(ALICE, t(0)));
    }
    let mut ev: Vec<CtEvent> = Vec::new();
    assert_eq!(sub.drain_into(&mut ev), 10);
    assert_eq!(sub.take_missed(), 15);
    assert_eq!(sub.take_missed(), 0);
    // Unsubscribing stops delivery; other subscribers are unaffected.
    let sub2 = ct.subscribe(100);
    drop(sub);
    ct.track(&flow(500), &PacketCtx::from_peer(ALICE, t(0)));
    assert!(sub2.recv_timeout(Duration::from_millis(100)).is_some());
    assert!(sub2.try_recv().is_none());
}

#[test]
fn events_are_delivered_across_threads() {
    let ct = Arc::new(small(1000, 4));
    let sub = ct.subscribe(100);
    let h = {
        let ct = ct.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            ct.track(&flow(1), &PacketCtx::from_peer(ALICE, t(0)));
        })
    };
    let e = sub.recv_timeout(Duration::from_secs(10)).expect("event");
    assert_eq!(e.kind, EventKind::New);
    h.join().unwrap();
}

#[test]
fn listing_formats() {
    let p = Pair::new();
    p.handshake();
    let e = p.only();
    assert_eq!(
        e.to_string(),
        "tcp      6 432000 ESTABLISHED src=10.8.0.2 dst=192.0.2.10 sport=40000 dport=22 packets=2 bytes=80 src=192.0.2.10 dst=10.8.0.2 sport=22 dport=40000 packets=1 bytes=40 [ASSURED]"
    );
    let x = e.format(ListFormat {
        extended: true,
        id: true,
        peers: true,
    });
    assert!(
        x.starts_with("ipv4     2 tcp      6 432000 ESTABLISHED "),
        "{x}"
    );
    assert!(
        x.ends_with(&format!("[ASSURED] id={} peer=1/-", e.id)),
        "{x}"
    );
    assert_eq!(
        list_footer(1),
        "dco-conntrack: 1 flow entries have been shown."
    );
    let u = udp("10.8.0.2", "192.0.2.53", 1000, 53, 10);
    p.send(true, &u);
    let line = p
        .entries()
        .into_iter()
        .find(|e| e.proto == 17)
        .unwrap()
        .to_string();
    assert_eq!(
        line,
        "udp      17 30 src=10.8.0.2 dst=192.0.2.53 sport=1000 dport=53 packets=1 bytes=38 [UNREPLIED] src=192.0.2.53 dst=10.8.0.2 sport=53 dport=1000 packets=0 bytes=0"
    );
}

#[test]
fn json_snapshot_round_trips() {
    let p = Pair::new();
    p.handshake();
    let e = p.only();
    let j = serde_json::to_value(&e).unwrap();
    assert_eq!(j["tcp_state"], "ESTABLISHED");
    assert_eq!(j["original"]["src"], "10.8.0.2");
    assert_eq!(j["original"]["sport"], 40000);
    assert_eq!(j["family"], "ipv4");
    let back: conntrack::ConnSnapshot = serde_json::from_value(j).unwrap();
    assert_eq!(back, e);
    let s = serde_json::to_value(p.ct.stats()).unwrap();
    assert_eq!(s["total"]["insert"], 1);
}

#[test]
fn stats_text_matches_conntrack_s() {
    let ct = Arc::new(small(1000, 4));
    let h = {
        let ct = ct.clone();
        std::thread::spawn(move || {
            ct.track(&flow(1), &PacketCtx::from_peer(ALICE, t(0)));
            ct.track(&flow(1), &PacketCtx::from_peer(ALICE, t(0)));
            ct.track(&[0x45], &PacketCtx::from_peer(ALICE, t(0)));
        })
    };
    h.join().unwrap();
    let s = ct.stats();
    let text = s.to_string();
    let line = text.lines().next().unwrap();
    assert!(line.starts_with("cpu="), "{text}");
    let fields = line.split_once('\t').unwrap().1;
    assert!(
        fields.starts_with("found=1 invalid=1 ignore=0 insert=1 drop=0 early_drop=0 error=0 "),
        "{fields}"
    );
    assert!(fields.ends_with(' '));
    let d = s.detail();
    assert!(
        d.contains("invalid ipv4_truncated=1 (IPv4 header truncated)"),
        "{d}"
    );
    assert_eq!((s.entries, s.max_entries), (1, 1000));
}

#[test]
fn concurrent_workers_keep_the_table_consistent() {
    let ct = Arc::new(
        Conntrack::with_rules(
            Config {
                max_entries: 5000,
                ..Config::default()
            },
            RuleSet::parse("ct state invalid drop").unwrap(),
        )
        .unwrap(),
    );
    let workers: Vec<_> = (0..4u32)
        .map(|w| {
            let ct = ct.clone();
            std::thread::spawn(move || {
                for i in 0..20_000u32 {
                    // Overlapping flows: workers hit the same entries.
                    let f = flow((i * 7 + w) % 8000);
                    ct.track(&f, &PacketCtx::from_peer(ALICE, t(u64::from(i))));
                    if i % 1000 == 0 {
                        ct.gc_slice(t(u64::from(i)), 500);
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let n = ct.len();
    assert!(n <= 5000);
    assert_eq!(ct.dump(t(0)).len(), n);
    let s = ct.stats().total;
    assert_eq!(s.found + s.insert + s.drop, 80_000);
    assert_eq!(s.insert - s.early_drop - s.expired, n as u64);
}

#[test]
fn memory_usage_is_reported() {
    let ct = small(100_000, 64);
    for i in 0..50_000 {
        ct.track(&flow(i), &PacketCtx::from_peer(ALICE, t(0)));
    }
    let m = ct.memory_usage();
    assert_eq!(m.entries, 50_000);
    assert!(m.entry_size <= 192, "{m:?}");
    assert!(m.per_entry() <= 256, "{m:?}");
}
