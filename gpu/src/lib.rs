//! Batch AEAD on CUDA, byte-identical to the CPU path, implementing [`crypto::BatchAead`].
//!
//! - [`Offload`]: what the daemon uses. `Offload::new(mode, &GpuConfig::default())` with
//!   `--gpu auto|off|on`; it seals/opens batches on the CPU (ring) or the GPU, whichever the
//!   measured cost model says is faster for that batch (`auto`), and reports a [`GpuStatus`]
//!   for `ovpnctl show`. Without CUDA it runs on the CPU and says why ("no GPU: libcuda.so not
//!   found"); it never panics for lack of a GPU.
//! - [`GpuBatch`]: the CUDA device itself (NVRTC-compiled kernels, keys cached on the device,
//!   pinned double-buffered staging).
//! - [`HostModel`]: the kernels' per-lane C code compiled for the host, lane by lane, used to
//!   prove the device logic against ring and RustCrypto on machines without a GPU.
//! - [`kernels`]: the CUDA sources and their NVRTC compilation; [`probe()`]: GPU detection.

mod abi;
mod device;
pub mod kernels;
mod keycache;
mod layout;
pub mod model;
mod policy;
mod probe;
mod status;

pub use abi::KEY_SLOT_BYTES;
pub use device::{GpuBatch, GpuConfig, GpuError};
pub use model::{HostModel, lanes_for};
pub use policy::{Accelerator, Choice, CostModel, EXPLORE_EVERY, EXPLORE_RATIO, Offload};
pub use probe::{NoGpu, Probe, driver_present, probe};
pub use status::{CounterSnapshot, GpuCounters, GpuMode, GpuModeError, GpuStatus};
