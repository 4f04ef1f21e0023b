//! `--gpu auto|off|on`: which backend runs each batch.
//!
//! In `auto`, every batch goes where it is predicted to finish sooner. Each backend has a
//! linear cost model fitted online to its own measured batches (wall time of the call, so it
//! includes queueing, PCIe copies and the load of the moment):
//!
//! - CPU: `cost = a * packets + b * KiB`
//! - GPU: `cost = latency + a * packets + b * KiB`
//!
//! The fits forget old samples exponentially, so they follow load changes. One batch in
//! [`EXPLORE_EVERY`] runs on the backend that was *not* predicted (when the prediction is
//! within [`EXPLORE_RATIO`]), so the losing side keeps being re-measured. A GPU is calibrated
//! at start with a few synthetic batches on both sides.

use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crypto::{AeadKey, AeadOp, BatchAead, CipherKind, CpuBatch};

use crate::device::{GpuBatch, GpuConfig};
use crate::model::HostModel;
use crate::probe::NoGpu;
use crate::status::{GpuCounters, GpuMode, GpuStatus};

/// A batch backend that can stand in for the CPU: the CUDA device, or (in tests) the host
/// model of the kernels.
/// Keys are dropped with [`BatchAead::forget_key`].
pub trait Accelerator: BatchAead {
    /// Set when the accelerator hit an error and stopped taking batches.
    fn failure(&self) -> Option<String> {
        None
    }
}

impl Accelerator for GpuBatch {
    fn failure(&self) -> Option<String> {
        if self.has_failed() {
            Some(self.last_error().unwrap_or_else(|| "CUDA error".into()))
        } else {
            None
        }
    }
}

impl Accelerator for HostModel {}

/// One exploration batch in this many.
pub const EXPLORE_EVERY: u64 = 64;
/// Explore only when the loser is predicted at most this many times slower.
pub const EXPLORE_RATIO: f64 = 4.0;
/// Per-sample forgetting factor of the cost fits.
const FORGET: f64 = 0.98;

/// Exponentially weighted least squares fit of `y = w . x` with a tiny, scale-free ridge term.
#[derive(Debug, Clone)]
struct Fit<const N: usize> {
    sxx: [[f64; N]; N],
    sxy: [f64; N],
    samples: u64,
    w: [f64; N],
}

impl<const N: usize> Fit<N> {
    fn new() -> Self {
        Self {
            sxx: [[0.0; N]; N],
            sxy: [0.0; N],
            samples: 0,
            w: [0.0; N],
        }
    }

    fn observe(&mut self, x: [f64; N], y: f64) {
        for i in 0..N {
            for j in 0..N {
                self.sxx[i][j] = FORGET * self.sxx[i][j] + x[i] * x[j];
            }
            self.sxy[i] = FORGET * self.sxy[i] + x[i] * y;
        }
        self.samples += 1;
        self.solve();
    }

    /// Solves (Sxx + eps I) w = Sxy by Gaussian elimination with partial pivoting; keeps the
    /// old weights if the system is degenerate.
    #[allow(clippy::needless_range_loop)] // index form mirrors the matrix algebra
    fn solve(&mut self) {
        let mut a = self.sxx;
        let mut b = self.sxy;
        // Ridge scaled per feature, so features of very different magnitude are treated alike.
        for (i, row) in a.iter_mut().enumerate() {
            row[i] += 1e-9 * row[i] + 1e-12;
        }
        for col in 0..N {
            let piv = (col..N)
                .max_by(|&p, &q| a[p][col].abs().total_cmp(&a[q][col].abs()))
                .unwrap_or(col);
            if a[piv][col].abs() < 1e-300 {
                return;
            }
            a.swap(col, piv);
            b.swap(col, piv);
            for r in col + 1..N {
                let f = a[r][col] / a[col][col];
                for c in col..N {
                    a[r][c] -= f * a[col][c];
                }
                b[r] -= f * b[col];
            }
        }
        let mut w = [0.0; N];
        for r in (0..N).rev() {
            let mut s = b[r];
            for c in r + 1..N {
                s -= a[r][c] * w[c];
            }
            w[r] = s / a[r][r];
        }
        if w.iter().all(|v| v.is_finite()) {
            self.w = w;
        }
    }

    fn predict(&self, x: [f64; N]) -> f64 {
        (0..N).map(|i| self.w[i] * x[i]).sum::<f64>().max(0.0)
    }
}

/// Which backend should run a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    Cpu,
    Gpu,
}

/// The online cost models of both backends and the decision rule.
#[derive(Debug, Clone)]
pub struct CostModel {
    cpu: Fit<2>,
    gpu: Fit<3>,
}

impl Default for CostModel {
    fn default() -> Self {
        Self::new()
    }
}

fn kib(bytes: u64) -> f64 {
    bytes as f64 / 1024.0
}

impl CostModel {
    pub fn new() -> Self {
        Self {
            cpu: Fit::new(),
            gpu: Fit::new(),
        }
    }

    /// Records a batch the CPU ran in `us` microseconds.
    pub fn observe_cpu(&mut self, packets: u64, bytes: u64, us: f64) {
        self.cpu.observe([packets as f64, kib(bytes)], us);
    }

    /// Records a batch the GPU ran in `us` microseconds (wall time of the whole call).
    pub fn observe_gpu(&mut self, packets: u64, bytes: u64, us: f64) {
        self.gpu.observe([1.0, packets as f64, kib(bytes)], us);
    }

    /// Predicted CPU time in microseconds, once measured.
    pub fn predict_cpu(&self, packets: u64, bytes: u64) -> Option<f64> {
        (self.cpu.samples > 0).then(|| self.cpu.predict([packets as f64, kib(bytes)]))
    }

    /// Predicted GPU time in microseconds, once measured.
    pub fn predict_gpu(&self, packets: u64, bytes: u64) -> Option<f64> {
        (self.gpu.samples > 0).then(|| self.gpu.predict([1.0, packets as f64, kib(bytes)]))
    }

    /// The faster backend for this batch; `explore` asks for the other one when it is close.
    pub fn choose(&self, packets: u64, bytes: u64, explore: bool) -> Choice {
        let (c, g) = match (
            self.predict_cpu(packets, bytes),
            self.predict_gpu(packets, bytes),
        ) {
            (Some(c), Some(g)) => (c, g),
            // A side never measured yet: exploration batches go there; otherwise the CPU,
            // which never needs calibrating to be correct.
            (Some(_), None) if explore => return Choice::Gpu,
            _ => return Choice::Cpu,
        };
        let best = if g < c { Choice::Gpu } else { Choice::Cpu };
        if explore {
            let (win, lose) = if g < c { (g, c) } else { (c, g) };
            if lose <= EXPLORE_RATIO * win.max(1.0) {
                return match best {
                    Choice::Cpu => Choice::Gpu,
                    Choice::Gpu => Choice::Cpu,
                };
            }
        }
        best
    }
}

const LAST_NONE: u8 = 0;
const LAST_CPU: u8 = 1;
const LAST_GPU: u8 = 2;

/// The batch-crypto backend the daemon uses: the CPU (ring), and a GPU when there is one and
/// the mode allows it. Implements [`BatchAead`]; results never depend on where a batch ran.
pub struct Offload {
    mode: GpuMode,
    accel: Option<Box<dyn Accelerator>>,
    reason: Option<String>,
    counters: Arc<GpuCounters>,
    model: Mutex<CostModel>,
    decisions: AtomicU64,
    last: AtomicU8,
    name: String,
}

impl Offload {
    /// Builds the backend for `--gpu mode`. `on` without a usable GPU is an error (the
    /// operator asked for one); `auto` without one runs on the CPU and says why in
    /// [`Offload::status`].
    pub fn new(mode: GpuMode, cfg: &GpuConfig) -> Result<Self, NoGpu> {
        if mode == GpuMode::Off {
            return Ok(Self::cpu_only(mode, NoGpu::Disabled.to_string()));
        }
        let counters = Arc::new(GpuCounters::default());
        match GpuBatch::new(cfg, counters.clone()) {
            Ok(gpu) => {
                tracing::info!(device = gpu.device_name(), %mode, "GPU batch crypto ready");
                let o = Self::build(mode, Some(Box::new(gpu)), None, counters);
                if mode == GpuMode::Auto {
                    o.calibrate();
                }
                Ok(o)
            }
            Err(e) if mode == GpuMode::On => Err(e),
            Err(e) => {
                tracing::info!(reason = %e, "batch crypto on the CPU");
                Ok(Self::build(mode, None, Some(e.to_string()), counters))
            }
        }
    }

    /// CPU only, with the reason shown in the status.
    pub fn cpu_only(mode: GpuMode, reason: String) -> Self {
        Self::build(mode, None, Some(reason), Arc::new(GpuCounters::default()))
    }

    /// With a given accelerator (tests use the host model in place of a GPU).
    pub fn with_accelerator(mode: GpuMode, accel: Box<dyn Accelerator>) -> Self {
        Self::build(mode, Some(accel), None, Arc::new(GpuCounters::default()))
    }

    fn build(
        mode: GpuMode,
        accel: Option<Box<dyn Accelerator>>,
        reason: Option<String>,
        counters: Arc<GpuCounters>,
    ) -> Self {
        let name = match (&accel, mode) {
            (Some(a), GpuMode::On) => a.name().to_string(),
            (Some(a), _) => format!("auto: cpu-ring + {}", a.name()),
            (None, _) => CpuBatch.name().to_string(),
        };
        Self {
            mode,
            accel,
            reason,
            counters,
            model: Mutex::new(CostModel::new()),
            decisions: AtomicU64::new(0),
            last: AtomicU8::new(LAST_NONE),
            name,
        }
    }

    /// Shared counters (the GPU backend bumps fallbacks and key events in them).
    pub fn counters(&self) -> &Arc<GpuCounters> {
        &self.counters
    }

    /// Drops a deleted key from the GPU's key table (call on DEL_KEY and when a peer goes).
    pub fn forget_key(&self, id: u64) {
        if let Some(a) = &self.accel {
            a.forget_key(id);
        }
    }

    /// A copy of the cost model (for status and tests).
    pub fn cost_model(&self) -> CostModel {
        match self.model.lock() {
            Ok(m) => m.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// What `ovpnctl show` prints about batch crypto.
    pub fn status(&self) -> GpuStatus {
        let failure = self.accel.as_ref().and_then(|a| a.failure());
        let backend = match (&self.accel, self.last.load(Ordering::Relaxed)) {
            (Some(_), _) if failure.is_some() => CpuBatch.name().to_string(),
            (Some(a), LAST_GPU) => a.name().to_string(),
            (Some(a), LAST_NONE) if self.mode == GpuMode::On => a.name().to_string(),
            _ => CpuBatch.name().to_string(),
        };
        let reason = match failure {
            Some(f) => Some(format!("GPU disabled after an error: {f}")),
            None => self.reason.clone(),
        };
        let m = self.cost_model();
        GpuStatus {
            mode: self.mode,
            backend,
            device: self.accel.as_ref().map(|a| a.name().to_string()),
            reason,
            counters: self.counters.snapshot(),
            est_cpu_us: m.predict_cpu(64, 64 * 1420),
            est_gpu_us: m.predict_gpu(64, 64 * 1420),
        }
    }

    /// Runs synthetic batches on both backends to seed the cost models.
    fn calibrate(&self) {
        let Some(accel) = &self.accel else { return };
        let Ok(key) = AeadKey::new(CipherKind::Aes256Gcm, &[0x42; 32]) else {
            return;
        };
        for &(count, len) in &[
            (16usize, 1420usize),
            (256, 1420),
            (2048, 1420),
            (64, 64),
            (1024, 64),
            (4096, 512),
        ] {
            let mut bufs = vec![vec![0u8; len]; count];
            let mut tags = vec![[0u8; 16]; count];
            for round in 0..3 {
                let mut ops: Vec<AeadOp<'_>> = bufs
                    .iter_mut()
                    .zip(tags.iter_mut())
                    .enumerate()
                    .map(|(i, (d, t))| AeadOp {
                        key: &key,
                        nonce: [i as u8; 12],
                        aad: &[0u8; 8],
                        data: d,
                        tag: t,
                        ok: false,
                    })
                    .collect();
                let bytes = (count * len) as u64;
                let t = Instant::now();
                accel.seal(&mut ops);
                let g = t.elapsed().as_secs_f64() * 1e6;
                let t = Instant::now();
                CpuBatch.seal(&mut ops);
                let c = t.elapsed().as_secs_f64() * 1e6;
                // The first round warms caches and the key table; keep the rest.
                if round > 0 {
                    let mut m = match self.model.lock() {
                        Ok(m) => m,
                        Err(p) => p.into_inner(),
                    };
                    m.observe_gpu(count as u64, bytes, g);
                    m.observe_cpu(count as u64, bytes, c);
                }
            }
        }
        accel.forget_key(key.id());
    }

    fn run(&self, ops: &mut [AeadOp<'_>], open: bool) {
        if ops.is_empty() {
            return;
        }
        let packets = ops.len() as u64;
        let bytes: u64 = ops.iter().map(|o| o.data.len() as u64).sum();
        let accel = match (&self.accel, self.mode) {
            (Some(a), GpuMode::Auto | GpuMode::On) if a.failure().is_none() => Some(a),
            _ => None,
        };
        let choice = match (accel, self.mode) {
            (None, _) => Choice::Cpu,
            (Some(_), GpuMode::On) => Choice::Gpu,
            (Some(_), _) => {
                let n = self.decisions.fetch_add(1, Ordering::Relaxed);
                let explore = n % EXPLORE_EVERY == EXPLORE_EVERY - 1;
                match self.model.lock() {
                    Ok(m) => m.choose(packets, bytes, explore),
                    Err(_) => Choice::Cpu,
                }
            }
        };
        let measure = self.mode == GpuMode::Auto && accel.is_some();
        let start = measure.then(Instant::now);
        match (choice, accel) {
            (Choice::Gpu, Some(a)) => {
                if open {
                    a.open(ops)
                } else {
                    a.seal(ops)
                }
                GpuCounters::add(&self.counters.gpu_batches, 1);
                GpuCounters::add(&self.counters.gpu_packets, packets);
                GpuCounters::add(&self.counters.gpu_bytes, bytes);
                self.last.store(LAST_GPU, Ordering::Relaxed);
            }
            _ => {
                if open {
                    CpuBatch.open(ops)
                } else {
                    CpuBatch.seal(ops)
                }
                GpuCounters::add(&self.counters.cpu_batches, 1);
                GpuCounters::add(&self.counters.cpu_packets, packets);
                GpuCounters::add(&self.counters.cpu_bytes, bytes);
                self.last.store(LAST_CPU, Ordering::Relaxed);
            }
        }
        if let Some(t0) = start {
            let us = t0.elapsed().as_secs_f64() * 1e6;
            if let Ok(mut m) = self.model.lock() {
                match choice {
                    Choice::Gpu => m.observe_gpu(packets, bytes, us),
                    Choice::Cpu => m.observe_cpu(packets, bytes, us),
                }
            }
        }
    }
}

impl BatchAead for Offload {
    fn name(&self) -> &str {
        &self.name
    }

    fn seal(&self, ops: &mut [AeadOp<'_>]) {
        self.run(ops, false);
    }

    fn open(&self, ops: &mut [AeadOp<'_>]) {
        self.run(ops, true);
    }

    fn forget_key(&self, key_id: u64) {
        Offload::forget_key(self, key_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds synthetic costs (no clock involved) and checks the decision boundary.
    #[test]
    fn cost_model_picks_the_cheaper_backend() {
        let mut m = CostModel::new();
        assert_eq!(
            m.choose(1000, 1_420_000, false),
            Choice::Cpu,
            "unmeasured -> CPU"
        );
        // CPU: 0.05 us per packet + 0.2 us per KiB. GPU: 30 us + 0.002 us/packet + 0.02 us/KiB.
        let cpu = |p: u64, b: u64| 0.05 * p as f64 + 0.2 * kib(b);
        let gpu = |p: u64, b: u64| 30.0 + 0.002 * p as f64 + 0.02 * kib(b);
        for &(p, len) in &[
            (16u64, 1420u64),
            (64, 64),
            (256, 512),
            (1024, 1420),
            (4096, 64),
        ] {
            for _ in 0..5 {
                m.observe_cpu(p, p * len, cpu(p, p * len));
                m.observe_gpu(p, p * len, gpu(p, p * len));
            }
        }
        let c = m.predict_cpu(64, 64 * 1420).unwrap();
        let g = m.predict_gpu(64, 64 * 1420).unwrap();
        assert!((c - cpu(64, 64 * 1420)).abs() < 0.5, "cpu fit {c}");
        assert!((g - gpu(64, 64 * 1420)).abs() < 0.5, "gpu fit {g}");
        // Small batch: CPU. Large batch of big packets: GPU.
        assert_eq!(m.choose(8, 8 * 1420, false), Choice::Cpu);
        assert_eq!(m.choose(4096, 4096 * 1420, false), Choice::Gpu);
        // Exploration flips a close call, not a hopeless one.
        assert_eq!(m.choose(128, 128 * 1420, true), Choice::Cpu);
        assert_eq!(m.choose(1, 64, true), Choice::Cpu);
    }

    #[test]
    fn cost_model_follows_load_changes() {
        let mut m = CostModel::new();
        for _ in 0..50 {
            m.observe_cpu(512, 512 * 1420, 150.0);
            m.observe_gpu(512, 512 * 1420, 60.0);
            m.observe_cpu(64, 64 * 1420, 19.0);
            m.observe_gpu(64, 64 * 1420, 40.0);
        }
        assert_eq!(m.choose(512, 512 * 1420, false), Choice::Gpu);
        // The GPU becomes busy (shared with other work): its latency triples.
        for _ in 0..200 {
            m.observe_gpu(512, 512 * 1420, 180.0);
            m.observe_gpu(64, 64 * 1420, 120.0);
        }
        assert_eq!(m.choose(512, 512 * 1420, false), Choice::Cpu);
    }
}
