#!/usr/bin/env bash
# The main job, end to end on SciFact: set-up, export all-MiniLM-L6-v2 to ONNX (with the training
# graph), index the corpus (BM25 + dense), search, evaluate bm25/dense/hybrid on the test qrels,
# fine-tune the query encoder with LTRe on the train qrels (the default recipe: settings chosen on a
# held-out part of them, no tuned config), deploy it in place, and evaluate again. Re-running skips finished work and resumes training.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
data="${LTRE_DATA:-$root/../shared/data/scifact}"
work="${LTRE_WORK:-$root/.ltre/work}"
if [ ! -f "$data/corpus.jsonl" ]; then
  echo "run-main: $data/corpus.jsonl not found; set LTRE_DATA to a BEIR SciFact directory" >&2
  exit 2
fi
bash scripts/setup.sh
cargo build --release -p ltre-cli
cli="$root/target/release/ltre-cli"
model="$root/.ltre/models/all-MiniLM-L6-v2"
onnx="$work/minilm-onnx"
index="$work/scifact-index"
mkdir -p "$work"

echo "== export-onnx"
[ -f "$onnx/manifest.json" ] || "$cli" export-onnx --model "$model" --out "$onnx" --train
"$cli" embed --model "$onnx" "a query" > "$work/embedding.json"
python3 -c "import json,sys; v=json.load(open(sys.argv[1]))[0]; print(f'embedding: {len(v)} dims, norm {sum(x*x for x in v)**0.5:.6f}')" "$work/embedding.json"

echo "== index"
"$cli" index --corpus "$data/corpus.jsonl" --model "$onnx" --index "$index"

echo "== search"
"$cli" search --index "$index" --mode hybrid --fusion rrf -k 5 "Vitamin D deficiency increases the risk of cancer"

echo "== eval (base encoder, test qrels)"
for mode in bm25 dense; do
  "$cli" eval --index "$index" --queries "$data/queries.jsonl" --qrels "$data/qrels/test.tsv" --mode "$mode"
done
for fusion in rrf linear cascade; do
  "$cli" eval --index "$index" --queries "$data/queries.jsonl" --qrels "$data/qrels/test.tsv" --mode hybrid --fusion "$fusion"
done

echo "== train (LTRe, train qrels; the default recipe chooses on a held-out part of them, then refits)"
# No --config: nothing tuned to SciFact. configs/scifact-ltre.toml (lr and epochs chosen on SciFact's held-out
# training queries) is the tuned alternative: add --config configs/scifact-ltre.toml --refit.
"$cli" train --index "$index" --queries "$data/queries.jsonl" --qrels "$data/qrels/train.tsv" \
  --eval-qrels "$data/qrels/test.tsv" --run-dir "$work/run-recipe" --deploy

echo "== eval (tuned encoder, test qrels)"
"$cli" encoder list --index "$index"
"$cli" eval --index "$index" --queries "$data/queries.jsonl" --qrels "$data/qrels/test.tsv" --mode dense
"$cli" eval --index "$index" --queries "$data/queries.jsonl" --qrels "$data/qrels/test.tsv" --mode hybrid --fusion rrf
