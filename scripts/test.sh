#!/usr/bin/env bash
# The test command: idempotent set-up (apt packages, ONNX Runtime, the MiniLM checkpoint), then
# the whole workspace's tests. CI (.ci/run) calls exactly this.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/setup.sh
cargo test --workspace --all-targets --no-fail-fast
cargo test --workspace --doc
