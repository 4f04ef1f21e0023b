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

criterion_group!(benches, bench);
criterion_main!(benches);
