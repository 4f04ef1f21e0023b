//! What `ovpnctl show` reports about batch crypto: the mode, the backend in use, why there is
//! no GPU when there is none, and counters.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

/// `--gpu auto|off|on`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GpuMode {
    /// Offload a batch when the GPU is measured to be faster for it (the default).
    #[default]
    Auto,
    /// Never use the GPU.
    Off,
    /// Use the GPU for every batch it can take; startup fails without one.
    On,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid --gpu value {0:?}: use auto, off or on")]
pub struct GpuModeError(pub String);

impl std::str::FromStr for GpuMode {
    type Err = GpuModeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(GpuMode::Auto),
            "off" | "no" | "false" | "0" => Ok(GpuMode::Off),
            "on" | "yes" | "true" | "1" => Ok(GpuMode::On),
            _ => Err(GpuModeError(s.to_string())),
        }
    }
}

impl fmt::Display for GpuMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            GpuMode::Auto => "auto",
            GpuMode::Off => "off",
            GpuMode::On => "on",
        })
    }
}

/// Live counters, bumped once per batch (never per packet).
#[derive(Debug, Default)]
pub struct GpuCounters {
    pub gpu_batches: AtomicU64,
    pub gpu_packets: AtomicU64,
    pub gpu_bytes: AtomicU64,
    pub cpu_batches: AtomicU64,
    pub cpu_packets: AtomicU64,
    pub cpu_bytes: AtomicU64,
    /// Packets meant for the GPU that ran on the CPU (queue full, key table full, too large,
    /// or a GPU error).
    pub fallbacks: AtomicU64,
    pub gpu_errors: AtomicU64,
    pub key_installs: AtomicU64,
    pub key_evictions: AtomicU64,
    pub key_wipes: AtomicU64,
}

impl GpuCounters {
    pub(crate) fn add(c: &AtomicU64, v: u64) {
        c.fetch_add(v, Ordering::Relaxed);
    }

    /// A consistent-enough copy for display.
    pub fn snapshot(&self) -> CounterSnapshot {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        CounterSnapshot {
            gpu_batches: g(&self.gpu_batches),
            gpu_packets: g(&self.gpu_packets),
            gpu_bytes: g(&self.gpu_bytes),
            cpu_batches: g(&self.cpu_batches),
            cpu_packets: g(&self.cpu_packets),
            cpu_bytes: g(&self.cpu_bytes),
            fallbacks: g(&self.fallbacks),
            gpu_errors: g(&self.gpu_errors),
            key_installs: g(&self.key_installs),
            key_evictions: g(&self.key_evictions),
            key_wipes: g(&self.key_wipes),
        }
    }
}

/// Plain copy of [`GpuCounters`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CounterSnapshot {
    pub gpu_batches: u64,
    pub gpu_packets: u64,
    pub gpu_bytes: u64,
    pub cpu_batches: u64,
    pub cpu_packets: u64,
    pub cpu_bytes: u64,
    pub fallbacks: u64,
    pub gpu_errors: u64,
    pub key_installs: u64,
    pub key_evictions: u64,
    pub key_wipes: u64,
}

/// The batch-crypto part of the daemon's GET_INFO reply.
#[derive(Debug, Clone, PartialEq)]
pub struct GpuStatus {
    pub mode: GpuMode,
    /// The backend batches go to now ("cpu-ring" or "cuda:0 NVIDIA H100 ...").
    pub backend: String,
    /// The GPU, when one is in use.
    pub device: Option<String>,
    /// Why no GPU is used (no driver, no device, disabled, error...).
    pub reason: Option<String>,
    pub counters: CounterSnapshot,
    /// Current cost estimates for a 64 x 1420 B batch, in microseconds (auto mode).
    pub est_cpu_us: Option<f64>,
    pub est_gpu_us: Option<f64>,
}

impl fmt::Display for GpuStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "crypto: --gpu {}, backend {}", self.mode, self.backend)?;
        if let Some(d) = &self.device {
            write!(f, ", device {d}")?;
        }
        if let Some(r) = &self.reason {
            write!(f, " ({r})")?;
        }
        let c = &self.counters;
        write!(
            f,
            "; gpu: {} batches, {} packets, {} bytes; cpu: {} batches, {} packets, {} bytes; fallbacks {}",
            c.gpu_batches,
            c.gpu_packets,
            c.gpu_bytes,
            c.cpu_batches,
            c.cpu_packets,
            c.cpu_bytes,
            c.fallbacks
        )?;
        if c.gpu_errors > 0 {
            write!(f, ", gpu errors {}", c.gpu_errors)?;
        }
        if self.device.is_some() {
            write!(
                f,
                "; keys: {} installed, {} evicted, {} wiped",
                c.key_installs, c.key_evictions, c.key_wipes
            )?;
        }
        if let (Some(cpu), Some(gpu)) = (self.est_cpu_us, self.est_gpu_us) {
            write!(f, "; est. 64x1420B batch: cpu {cpu:.1} us, gpu {gpu:.1} us")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mode_parses_and_prints() {
        for m in [GpuMode::Auto, GpuMode::Off, GpuMode::On] {
            assert_eq!(m.to_string().parse::<GpuMode>(), Ok(m));
        }
        assert_eq!(" ON ".parse::<GpuMode>(), Ok(GpuMode::On));
        assert!("gpu".parse::<GpuMode>().is_err());
    }

    #[test]
    fn status_display_names_backend_reason_and_counters() {
        let s = GpuStatus {
            mode: GpuMode::Auto,
            backend: "cpu-ring".into(),
            device: None,
            reason: Some("no GPU: libcuda.so not found".into()),
            counters: CounterSnapshot {
                cpu_batches: 3,
                cpu_packets: 192,
                ..Default::default()
            },
            est_cpu_us: None,
            est_gpu_us: None,
        };
        let t = s.to_string();
        assert!(
            t.starts_with("crypto: --gpu auto, backend cpu-ring (no GPU: libcuda.so not found)"),
            "{t}"
        );
        assert!(t.contains("cpu: 3 batches, 192 packets"), "{t}");
        assert!(t.contains("fallbacks 0"), "{t}");
    }
}
