#!/usr/bin/env bash
# End-to-end check of the Ray Data pipeline against the Rust one, on a slice of SciFact:
#   Ray (local, 2 workers) and `ltre-cli embed --corpus` embed the same documents
#   -> same ids, cosine >= 0.9999 for every vector (distributed/compare_vectors.py)
#   -> `ltre-cli index --vectors` from each -> `ltre-cli eval --json` (dense, test qrels
#      restricted to the slice) prints identical numbers for both.
# Usage: bash distributed/test_ray.sh [DOCS]   (default 300; LTRE_DATA=DIR overrides SciFact's
# location, LTRE_CLI=BIN the ltre-cli binary). Works in .ltre/work/ray-test (git-ignored).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
docs="${1:-300}"
data="${LTRE_DATA:-$root/../shared/data/scifact}"
work="$root/.ltre/work/ray-test"
venv="${LTRE_RAY_VENV:-$root/.ltre/venv-ray}"
bash distributed/setup.sh
bash scripts/setup.sh >/dev/null
cli="${LTRE_CLI:-}"
if [ -z "$cli" ]; then
  cargo build --release -q -p ltre-cli
  cli="${CARGO_TARGET_DIR:-$root/target}/release/ltre-cli"
fi
rm -rf "$work/rust" "$work/ray" "$work/index-rust" "$work/index-ray"
mkdir -p "$work"
model="$work/model"
[ -f "$model/manifest.json" ] || "$cli" export-onnx --model .ltre/models/all-MiniLM-L6-v2 --out "$model" >/dev/null

# The slice: the first $docs documents, and the test qrels judging them (never committed).
head -n "$docs" "$data/corpus.jsonl" > "$work/corpus.jsonl"
python3 - "$work/corpus.jsonl" "$data/qrels/test.tsv" "$work/qrels.tsv" <<'PY'
import json, sys
ids = {json.loads(l)["_id"] for l in open(sys.argv[1]) if l.strip()}
lines = open(sys.argv[2]).read().splitlines()
kept = [l for l in lines[1:] if l.split("\t")[1] in ids]
open(sys.argv[3], "w").write("\n".join([lines[0]] + kept) + "\n")
print(f"slice: {len(ids)} documents, {len(kept)} test judgements on them")
PY

start=$(date +%s)
"$cli" embed --model "$model" --corpus "$work/corpus.jsonl" --out "$work/rust"
echo "rust embed: $(( $(date +%s) - start ))s"
start=$(date +%s)
RAY_DEDUP_LOGS=0 "$venv/bin/python" distributed/embed_ray.py --corpus "$work/corpus.jsonl" \
  --model "$model" --out "$work/ray" --num-workers 2 --threads 1 --rows-per-file 128 2>"$work/ray.log" \
  || { tail -30 "$work/ray.log"; exit 1; }
echo "ray embed (incl. Ray start-up): $(( $(date +%s) - start ))s"
"$venv/bin/python" distributed/compare_vectors.py "$work/rust" "$work/ray" --min-cosine 0.9999

for side in rust ray; do
  "$cli" index --corpus "$work/corpus.jsonl" --model "$model" --vectors "$work/$side" \
    --index "$work/index-$side" 2>&1 | tail -1
  "$cli" eval --index "$work/index-$side" --queries "$data/queries.jsonl" --qrels "$work/qrels.tsv" \
    --mode dense --json > "$work/eval-$side.json"
done
cat "$work/eval-rust.json"
if cmp -s "$work/eval-rust.json" "$work/eval-ray.json"; then
  echo "test_ray: OK (Ray and Rust vectors agree; identical eval)"
else
  diff "$work/eval-rust.json" "$work/eval-ray.json" || true
  echo "test_ray: FAIL: the evals differ" >&2
  exit 1
fi
