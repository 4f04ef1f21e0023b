//! The real CUDA kernels against the CPU path. Needs an NVIDIA GPU, its driver and NVRTC;
//! without them every test here skips loudly (prints SKIPPED on stderr and returns).
//!
//! Run on a GPU machine: `cargo test -p dco-gpu --release --test gpu_device -- --nocapture`
//! (set DCO_REQUIRE_GPU=1 to turn the skips into failures).

mod common;

use std::sync::Arc;

use common::*;
use crypto::{BatchAead, CpuBatch};
use gpu::{GpuBatch, GpuConfig, GpuCounters, GpuMode, Offload};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn gpu_or_skip(test: &str, cfg: &GpuConfig) -> Option<(GpuBatch, Arc<GpuCounters>)> {
    let counters = Arc::new(GpuCounters::default());
    match GpuBatch::new(cfg, counters.clone()) {
        Ok(g) => {
            eprintln!("{test}: running on {}", g.device_name());
            Some((g, counters))
        }
        Err(e) => {
            if std::env::var_os("DCO_REQUIRE_GPU").is_some() {
                panic!("DCO_REQUIRE_GPU is set but {e}");
            }
            eprintln!("SKIPPED {test}: {e}");
            None
        }
    }
}

fn copy_of(pkts: &[Packet]) -> Vec<Packet> {
    pkts.iter()
        .map(|p| Packet {
            key: p.key,
            nonce: p.nonce,
            aad: p.aad.clone(),
            data: p.data.clone(),
            tag: p.tag,
        })
        .collect()
}

/// 10^6 packets, random keys, lengths and AAD, all ciphers, batches of random size: seal on
/// the GPU equals ring; open on the GPU restores the plaintext; tampered packets are rejected
/// and left untouched.
#[test]
fn gpu_matches_cpu_on_a_million_packets() {
    let Some((g, counters)) = gpu_or_skip(
        "gpu_matches_cpu_on_a_million_packets",
        &GpuConfig::default(),
    ) else {
        return;
    };
    let mut rng = StdRng::seed_from_u64(0x6770);
    let total = 1_000_000usize;
    let round = 100_000usize;
    for r in 0..total / round {
        let (keys, mut pkts) = random_batch(&mut rng, 3000, round, 1600, 40);
        let plain = copy_of(&pkts);
        let mut cpu = copy_of(&pkts);
        CpuBatch.seal(&mut ops(&keys, &mut cpu));
        let mut i = 0;
        while i < pkts.len() {
            let n = rng.random_range(1..=16384).min(pkts.len() - i);
            let mut o = ops(&keys, &mut pkts[i..i + n]);
            g.seal(&mut o);
            assert!(o.iter().all(|x| x.ok), "round {r}: GPU seal failed");
            i += n;
        }
        for (j, (a, b)) in pkts.iter().zip(&cpu).enumerate() {
            assert_eq!(
                a.data, b.data,
                "round {r} packet {j}: ciphertext differs from ring"
            );
            assert_eq!(a.tag, b.tag, "round {r} packet {j}: tag differs from ring");
        }
        let mut tampered = vec![false; pkts.len()];
        for (j, p) in pkts.iter_mut().enumerate() {
            if j % 7 == 3 {
                p.tag[j % 16] ^= 1 << (j % 8);
                tampered[j] = true;
            }
        }
        let sealed = copy_of(&pkts);
        let mut first = Vec::with_capacity(pkts.len());
        for c in pkts.chunks_mut(8192) {
            let mut o = ops(&keys, c);
            g.open(&mut o);
            first.extend(o.iter().map(|x| x.ok));
        }
        // A second pass with another batch size must agree with the first.
        let mut again = copy_of(&sealed);
        let mut verdicts = Vec::with_capacity(again.len());
        for c in again.chunks_mut(4096) {
            let mut o = ops(&keys, c);
            g.open(&mut o);
            verdicts.extend(o.iter().map(|x| x.ok));
        }
        for j in 0..pkts.len() {
            assert_eq!(verdicts[j], !tampered[j], "round {r} packet {j}: verdict");
            assert_eq!(
                first[j], verdicts[j],
                "round {r} packet {j}: verdict differs between passes"
            );
            if tampered[j] {
                assert_eq!(
                    again[j].data, sealed[j].data,
                    "round {r} packet {j}: rejected packet modified"
                );
            } else {
                assert_eq!(
                    again[j].data, plain[j].data,
                    "round {r} packet {j}: plaintext"
                );
                assert_eq!(
                    pkts[j].data, plain[j].data,
                    "round {r} packet {j}: plaintext (first pass)"
                );
            }
        }
        for k in &keys {
            g.forget_key(k.id());
        }
    }
    let c = counters.snapshot();
    eprintln!("counters: {c:?}");
    assert_eq!(c.gpu_errors, 0);
    assert!(!g.has_failed());
}

/// Long packets (up to 9000 B) and long AAD, every lane width the launcher picks.
#[test]
fn gpu_matches_cpu_on_long_packets() {
    let Some((g, _)) = gpu_or_skip("gpu_matches_cpu_on_long_packets", &GpuConfig::default()) else {
        return;
    };
    let mut rng = StdRng::seed_from_u64(0x6771);
    for max_len in [64, 256, 768, 1500, 9000] {
        let (keys, mut pkts) = random_batch(&mut rng, 10, 2000, max_len, 300);
        let mut cpu = copy_of(&pkts);
        CpuBatch.seal(&mut ops(&keys, &mut cpu));
        g.seal(&mut ops(&keys, &mut pkts));
        for (a, b) in pkts.iter().zip(&cpu) {
            assert_eq!((&a.data, a.tag), (&b.data, b.tag), "max_len {max_len}");
        }
    }
}

/// A key table smaller than the keys in use: LRU eviction and CPU fallback for the excess
/// keep results exact; forgotten keys are wiped.
#[test]
fn gpu_key_table_pressure_and_wipe() {
    let cfg = GpuConfig {
        key_slots: 8,
        ..GpuConfig::default()
    };
    let Some((g, counters)) = gpu_or_skip("gpu_key_table_pressure_and_wipe", &cfg) else {
        return;
    };
    let mut rng = StdRng::seed_from_u64(0x6772);
    let (keys, mut pkts) = random_batch(&mut rng, 50, 5000, 1500, 16);
    let mut cpu = copy_of(&pkts);
    CpuBatch.seal(&mut ops(&keys, &mut cpu));
    for c in pkts.chunks_mut(1000) {
        g.seal(&mut ops(&keys, c));
    }
    for (a, b) in pkts.iter().zip(&cpu) {
        assert_eq!((&a.data, a.tag), (&b.data, b.tag));
    }
    for k in &keys {
        g.forget_key(k.id());
    }
    let c = counters.snapshot();
    eprintln!("counters: {c:?}");
    assert!(
        c.fallbacks > 0,
        "more keys than slots must fall back to the CPU"
    );
    assert!(c.key_evictions > 0);
    assert!(c.key_wipes > 0);
}

/// `--gpu on` through the policy layer reports the device.
#[test]
fn gpu_offload_on_reports_device() {
    if gpu_or_skip("gpu_offload_on_reports_device", &GpuConfig::default()).is_none() {
        return;
    }
    let off = Offload::new(GpuMode::On, &GpuConfig::default()).unwrap();
    let mut rng = StdRng::seed_from_u64(0x6773);
    let (keys, mut pkts) = random_batch(&mut rng, 4, 1024, 1420, 8);
    off.seal(&mut ops(&keys, &mut pkts));
    let st = off.status();
    eprintln!("status: {st}");
    assert!(st.backend.starts_with("cuda:"), "{st}");
    assert_eq!(st.counters.gpu_packets, 1024);
}
