//! Builds the host model of the CUDA kernels: the same per-lane C code (kernels/dco_aead.h)
//! that NVRTC compiles for the GPU, compiled here for the CPU so tests can check it anywhere.

fn main() {
    for f in [
        "kernels/dco_aead.h",
        "kernels/host_model.c",
        "kernels/dco_kernels.cu",
    ] {
        println!("cargo:rerun-if-changed={f}");
    }
    cc::Build::new()
        .file("kernels/host_model.c")
        .include("kernels")
        // Optimised even in debug and test builds: the model runs 100k-packet checks.
        .opt_level(3)
        .debug(false)
        .flag_if_supported("-std=c99")
        .flag_if_supported("-fno-strict-aliasing")
        .warnings(true)
        .extra_warnings(true)
        .compile("dco_host_model");
}
