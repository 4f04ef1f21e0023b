//! The host-compiled kernel code (the exact per-lane logic the GPU runs) against ring (the CPU
//! path, `crypto::CpuBatch`) and RustCrypto, on random packets of random lengths and keys, for
//! every cipher, seal and open, with tampered tags, AAD and ciphertexts rejected.
//!
//! The 100k-packet run is `model_matches_cpu_100k_packets`; a smaller run with every lane width
//! is always on.

mod common;

use common::*;
use crypto::{BatchAead, CpuBatch};
use gpu::HostModel;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Seals with the model, checks against ring and RustCrypto, opens with the model (after
/// tampering some packets) and checks the verdicts and plaintexts.
fn check(model: &HostModel, seed: u64, nkeys: usize, n: usize, batch: usize, max_len: usize) {
    let mut rng = StdRng::seed_from_u64(seed);
    let (keys, mut pkts) = random_batch(&mut rng, nkeys, n, max_len, 40);
    let plain: Vec<Vec<u8>> = pkts.iter().map(|p| p.data.clone()).collect();

    // CPU reference (ring) on a copy.
    let mut cpu_pkts: Vec<Packet> = pkts
        .iter()
        .map(|p| Packet {
            key: p.key,
            nonce: p.nonce,
            aad: p.aad.clone(),
            data: p.data.clone(),
            tag: [0; 16],
        })
        .collect();
    {
        let mut ops = ops(&keys, &mut cpu_pkts);
        CpuBatch.seal(&mut ops);
        assert!(ops.iter().all(|o| o.ok));
    }

    for chunk in pkts.chunks_mut(batch) {
        let mut ops = ops(&keys, chunk);
        model.seal(&mut ops);
        assert!(ops.iter().all(|o| o.ok), "model seal reported failure");
    }
    for (i, (m, c)) in pkts.iter().zip(&cpu_pkts).enumerate() {
        let k = &keys[m.key];
        assert_eq!(
            m.data,
            c.data,
            "packet {i} ({} {} B, aad {} B): ciphertext differs from ring",
            k.cipher(),
            m.data.len(),
            m.aad.len()
        );
        assert_eq!(
            m.tag,
            c.tag,
            "packet {i} ({} {} B, aad {} B): tag differs from ring",
            k.cipher(),
            m.data.len(),
            m.aad.len()
        );
        // RustCrypto as the second oracle on a sample (it is slow in debug builds).
        if i % 16 == 0 {
            let mut d = plain[i].clone();
            let t = rustcrypto_seal(k, &m.nonce, &m.aad, &mut d);
            assert_eq!(d, m.data, "packet {i}: ciphertext differs from RustCrypto");
            assert_eq!(t, m.tag, "packet {i}: tag differs from RustCrypto");
            assert!(rustcrypto_open(k, &m.nonce, &m.aad, &mut d, &t));
            assert_eq!(d, plain[i]);
        }
    }

    // Tamper with a quarter of the packets: a tag bit, a ciphertext bit or an AAD bit.
    let mut tampered = vec![false; n];
    for (i, p) in pkts.iter_mut().enumerate() {
        if rng.random_range(0..4) != 0 {
            continue;
        }
        match rng.random_range(0..3) {
            0 => p.tag[rng.random_range(0..16)] ^= 1 << rng.random_range(0..8),
            1 if !p.data.is_empty() => {
                let j = rng.random_range(0..p.data.len());
                p.data[j] ^= 1 << rng.random_range(0..8);
            }
            2 if !p.aad.is_empty() => {
                let j = rng.random_range(0..p.aad.len());
                p.aad[j] ^= 1 << rng.random_range(0..8);
            }
            _ => p.tag[0] ^= 0x80,
        }
        tampered[i] = true;
    }
    let sealed: Vec<Vec<u8>> = pkts.iter().map(|p| p.data.clone()).collect();
    let mut verdicts = Vec::with_capacity(n);
    for chunk in pkts.chunks_mut(batch) {
        let mut ops = ops(&keys, chunk);
        model.open(&mut ops);
        verdicts.extend(ops.iter().map(|o| o.ok));
    }
    for (i, p) in pkts.iter().enumerate() {
        assert_eq!(
            verdicts[i], !tampered[i],
            "packet {i}: open verdict (tampered = {})",
            tampered[i]
        );
        if tampered[i] {
            assert_eq!(
                p.data, sealed[i],
                "packet {i}: a rejected packet must be left untouched"
            );
        } else {
            assert_eq!(p.data, plain[i], "packet {i}: plaintext differs after open");
        }
        // ring agrees on the verdict.
        let mut d = sealed[i].clone();
        let ring_ok = keys[p.key]
            .open_in_place(p.nonce, &p.aad, &mut d, &p.tag)
            .is_ok();
        assert_eq!(
            ring_ok, verdicts[i],
            "packet {i}: ring disagrees on the verdict"
        );
    }
}

#[test]
fn model_matches_cpu_every_lane_width() {
    for (seed, lanes) in [(1, 8), (2, 16), (3, 32)] {
        check(&HostModel::with_lanes(lanes), seed, 64, 3000, 257, 1600);
    }
}

#[test]
fn model_matches_cpu_long_packets_and_aad() {
    // Lengths far past the MTU exercise many Horner steps per lane.
    let mut rng = StdRng::seed_from_u64(9);
    let (keys, mut pkts) = random_batch(&mut rng, 6, 60, 9000, 300);
    let model = HostModel::new();
    let mut ops_m = ops(&keys, &mut pkts);
    model.seal(&mut ops_m);
    for o in &ops_m {
        let mut d = o.data.to_vec();
        assert!(o.ok);
        assert!(o.key.open_in_place(o.nonce, o.aad, &mut d, o.tag).is_ok());
    }
    check(&HostModel::new(), 10, 8, 400, 100, 9000);
}

#[test]
fn model_matches_cpu_20k_packets() {
    check(&HostModel::new(), 11, 2000, 20_000, 1024, 1500);
}

/// The full 100 000-packet comparison, random lengths 0..=1600 and random keys.
#[test]
fn model_matches_cpu_100k_packets() {
    check(&HostModel::new(), 12, 100_000, 100_000, 4096, 1600);
}
