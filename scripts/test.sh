#!/usr/bin/env bash
# The test command: idempotent set-up (apt packages, ONNX Runtime, the MiniLM checkpoint), then
# the whole workspace's tests. CI (.ci/run) calls exactly this.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/setup.sh
cargo test --workspace --all-targets --no-fail-fast
cargo test --workspace --doc
# The application example: own schema, hybrid search with a filter, fine-tune in place while
# searching, rollback. Tiny random model always; all-MiniLM-L6-v2 (1 epoch) when present. The test
# profile reuses what the tests built.
cargo run --profile test --example shop
if [ -f .ltre/models/all-MiniLM-L6-v2/model.safetensors ]; then
  cargo run --profile test --example shop -- --checkpoint .ltre/models/all-MiniLM-L6-v2 --epochs 1
fi
# The Ray Data embedding pipeline against the Rust one on 300 SciFact documents (about 1.5 min
# with the venv install): same ids, cosine >= 0.9999, identical eval. Skipped without the data.
scifact="${LTRE_DATA:-$root/../shared/data/scifact}"
if [ -f "$scifact/corpus.jsonl" ]; then
  LTRE_CLI="${CARGO_TARGET_DIR:-$root/target}/debug/ltre-cli" bash distributed/test_ray.sh 300
else
  echo "test.sh: $scifact/corpus.jsonl not found; skipping distributed/test_ray.sh"
fi
