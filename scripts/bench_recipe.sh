#!/usr/bin/env bash
# Issue-10 benchmark (BENCHMARKS.md, "Training without a tuned config"): on SciFact (train/test
# qrels) and Cranfield (a seeded half of its queries trains, the other half tests: --split),
# BM25, the base dense encoder and its hybrids, then three fine-tunes from the base encoder with
# no --config (the default recipe chooses lr and temperature on held-out training queries):
# LTRe, the in-batch baseline at the same budget, and hybrid-aware LTRe. Each deploys through
# the gate (only a held-out gain deploys) and is evaluated on the test side: dense, RRF, and
# linear with the fusion weight chosen on held-out queries (recorded with the encoder).
# Usage: bash scripts/bench_recipe.sh [cranfield] [scifact]   (default: both)
# Env: LTRE_WORK (work dir), THREADS (default 2), RUNS (default "ltre in-batch hybrid-aware"; also the
# hybrid-aware ablations hybrid-pure: the hybrid loss only, --hybrid-dense-share 0; hybrid-range: the
# gradient through the min-max range, --hybrid-range-gradient true; hybrid-alpha08: trained at fusion
# weight 0.8, --hybrid-alpha 0.8). Each linear hybrid is also compared per query with LTRe's and
# in-batch's (scripts/paired_ndcg.py: mean difference and bootstrap 95% interval).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
work="${LTRE_WORK:-$root/.ltre/work}"
threads="${THREADS:-2}"
mkdir -p "$work/bench-recipe"
bash scripts/setup.sh >/dev/null
cargo build --release -p ltre-cli
cli="$root/target/release/ltre-cli"
onnx="$work/minilm-onnx"
[ -f "$onnx/manifest.json" ] || "$cli" export-onnx --model "$root/.ltre/models/all-MiniLM-L6-v2" --out "$onnx" --train

collection() { # name corpus queries train-qrels test-qrels [split args...]
  local name="$1" corpus="$2" queries="$3" train="$4" test="$5"; shift 5
  local index="$work/$name-index" out="$work/bench-recipe/$name"
  local train_split=() test_split=()
  if [ $# -gt 0 ]; then train_split=(--split train "$@"); test_split=(--split test "$@"); fi
  mkdir -p "$out"
  "$cli" index --corpus "$corpus" --model "$onnx" --index "$index" > "$out/index.log" 2>&1
  ev() { # label encoder mode [fusion]
    local label="$1" enc="$2" mode="$3"; shift 3
    "$cli" eval --index "$index" --encoder "$enc" --queries "$queries" --qrels "$test" \
      "${test_split[@]}" --mode "$mode" "$@" --json > "$out/eval-$label.json"
  }
  "$cli" eval --index "$index" --queries "$queries" --qrels "$test" "${test_split[@]}" --mode bm25 --json > "$out/eval-bm25.json"
  ev base-dense base dense
  ev base-rrf base hybrid --fusion rrf
  ev base-linear base hybrid --fusion linear
  local runs="${RUNS:-ltre in-batch hybrid-aware}"
  for run in $runs; do
    local extra=()
    case "$run" in
      in-batch) extra=(--objective in-batch) ;;
      hybrid-aware) extra=(--hybrid) ;;
      hybrid-pure) extra=(--hybrid --hybrid-dense-share 0) ;;
      hybrid-range) extra=(--hybrid --hybrid-range-gradient true) ;;
      hybrid-alpha08) extra=(--hybrid --hybrid-alpha 0.8) ;;
    esac
    "$cli" train --index "$index" --queries "$queries" --qrels "$train" "${train_split[@]}" \
      --eval-qrels "$test" --encoder base --deploy --threads "$threads" \
      --run-dir "$out/run-$run" "${extra[@]}" > "$out/train-$run.json" 2> "$out/train-$run.log"
    local id
    id=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1]))["deployment"]; print(d.get("id","base"))' "$out/train-$run.json")
    ev "$run-dense" "$id" dense
    ev "$run-rrf" "$id" hybrid --fusion rrf
    ev "$run-linear" "$id" hybrid --fusion linear --per-query
  done
  python3 - "$out" "$name" <<'PY'
import json, os, sys
out, name = sys.argv[1], sys.argv[2]
def ndcg(label):
    p = os.path.join(out, f"eval-{label}.json")
    return json.load(open(p))["metrics"]["nDCG@10"] if os.path.exists(p) else float("nan")
print(f"\n{name}: test nDCG@10")
print("| encoder | dense | RRF | linear (alpha) | held-out before -> best | lr, t chosen | deployed |")
print("|---|---|---|---|---|---|---|")
print(f"| BM25 | {ndcg('bm25'):.4f} | | | | | |")
print(f"| base | {ndcg('base-dense'):.4f} | {ndcg('base-rrf'):.4f} | {ndcg('base-linear'):.4f} (0.5) | | | |")
for run in ["ltre", "in-batch", "hybrid-aware", "hybrid-pure", "hybrid-range", "hybrid-alpha08"]:
    if not os.path.exists(os.path.join(out, f"train-{run}.json")):
        continue
    s = json.load(open(os.path.join(out, f"train-{run}.json")))
    mode = json.load(open(os.path.join(out, f"eval-{run}-linear.json")))["mode"]
    alpha = mode.split("alpha ")[-1] if "alpha" in mode else "?"
    c = s["config"]
    dep = s["deployment"].get("id", "no (" + s["deployment"]["status"] + ")")
    print(f"| {run} | {ndcg(run + '-dense'):.4f} | {ndcg(run + '-rrf'):.4f} | {ndcg(run + '-linear'):.4f} ({alpha}) "
          f"| {s['baseline_dev_ndcg10']:.4f} -> {s['best_dev_ndcg10']:.4f} | {c['optimizer']['lr']:g}, {c['temperature']:g} | {dep} |")
PY
  for a in $runs; do for b in ltre in-batch; do # per-query comparison of the linear hybrids
    [ "$a" != "$b" ] && [ -f "$out/eval-$a-linear.json" ] && [ -f "$out/eval-$b-linear.json" ] || continue
    echo "$a vs $b (linear): $(python3 scripts/paired_ndcg.py "$out/eval-$a-linear.json" "$out/eval-$b-linear.json")"
  done; done
}

targets=("$@"); [ ${#targets[@]} -gt 0 ] || targets=(cranfield scifact)
for t in "${targets[@]}"; do
  case "$t" in
    cranfield) c="$root/../shared/data/cranfield"; collection cranfield "$c" "$c" "$c" "$c" --split-seed 13 ;;
    scifact) s="$root/../shared/data/scifact"; collection scifact "$s/corpus.jsonl" "$s/queries.jsonl" "$s/qrels/train.tsv" "$s/qrels/test.tsv" ;;
    *) echo "unknown collection $t (cranfield, scifact)" >&2; exit 2 ;;
  esac
done
