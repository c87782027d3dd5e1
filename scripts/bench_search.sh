#!/usr/bin/env bash
# Search latency on SciFact (benches/search.rs): p50/p95 at batch 1 of BM25, query encoding,
# dense, hybrid RRF/linear and cascade, and the hybrid overhead, as markdown tables.
#
#   bash scripts/bench_search.sh                      # all SciFact test queries
#   LTRE_BENCH_QUERIES=50 bash scripts/bench_search.sh  # a quick look
#
# Builds the index (and exports MiniLM) first when missing. Env: LTRE_BENCH_INDEX (default
# .ltre/work/scifact-index), LTRE_BENCH_DATA (../shared/data/scifact), LTRE_BENCH_MODEL_DIR
# (.ltre/work/minilm-onnx), LTRE_BENCH_THREADS (encoder threads). Run it on a quiet machine.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
data="${LTRE_BENCH_DATA:-../shared/data/scifact}"
index="${LTRE_BENCH_INDEX:-.ltre/work/scifact-index}"
model="${LTRE_BENCH_MODEL_DIR:-.ltre/work/minilm-onnx}"
if [ ! -f "$data/queries.jsonl" ]; then
  echo "no SciFact data at $data (set LTRE_BENCH_DATA)" >&2
  exit 1
fi
if [ ! -f "$index/ltre.json" ]; then
  if [ ! -f "$model/manifest.json" ]; then
    cargo run --release -p ltre-cli -- export-onnx --model .ltre/models/all-MiniLM-L6-v2 --out "$model"
  fi
  cargo run --release -p ltre-cli -- index --corpus "$data/corpus.jsonl" --model "$model" --index "$index"
fi
LTRE_BENCH_INDEX="$index" LTRE_BENCH_DATA="$data" cargo bench --bench search "$@"
