#!/usr/bin/env bash
# Compiles every CUDA kernel of the gpu crate to PTX with NVRTC, on any machine (no GPU needed).
#
# NVRTC comes from PyPI's nvidia-cuda-nvrtc-cu12 wheel, installed into a virtual environment
# (default: <repo>/target/nvrtc-venv, override with DCO_NVRTC_VENV). The test that needs it
# (`nvrtc_compiles_all_kernels`) skips loudly when the library cannot be found; this script
# makes it findable and then demands that it actually ran (DCO_REQUIRE_NVRTC=1).
#
# If pip cannot install the wheel (no network, no python3 venv), the script says so loudly
# and exits 0 without claiming the check passed.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
venv="${DCO_NVRTC_VENV:-$repo/target/nvrtc-venv}"
pkg="nvidia-cuda-nvrtc-cu12"

find_libdir() {
    "$venv/bin/python" - <<'PY' 2>/dev/null
import nvidia.cuda_nvrtc, os
print(os.path.join(nvidia.cuda_nvrtc.__path__[0], "lib"))
PY
}

libdir="$(find_libdir || true)"
if [ -z "$libdir" ] || [ ! -d "$libdir" ]; then
    echo "nvrtc-check: installing $pkg into $venv (about 220 MB)" >&2
    if ! { python3 -m venv "$venv" \
            && timeout 900 "$venv/bin/pip" install --quiet --disable-pip-version-check "$pkg"; }; then
        echo "nvrtc-check: SKIPPED: could not install $pkg with pip; the PTX compile check did not run" >&2
        exit 0
    fi
    libdir="$(find_libdir || true)"
fi
if [ -z "$libdir" ] || [ ! -d "$libdir" ]; then
    echo "nvrtc-check: SKIPPED: $pkg installed but its lib directory was not found; the PTX compile check did not run" >&2
    exit 0
fi

echo "nvrtc-check: using NVRTC from $libdir" >&2
cd "$repo"
LD_LIBRARY_PATH="$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" DCO_REQUIRE_NVRTC=1 \
    timeout 900 cargo test -p dco-gpu --test nvrtc -- --nocapture
