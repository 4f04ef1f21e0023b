//! Finding out, without panicking, whether a CUDA GPU can be used. cudarc's loader panics when
//! libcuda or libnvrtc is missing, so the libraries are checked first and every first call into
//! them is wrapped in `catch_unwind` as a backstop.

use crate::kernels::panic_text;

/// Why the GPU backend is not available. The messages are what `ovpnctl show` prints.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoGpu {
    #[error("no GPU: libcuda.so not found (no NVIDIA driver installed)")]
    NoDriver,
    #[error("no GPU: cuInit failed: {0}")]
    Init(String),
    #[error("no GPU: the NVIDIA driver reports no CUDA device")]
    NoDevice,
    #[error("no GPU: device {ordinal} requested but only {count} present")]
    NoSuchDevice { ordinal: usize, count: usize },
    #[error(
        "no GPU: libnvrtc.so not found, the kernels cannot be compiled (install the CUDA runtime compiler, e.g. PyPI nvidia-cuda-nvrtc-cu12, and add its lib folder to LD_LIBRARY_PATH)"
    )]
    NoNvrtc,
    #[error("no GPU: kernel compilation failed: {0}")]
    Compile(String),
    #[error("no GPU: CUDA error while setting up: {0}")]
    Cuda(String),
    #[error("no GPU: the CUDA library panicked: {0}")]
    Panicked(String),
    #[error("GPU disabled (--gpu off)")]
    Disabled,
}

/// What the probe found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    pub devices: usize,
}

/// True when libcuda.so can be loaded.
pub fn driver_present() -> bool {
    // SAFETY: only tries to dlopen the driver library and reports the outcome.
    unsafe { cudarc::driver::sys::is_culib_present() }
}

/// Checks for the driver, a device and NVRTC. Never panics.
pub fn probe() -> Result<Probe, NoGpu> {
    if !driver_present() {
        return Err(NoGpu::NoDriver);
    }
    let count = match std::panic::catch_unwind(cudarc::driver::CudaContext::device_count) {
        Ok(Ok(n)) => n,
        Ok(Err(e)) => {
            let text = e.to_string();
            return Err(if text.contains("NO_DEVICE") {
                NoGpu::NoDevice
            } else {
                NoGpu::Init(text)
            });
        }
        Err(p) => return Err(NoGpu::Panicked(panic_text(&*p))),
    };
    if count <= 0 {
        return Err(NoGpu::NoDevice);
    }
    if !crate::kernels::nvrtc_present() {
        return Err(NoGpu::NoNvrtc);
    }
    Ok(Probe {
        devices: count as usize,
    })
}
