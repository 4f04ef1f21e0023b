//! The CUDA C sources and their run-time compilation with NVRTC.

use cudarc::nvrtc::{CompileOptions, Ptx, compile_ptx_with_opts};

/// The per-lane header shared with the host model.
pub const HEADER: &str = include_str!("../kernels/dco_aead.h");
/// The `__global__` kernels.
pub const KERNELS: &str = include_str!("../kernels/dco_kernels.cu");
/// Entry points every module must export.
pub const ENTRY_POINTS: [&str; 2] = ["dco_aead_batch", "dco_key_setup_kernel"];

/// The full translation unit handed to NVRTC (header first, so the kernels' `#include` is
/// skipped and no include path is needed at run time).
pub fn source() -> String {
    let mut s = String::with_capacity(HEADER.len() + KERNELS.len() + 1);
    s.push_str(HEADER);
    s.push('\n');
    s.push_str(KERNELS);
    s
}

/// Why NVRTC could not produce PTX.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    #[error(
        "no NVRTC: libnvrtc.so not found (install the CUDA toolkit or PyPI's nvidia-cuda-nvrtc-cu12 and add its lib folder to LD_LIBRARY_PATH)"
    )]
    NoNvrtc,
    #[error("NVRTC failed for {arch}: {log}")]
    Failed { arch: String, log: String },
    #[error("NVRTC panicked: {0}")]
    Panicked(String),
}

/// True when libnvrtc can be loaded (checked without cudarc's panicking loader).
pub fn nvrtc_present() -> bool {
    // SAFETY: `is_culib_present` only tries to dlopen the library and reports the outcome.
    unsafe { cudarc::nvrtc::sys::is_culib_present() }
}

/// Compiles all kernels to PTX for `arch` (e.g. `"compute_80"`, `"compute_90"`).
pub fn compile(arch: &'static str) -> Result<Ptx, CompileError> {
    if !nvrtc_present() {
        return Err(CompileError::NoNvrtc);
    }
    let src = source();
    let opts = CompileOptions {
        arch: Some(arch),
        name: Some("dco_kernels.cu".into()),
        options: vec!["--std=c++17".into(), "-default-device".into()],
        ..Default::default()
    };
    match std::panic::catch_unwind(|| compile_ptx_with_opts(src, opts)) {
        Ok(Ok(ptx)) => Ok(ptx),
        Ok(Err(e)) => Err(CompileError::Failed {
            arch: arch.to_string(),
            log: e.to_string(),
        }),
        Err(p) => Err(CompileError::Panicked(panic_text(&*p))),
    }
}

pub(crate) fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_string()
    }
}
