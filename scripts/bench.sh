#!/usr/bin/env bash
# The iperf3 comparison (see examples/PERFORMANCE.md). Builds the tool and our binaries in
# release mode, then runs `dco-bench` as root with the arguments given, e.g.
#   scripts/bench.sh                      # full run: 3 repetitions, 10 s tests
#   scripts/bench.sh --smoke              # 1 repetition, 2 s tests
#   scripts/bench.sh --reps 2 --duration 5 --systems underlay,stock,ours
#   scripts/bench.sh pps --duration 5     # packet-rate benchmark
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p dco-examples --bin dco-bench
# Our daemon, when the workspace has it; the tool reports it as unavailable otherwise.
cargo build --release -p dco-control -p dco-daemon -p dco-control-ipc --bin dco-control --bin dco-daemon --bin ovpnctl 2>/dev/null || \
  echo "note: dco-control/dco-daemon not built; 'stock-ours', 'ours' and 'ours-fw' will be skipped" >&2
if [ "$(id -u)" -ne 0 ]; then
  exec sudo --preserve-env=PATH,CARGO "$PWD/target/release/dco-bench" "$@"
fi
exec timeout --signal=INT --kill-after=60 "${DCO_BENCH_TIMEOUT:-3600}" ./target/release/dco-bench "$@"
