//! Compiles every CUDA kernel to PTX with NVRTC. Needs only libnvrtc, no GPU:
//! `gpu/scripts/nvrtc-check.sh` installs PyPI's NVRTC and runs this with it. Without NVRTC the
//! test skips loudly, unless DCO_REQUIRE_NVRTC=1 (set by the script), where it fails.

use gpu::kernels;

#[test]
fn nvrtc_compiles_all_kernels() {
    if !kernels::nvrtc_present() {
        if std::env::var_os("DCO_REQUIRE_NVRTC").is_some() {
            panic!("DCO_REQUIRE_NVRTC is set but libnvrtc.so cannot be loaded");
        }
        eprintln!(
            "SKIPPED nvrtc_compiles_all_kernels: libnvrtc.so not found; run gpu/scripts/nvrtc-check.sh"
        );
        return;
    }
    // Ampere (A100), Ada (L40S), Hopper (H100/H200): the archs the backend targets.
    for arch in ["compute_80", "compute_89", "compute_90"] {
        let ptx = kernels::compile(arch).unwrap_or_else(|e| panic!("{e}"));
        let text = ptx.to_src();
        assert!(
            text.contains(&format!(".target sm_{}", &arch[8..])),
            "{arch}: wrong target"
        );
        for entry in kernels::ENTRY_POINTS {
            assert!(
                text.contains(&format!(".entry {entry}(")),
                "{arch}: entry point {entry} missing from PTX"
            );
        }
        eprintln!(
            "nvrtc: {arch}: {} bytes of PTX, entries {:?}",
            text.len(),
            kernels::ENTRY_POINTS
        );
    }
}
