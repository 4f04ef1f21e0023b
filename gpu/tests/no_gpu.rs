//! The backend on a machine without a usable GPU, and the offload policy with the host model
//! standing in for the GPU. Runs everywhere; on a machine with a GPU the "no GPU" checks are
//! skipped loudly.

mod common;

use common::*;
use crypto::{BatchAead, CpuBatch};
use gpu::{GpuConfig, GpuMode, HostModel, NoGpu, Offload};
use rand::SeedableRng;
use rand::rngs::StdRng;

fn gpu_usable() -> bool {
    gpu::probe().is_ok()
}

#[test]
fn probe_reports_why_there_is_no_gpu() {
    if gpu_usable() {
        eprintln!("SKIPPED probe_reports_why_there_is_no_gpu: this machine has a usable GPU");
        return;
    }
    let why = gpu::probe().unwrap_err();
    if !gpu::driver_present() {
        assert_eq!(why, NoGpu::NoDriver);
        assert_eq!(
            why.to_string(),
            "no GPU: libcuda.so not found (no NVIDIA driver installed)"
        );
    }
    eprintln!("probe: {why}");
}

#[test]
fn auto_without_gpu_runs_on_cpu_and_says_why() {
    if gpu_usable() {
        eprintln!(
            "SKIPPED auto_without_gpu_runs_on_cpu_and_says_why: this machine has a usable GPU"
        );
        return;
    }
    let why = gpu::probe().unwrap_err();
    let off = Offload::new(GpuMode::Auto, &GpuConfig::default()).expect("auto never fails");
    assert_eq!(off.name(), "cpu-ring");
    let mut rng = StdRng::seed_from_u64(5);
    let (keys, mut pkts) = random_batch(&mut rng, 8, 300, 1500, 16);
    let mut reference: Vec<Packet> = pkts
        .iter()
        .map(|p| Packet {
            key: p.key,
            nonce: p.nonce,
            aad: p.aad.clone(),
            data: p.data.clone(),
            tag: [0; 16],
        })
        .collect();
    off.seal(&mut ops(&keys, &mut pkts));
    CpuBatch.seal(&mut ops(&keys, &mut reference));
    for (a, b) in pkts.iter().zip(&reference) {
        assert_eq!((&a.data, a.tag), (&b.data, b.tag));
    }
    let mut o = ops(&keys, &mut pkts);
    off.open(&mut o);
    assert!(o.iter().all(|x| x.ok));
    let st = off.status();
    assert_eq!(st.backend, "cpu-ring");
    assert_eq!(st.device, None);
    assert_eq!(st.reason.as_deref(), Some(why.to_string().as_str()));
    assert_eq!(st.counters.cpu_batches, 2);
    assert_eq!(st.counters.cpu_packets, 600);
    assert_eq!(st.counters.gpu_batches, 0);
    let text = st.to_string();
    assert!(text.contains("backend cpu-ring (no GPU: "), "{text}");
    eprintln!("status: {text}");
}

#[test]
fn on_without_gpu_is_an_error_and_off_never_probes() {
    if gpu_usable() {
        eprintln!(
            "SKIPPED on_without_gpu_is_an_error_and_off_never_probes: this machine has a usable GPU"
        );
        return;
    }
    let err = Offload::new(GpuMode::On, &GpuConfig::default())
        .err()
        .expect("--gpu on needs a GPU");
    assert!(err.to_string().starts_with("no GPU"), "{err}");
    let off = Offload::new(GpuMode::Off, &GpuConfig::default()).unwrap();
    assert_eq!(
        off.status().reason.as_deref(),
        Some("GPU disabled (--gpu off)")
    );
}

/// `--gpu on` with the host model as the accelerator: every batch goes to it, results match
/// ring byte for byte, and the status names it.
#[test]
fn on_mode_routes_every_batch_to_the_accelerator() {
    let off = Offload::with_accelerator(GpuMode::On, Box::new(HostModel::new()));
    assert_eq!(off.name(), "host-model");
    let mut rng = StdRng::seed_from_u64(6);
    let (keys, mut pkts) = random_batch(&mut rng, 16, 500, 1500, 16);
    let mut reference: Vec<Packet> = pkts
        .iter()
        .map(|p| Packet {
            key: p.key,
            nonce: p.nonce,
            aad: p.aad.clone(),
            data: p.data.clone(),
            tag: [0; 16],
        })
        .collect();
    for c in pkts.chunks_mut(64) {
        off.seal(&mut ops(&keys, c));
    }
    CpuBatch.seal(&mut ops(&keys, &mut reference));
    for (a, b) in pkts.iter().zip(&reference) {
        assert_eq!((&a.data, a.tag), (&b.data, b.tag));
    }
    let st = off.status();
    assert_eq!(st.backend, "host-model");
    assert_eq!(st.counters.gpu_batches, 500usize.div_ceil(64) as u64);
    assert_eq!(st.counters.gpu_packets, 500);
    assert_eq!(st.counters.cpu_batches, 0);
    for k in &keys {
        off.forget_key(k.id());
    }
}

/// `--gpu auto` with the host model: it is far slower than ring here, so once both are
/// measured nearly everything runs on the CPU; exploration still sends the odd batch to the
/// accelerator, and results are identical whichever side ran them.
#[test]
fn auto_mode_measures_both_and_keeps_results_identical() {
    let off = Offload::with_accelerator(GpuMode::Auto, Box::new(HostModel::new()));
    let mut rng = StdRng::seed_from_u64(7);
    let (keys, mut pkts) = random_batch(&mut rng, 16, 64 * 200, 1500, 16);
    let mut reference: Vec<Packet> = pkts
        .iter()
        .map(|p| Packet {
            key: p.key,
            nonce: p.nonce,
            aad: p.aad.clone(),
            data: p.data.clone(),
            tag: [0; 16],
        })
        .collect();
    for c in pkts.chunks_mut(64) {
        off.seal(&mut ops(&keys, c));
    }
    CpuBatch.seal(&mut ops(&keys, &mut reference));
    for (a, b) in pkts.iter().zip(&reference) {
        assert_eq!((&a.data, a.tag), (&b.data, b.tag));
    }
    for c in pkts.chunks_mut(64) {
        let mut o = ops(&keys, c);
        off.open(&mut o);
        assert!(o.iter().all(|x| x.ok));
    }
    let st = off.status();
    let c = st.counters;
    assert_eq!(c.gpu_batches + c.cpu_batches, 400);
    // Unmeasured accelerator: CPU first; exploration is what measures the accelerator.
    assert!(
        c.gpu_batches >= 1,
        "exploration never tried the accelerator: {st}"
    );
    assert!(c.cpu_batches > c.gpu_batches, "{st}");
    eprintln!("status: {st}");
}
