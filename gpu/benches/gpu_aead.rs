//! Batch AEAD throughput and latency: the CPU path (ring on every core), the host model of
//! the kernels (one core), and the CUDA backend when a GPU is present (end to end with PCIe
//! copies, and kernel only on device-resident data), in the same run.
//!
//! `cargo bench -p dco-gpu --bench gpu_aead -- [--quick] [--cipher aes-256-gcm|aes-128-gcm|chacha20-poly1305|all] [--secs S]`
//!
//! Output is a Markdown table. "latency" is the mean wall time of one `seal`/`open` call for
//! the whole batch; Gbit/s counts payload bytes. For `open`, the ciphertext is restored before
//! each call outside the timed region.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crypto::{AeadKey, AeadOp, BatchAead, CipherKind, CpuBatch};
use gpu::{GpuBatch, GpuConfig, GpuCounters, HostModel};

struct Batch {
    keys: Vec<AeadKey>,
    bufs: Vec<Vec<u8>>,
    sealed: Vec<Vec<u8>>,
    tags: Vec<[u8; 16]>,
    nonces: Vec<[u8; 12]>,
    aad: [u8; 8],
}

impl Batch {
    fn new(cipher: CipherKind, n: usize, len: usize) -> Self {
        // 64 peers' keys in rotation, like a busy server's batch.
        let keys: Vec<AeadKey> = (0..64u8)
            .map(|i| {
                AeadKey::new(
                    cipher,
                    &[i.wrapping_mul(31).wrapping_add(7); 32][..cipher.key_len()],
                )
                .unwrap()
            })
            .collect();
        let bufs: Vec<Vec<u8>> = (0..n).map(|i| vec![i as u8; len]).collect();
        let nonces: Vec<[u8; 12]> = (0..n)
            .map(|i| {
                let mut x = [0u8; 12];
                x[..8].copy_from_slice(&(i as u64).to_le_bytes());
                x
            })
            .collect();
        let mut b = Self {
            keys,
            sealed: bufs.clone(),
            bufs,
            tags: vec![[0; 16]; n],
            nonces,
            aad: [0x48, 0, 0, 1, 0, 0, 0, 9],
        };
        {
            let mut ops = b.ops();
            CpuBatch.seal(&mut ops);
        }
        b.sealed = b.bufs.clone();
        b
    }

    fn ops(&mut self) -> Vec<AeadOp<'_>> {
        let nk = self.keys.len();
        let keys = &self.keys;
        let aad = &self.aad;
        self.bufs
            .iter_mut()
            .zip(self.tags.iter_mut())
            .zip(&self.nonces)
            .enumerate()
            .map(|(i, ((d, t), n))| AeadOp {
                key: &keys[i % nk],
                nonce: *n,
                aad,
                data: d,
                tag: t,
                ok: false,
            })
            .collect()
    }

    fn restore(&mut self) {
        for (b, s) in self.bufs.iter_mut().zip(&self.sealed) {
            b.copy_from_slice(s);
        }
    }

    fn bytes(&self) -> u64 {
        self.bufs.iter().map(|b| b.len() as u64).sum()
    }
}

/// Runs `backend` on `b` for about `secs`; returns (mean latency, payload bytes per second).
fn measure(backend: &dyn BatchAead, b: &mut Batch, open: bool, secs: f64) -> (Duration, f64) {
    let mut busy = Duration::ZERO;
    let mut calls = 0u32;
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    while calls < 3 || Instant::now() < deadline {
        if open {
            b.restore();
        }
        let mut ops = b.ops();
        let t = Instant::now();
        if open {
            backend.open(&mut ops);
        } else {
            backend.seal(&mut ops);
        }
        busy += t.elapsed();
        if open {
            assert!(ops.iter().all(|o| o.ok), "{}: open failed", backend.name());
        }
        black_box(&ops);
        calls += 1;
    }
    let lat = busy / calls;
    (
        lat,
        b.bytes() as f64 * f64::from(calls) / busy.as_secs_f64(),
    )
}

/// The CPU path on `threads` cores at once; returns (mean latency, aggregate bytes/s).
fn measure_cpu_all_cores(
    threads: usize,
    cipher: CipherKind,
    n: usize,
    len: usize,
    open: bool,
    secs: f64,
) -> (Duration, f64) {
    let results: Vec<(Duration, f64)> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(move || {
                    let mut b = Batch::new(cipher, n, len);
                    measure(&CpuBatch, &mut b, open, secs)
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let lat = results.iter().map(|r| r.0).sum::<Duration>() / threads as u32;
    (lat, results.iter().map(|r| r.1).sum())
}

fn row(
    backend: &str,
    cipher: CipherKind,
    open: bool,
    len: usize,
    n: usize,
    lat: Duration,
    bps: f64,
) {
    println!(
        "| {backend} | {cipher} | {} | {len} | {n} | {:.1} | {:.2} | {:.2} |",
        if open { "open" } else { "seal" },
        lat.as_secs_f64() * 1e6,
        bps * 8.0 / 1e9,
        bps / len as f64 / 1e6
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let secs: f64 = arg("--secs")
        .and_then(|s| s.parse().ok())
        .unwrap_or(if quick { 0.05 } else { 0.3 });
    let ciphers: Vec<CipherKind> = match arg("--cipher").as_deref() {
        None => vec![CipherKind::Aes256Gcm],
        Some("all") => CipherKind::ALL.to_vec(),
        Some(c) => vec![
            c.parse()
                .expect("cipher: aes-256-gcm, aes-128-gcm, chacha20-poly1305 or all"),
        ],
    };
    let sizes = [64usize, 512, 1420];
    let batches: Vec<usize> = if quick {
        vec![64, 1024, 16384]
    } else {
        vec![64, 256, 1024, 4096, 16384]
    };
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);

    let counters = Arc::new(GpuCounters::default());
    let gpu_cfg = GpuConfig {
        staging_bytes: 64 << 20,
        wait_when_busy: true,
        ..GpuConfig::default()
    };
    let gpu = match GpuBatch::new(&gpu_cfg, counters.clone()) {
        Ok(g) => {
            eprintln!("GPU: {}", g.device_name());
            Some(g)
        }
        Err(e) => {
            eprintln!("GPU benchmarks SKIPPED: {e}");
            None
        }
    };
    let model = HostModel::new();

    println!("| backend | cipher | op | bytes/pkt | batch | latency us | Gbit/s | Mpkt/s |");
    println!("|---|---|---|---|---|---|---|---|");
    for &cipher in &ciphers {
        for &len in &sizes {
            for &n in &batches {
                for open in [true, false] {
                    let (lat, bps) = measure_cpu_all_cores(threads, cipher, n, len, open, secs);
                    row(
                        &format!("cpu-ring x{threads} cores"),
                        cipher,
                        open,
                        len,
                        n,
                        lat,
                        bps,
                    );
                    let mut b = Batch::new(cipher, n, len);
                    let (lat, bps) = measure(&CpuBatch, &mut b, open, secs);
                    row("cpu-ring 1 core", cipher, open, len, n, lat, bps);
                    if let Some(g) = &gpu {
                        let (lat, bps) = measure(g, &mut b, open, secs);
                        row("gpu incl. PCIe copies", cipher, open, len, n, lat, bps);
                        if open {
                            b.restore();
                        }
                        let ops = b.ops();
                        match g.time_kernel_only(&ops, open, 50) {
                            Ok(t) => row(
                                "gpu kernel only",
                                cipher,
                                open,
                                len,
                                n,
                                t,
                                b.bytes() as f64 / t.as_secs_f64(),
                            ),
                            Err(e) => eprintln!("kernel-only timing failed: {e}"),
                        }
                    }
                    // The host model is the GPU's code on one CPU core: slow, shown for scale.
                    if n == 1024 {
                        let (lat, bps) = measure(&model, &mut b, open, secs);
                        row(
                            "host model 1 core (not GPU speed)",
                            cipher,
                            open,
                            len,
                            n,
                            lat,
                            bps,
                        );
                    }
                }
            }
        }
    }
    if gpu.is_some() {
        eprintln!("GPU counters: {:?}", counters.snapshot());
    }
}
