#!/usr/bin/env bash
# The project's test command (README: `sudo ./scripts/test.sh`). Installs the system tools the
# tests use when they are missing, builds the binaries the end-to-end tests start, and runs
# every test of the workspace. Network-namespace tests need root; without it they print SKIP.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  echo "note: not running as root: the network-namespace tests will SKIP (loudly)" >&2
fi

# command:debian-package pairs the tests need.
need=()
for pair in openvpn:openvpn iperf3:iperf3 tcpdump:tcpdump conntrack:conntrack nft:nftables \
            ip:iproute2 ethtool:ethtool openssl:openssl ping:iputils-ping wg:wireguard-tools \
            wireguard-go:wireguard-go python3:python3 pip3:python3-pip; do
  cmd=${pair%%:*}; pkg=${pair#*:}
  command -v "$cmd" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then
    echo "installing: ${need[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need[@]}" >/dev/null
  else
    echo "note: missing tools (${need[*]}); tests that need them will SKIP" >&2
  fi
fi

# The end-to-end tests start dco-control and dco-daemon from this build.
cargo build --workspace --bins
export DCO_BIN_DIR="$PWD/target/debug"

cargo test --workspace --no-fail-fast

# The CUDA kernels compile to PTX with NVRTC from PyPI (no GPU needed); skips loudly if the
# package cannot be installed.
gpu/scripts/nvrtc-check.sh
