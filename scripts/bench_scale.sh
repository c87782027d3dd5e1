#!/usr/bin/env bash
# Scale benchmark (benches/scale): for each size, index writing through DenseIndexWriter,
# merging, disk size, peak RSS, exact DenseQuery vs a plain read of the same bytes, BM25,
# hybrid RRF, per-segment ANN (IVF-PQ, IVF-SQ8, HNSW) sweeps, and the LTRe training step
# (5k Flat against each size's Flat and IVF-PQ, also interleaved in one process). Each measurement is its own process.
#
#   bash scripts/bench_scale.sh                  # 100000 and 1000000 vectors
#   bash scripts/bench_scale.sh 20000            # a quick look
#
# Env: LTRE_SCALE_BIN (an already built benches/scale binary), LTRE_SCALE_DIR (work dir, default target/ltre-scale; indexes are deleted after each run,
# results/ and report.md stay), LTRE_SCALE_SKIP (space-separated: ann train), OMP_NUM_THREADS
# (Faiss's OpenMP threads, default 1: on a shared 2-core machine more threads wait at barriers).
# Needs .ltre/models/all-MiniLM-L6-v2 (bash scripts/setup.sh) for the training step.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(100000 1000000)
export LTRE_SCALE_DIR="${LTRE_SCALE_DIR:-$root/target/ltre-scale}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
skip=" ${LTRE_SCALE_SKIP:-} "
mkdir -p "$LTRE_SCALE_DIR/results"

bin="${LTRE_SCALE_BIN:-}"
if [ -z "$bin" ]; then
  bin=$(cargo bench --bench scale --no-run --message-format=json 2>/dev/null \
    | sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -1)
fi
[ -x "$bin" ] || { echo "could not build benches/scale" >&2; exit 1; }

run() {
  echo "== $* (load: $(cut -d' ' -f1-3 /proc/loadavg))" >&2
  "$bin" "$@" >/dev/null
}

ivf="IVF1024,PQ48np"
for n in "${sizes[@]}"; do
  run index "$n"
  if [[ "$skip" != *" ann "* ]]; then
    # V/R: R candidates re-scored exactly from the stored rows (AnnParams::rerank).
    run ann "$n" "$ivf" nprobe 8,8/100,8/200,8/500,8/1000,16/1000
    run ann "$n" IVF1024,SQ8 nprobe 2,4,8,16
    # @E: the HNSW graph built with efConstruction E (AnnOptions::ef_construction).
    run ann "$n" HNSW32@100 ef 32,64,128,256,512
  fi
done
if [[ "$skip" != *" train "* ]]; then
  run train 5000 Flat 1
  compare=(5000:Flat:1)
  for n in "${sizes[@]}"; do
    run train "$n" Flat 1
    run train "$n" "$ivf" 32
    compare+=("$n:Flat:1" "$n:$ivf:32")
  done
  # The ratios: all configurations in one process, steps interleaved (same background load).
  run train-compare 10 "${compare[@]}"
fi

{
  echo
  echo "Machine: $(nproc --all) cores, $(lscpu | sed -n 's/^Model name: *//p'), $(free -g | awk '/Mem:/{print $2}') GiB;" \
    "$(date -u +%Y-%m-%dT%H:%MZ); load at the end: $(cut -d' ' -f1-3 /proc/loadavg); OMP_NUM_THREADS=$OMP_NUM_THREADS"
} > "$LTRE_SCALE_DIR/machine.txt"
"$bin" report
cat "$LTRE_SCALE_DIR/machine.txt"
echo "report: $LTRE_SCALE_DIR/report.md, $LTRE_SCALE_DIR/report.json" >&2
