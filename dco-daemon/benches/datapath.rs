//! Per-packet cost of the daemon's receive and send paths (no I/O), beside the bare AEAD on
//! the same packet, at 1420-byte inner packets:
//! - rx: demultiplex, decrypt, replay window, keepalive/OCC check, source check, MSS clamp,
//!   firewall hook, route, GRO batching;
//! - tx: route, firewall hook, MSS clamp, packet-id, seal in place.
//!
//! `cargo bench -p dco-daemon --bench datapath`

use std::hint::black_box;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use crypto::{AeadKey, CipherKind, DATA_V2_OVERHEAD};
use dco_daemon::events::RateLimit;
use dco_daemon::filter::REPLY_BUF;
use dco_daemon::gro::TunWriter;
use dco_daemon::testkit::{Scenario, tcp4};
use dco_daemon::worker::{HEADROOM, RxAction, RxPath, TxAction, TxPath};

fn bench(c: &mut Criterion) {
    for cipher in [CipherKind::Aes256Gcm, CipherKind::Chacha20Poly1305] {
        let s = Scenario::new(cipher);
        let table = s.shared.table.load_full();
        let ctr = s.shared.counters.slot(2);
        let mut relay = RateLimit::new(1000, 100);
        let mut reply = vec![0u8; DATA_V2_OVERHEAD + REPLY_BUF];
        let mut tun = TunWriter::new(128);
        let filter = s.shared.filter();
        let mut g = c.benchmark_group(format!("datapath/{cipher}"));
        let inner = tcp4([10, 8, 0, 2], [10, 8, 0, 1], 1, 1380);
        g.throughput(criterion::Throughput::Bytes(inner.len() as u64));

        // Receive: a fresh packet-id per iteration (the replay window refuses repeats).
        let mut seq = 0u32;
        g.bench_function("rx", |b| {
            b.iter_batched_ref(
                || {
                    seq = seq.wrapping_add(1380);
                    let inner = tcp4([10, 8, 0, 2], [10, 8, 0, 1], seq, 1380);
                    let mut buf = vec![0u8; DATA_V2_OVERHEAD + inner.len()];
                    let n = s.seal_from_peer(&inner, &mut buf);
                    buf.truncate(n);
                    buf
                },
                |w| {
                    let mut rx = RxPath {
                        shared: &s.shared,
                        table: &table,
                        ctr,
                        slot: 2,
                        now: 1,
                        relay: &mut relay,
                        reply: &mut reply,
                        local_port: 1194,
                    };
                    let mut batch = tun.batch();
                    if let RxAction::Tun(r) = rx.packet(w, s.peer_addr, None) {
                        batch.push(&w[r]);
                    }
                    black_box(batch.len());
                },
                BatchSize::SmallInput,
            )
        });
        // The bare AEAD open of the same packet (ring), the floor.
        let key = AeadKey::new(cipher, &[7u8; 32][..cipher.key_len()]).expect("key");
        let mut sealed = inner.clone();
        let tag = key
            .seal_in_place([1; 12], &[0; 8], &mut sealed)
            .expect("seal");
        g.bench_function("rx-raw-aead", |b| {
            b.iter_batched_ref(
                || sealed.clone(),
                |ct| black_box(key.open_in_place([1; 12], &[0; 8], ct, &tag)),
                BatchSize::SmallInput,
            )
        });

        // Send.
        let plain = tcp4([10, 8, 0, 1], [10, 8, 0, 2], 1, 1380);
        let mut txbuf = vec![0u8; HEADROOM + plain.len()];
        let mut tx_reply = vec![0u8; REPLY_BUF];
        g.bench_function("tx", |b| {
            b.iter(|| {
                txbuf[HEADROOM..].copy_from_slice(&plain);
                let mut txp = TxPath {
                    shared: &s.shared,
                    table: &table,
                    filter: &filter,
                    ctr,
                    slot: 3,
                    now: 1,
                    reply: &mut tx_reply,
                };
                black_box(matches!(
                    txp.packet(&mut txbuf, plain.len()),
                    TxAction::Udp(..)
                ))
            })
        });
        let mut raw = plain.clone();
        g.bench_function("tx-raw-aead", |b| {
            b.iter(|| {
                raw.copy_from_slice(&plain);
                black_box(key.seal_in_place([1; 12], &[0; 8], &mut raw).expect("seal"))
            })
        });
        g.finish();
    }
}

/// The send path with the conntrack firewall loaded and 100 000 tracked flows, 64 packets
/// of random flows (1380-byte TCP segments, AES-256-GCM) at a time: one firewall call per
/// packet (`TxPath::packet`) against one per batch (`TxPath::batch`, conntrack's prefetching
/// `track_batch`). Criterion reports time per 64 packets.
fn firewall(c: &mut Criterion) {
    const FLOWS: u32 = 100_000;
    const N: usize = 64;
    let s = Scenario::new(CipherKind::Aes256Gcm);
    s.load_firewall(
        "policy drop\nct state established,related accept\nto-peer meta l4proto tcp accept\n",
    );
    let table = s.shared.table.load_full();
    let ctr = s.shared.counters.slot(3);
    let filter = s.shared.filter();
    let mut reply = vec![0u8; REPLY_BUF];
    let host = |i: u32| [172, 16 + (i >> 16) as u8, (i >> 8) as u8, i as u8];
    let plains: Vec<Vec<u8>> = (0..FLOWS)
        .map(|i| tcp4(host(i), [10, 8, 0, 2], 1, 1380))
        .collect();
    let mut bufs: Vec<Vec<u8>> = (0..N).map(|_| vec![0u8; HEADROOM + 1420]).collect();
    let sizes = vec![plains[0].len(); N];
    let mut actions = vec![TxAction::None; N];
    // Track every flow once, in batches.
    for chunk in plains.chunks(N) {
        for (b, p) in bufs.iter_mut().zip(chunk) {
            b[HEADROOM..HEADROOM + p.len()].copy_from_slice(p);
        }
        let mut txp = TxPath {
            shared: &s.shared,
            table: &table,
            filter: &filter,
            ctr,
            slot: 3,
            now: 1,
            reply: &mut reply,
        };
        txp.batch(
            &mut bufs[..chunk.len()],
            &sizes[..chunk.len()],
            &mut actions,
            &mut |_| {},
        );
    }
    assert_eq!(s.shared.conntrack.len(), FLOWS as usize);
    let mut x = 0x9e37_79b9u32;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        (x % FLOWS) as usize
    };
    // A packet of flow i: the template with its source address patched (in place of
    // copying a cold packet; the tracker does not check checksums, the seal does not care).
    let template = plains[0].clone();
    let len = template.len();
    let put = |buf: &mut Vec<u8>, i: usize| {
        buf[HEADROOM..HEADROOM + len].copy_from_slice(&template);
        buf[HEADROOM + 12..HEADROOM + 16].copy_from_slice(&host(i as u32));
    };
    let mut g = c.benchmark_group("datapath/firewall-100k-flows");
    g.throughput(criterion::Throughput::Elements(N as u64));
    g.bench_function("tx-per-packet", |b| {
        b.iter(|| {
            let mut txp = TxPath {
                shared: &s.shared,
                table: &table,
                filter: &filter,
                ctr,
                slot: 3,
                now: 1,
                reply: &mut reply,
            };
            for buf in bufs.iter_mut() {
                put(buf, next());
                black_box(txp.packet(buf, len));
            }
        })
    });
    g.bench_function("tx-batch", |b| {
        b.iter(|| {
            for buf in bufs.iter_mut() {
                put(buf, next());
            }
            let mut txp = TxPath {
                shared: &s.shared,
                table: &table,
                filter: &filter,
                ctr,
                slot: 3,
                now: 1,
                reply: &mut reply,
            };
            txp.batch(&mut bufs, &sizes, &mut actions, &mut |_| {});
            black_box(&actions);
        })
    });
    g.finish();
}

criterion_group!(benches, bench, firewall);
criterion_main!(benches);
