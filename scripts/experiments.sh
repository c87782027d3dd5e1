#!/usr/bin/env bash
# Reproduces the SciFact training experiments of BENCHMARKS.md. Each run trains on
# qrels/train.tsv with a seeded 20% of its queries held out for selection, and reports
# qrels/test.tsv nDCG@10 before/after (never used for selection). Results land in
# $LTRE_WORK/exp-*/summary.json; `scripts/experiments.sh table` prints them.
# Usage: scripts/experiments.sh NAME [extra ltre-cli train args...] | table
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
data="${LTRE_DATA:-$root/../shared/data/scifact}"
work="${LTRE_WORK:-$root/.ltre/work}"
cli="$root/target/release/ltre-cli"
if [ "${1:-}" = "table" ]; then
  python3 - "$work" <<'PY'
import json, glob, os, sys
print("| run | objective | index | lr | t | epochs | dev before | dev best (epoch) | test before | test after | s/step |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for f in sorted(glob.glob(os.path.join(sys.argv[1], "exp-*", "summary.json"))):
    s = json.load(open(f)); c = s["config"]; h = s["history"]
    step = sum(r["step_seconds"] for r in h) / max(len(h), 1)
    print(f"| {os.path.basename(os.path.dirname(f))[4:]} | {c['objective']} | {c['index']} | {c['optimizer']['lr']:g} | {c['temperature']:g} | {c['epochs']} "
          f"| {s['baseline_dev_ndcg10']:.4f} | {s['best_dev_ndcg10']:.4f} ({s['best_epoch']}) "
          f"| {s['eval_before_ndcg10']:.4f} | {s['eval_after_ndcg10']:.4f} | {step:.2f} |")
PY
  exit 0
fi
name="$1"; shift
"$cli" train --index "$work/scifact-index" --queries "$data/queries.jsonl" --qrels "$data/qrels/train.tsv" \
  --eval-qrels "$data/qrels/test.tsv" --config "$root/configs/scifact-ltre.toml" --run-dir "$work/exp-$name" "$@" \
  > "$work/exp-$name.log" 2>&1
grep -E "^epoch|held-out|nDCG@10 " "$work/exp-$name.log" | tail -8
