//! The iperf3 comparison and the packet-rate benchmark behind `dco-bench`.

pub mod datav2;
pub mod machine;
pub mod pps;
pub mod pps_ours;
pub mod progress;
pub mod report;
pub mod runner;
pub mod signal;
pub mod sut;
pub mod svg;
pub mod toolchain;

use std::path::PathBuf;

/// Root of the cargo workspace (for `target/release/dco-control` and the tools cache).
pub fn workspace_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(PathBuf::from).unwrap_or(manifest)
}
