#!/usr/bin/env bash
# The demo: one command, as root, on a fresh machine.
#
#   sudo scripts/demo.sh              # ~40 s after the build
#   sudo scripts/demo.sh --quick      # 2 s iperf3 per direction
#   sudo scripts/demo.sh --help       # every option of dco-demo
#
# Installs what is missing (openvpn, iperf3, iproute2, openssl, ethtool, ping), builds the
# release binaries (dco-control, dco-daemon, dco-demo; the first build takes minutes), then
# runs target/release/dco-demo: two network namespaces joined by veth, a throwaway PKI, our
# server (dco-control + dco-daemon) in one, a stock OpenVPN 2.6 client and then our own
# client in the other, ping and iperf3 through the tunnel, a results table. Everything it
# creates is removed at the end, also on Ctrl-C. Exit code 0 only when every step passed.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  echo "demo.sh: needs root (network namespaces, TUN devices); re-running with sudo" >&2
  exec sudo --preserve-env=PATH,CARGO,RUSTUP_HOME,CARGO_HOME,CARGO_TARGET_DIR "$0" "$@"
fi

# Tools: command -> Debian package.
missing=()
for pair in openvpn:openvpn iperf3:iperf3 ip:iproute2 ss:iproute2 openssl:openssl \
            ethtool:ethtool ping:iputils-ping; do
  cmd=${pair%%:*} pkg=${pair#*:}
  if ! command -v "$cmd" >/dev/null 2>&1 && ! [ -x "/usr/sbin/$cmd" ] && ! [ -x "/sbin/$cmd" ]; then
    [[ " ${missing[*]-} " == *" $pkg "* ]] || missing+=("$pkg")
  fi
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "demo.sh: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=300 install -y --no-install-recommends "${missing[@]}" ||
    { apt-get -o DPkg::Lock::Timeout=300 update &&
      apt-get -o DPkg::Lock::Timeout=300 install -y --no-install-recommends "${missing[@]}"; }
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "demo.sh: cargo is missing; install Rust (https://rustup.rs) first" >&2
  exit 1
fi
echo "demo.sh: building release binaries (dco-control, dco-daemon, dco-demo)" >&2
cargo build --release -p dco-control -p dco-daemon -p dco-examples --bin dco-control \
  --bin dco-daemon --bin dco-demo

target=$(realpath "${CARGO_TARGET_DIR:-target}")
# The demo bounds itself: --time-limit (default 110 s), then a forced cleanup and exit.
exec "$target/release/dco-demo" --bin-dir "$target/release" "$@"
