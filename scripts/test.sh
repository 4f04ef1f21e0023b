#!/usr/bin/env bash
# The project's test command (see README). Installs what the tests need when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --workspace
