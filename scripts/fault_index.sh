#!/usr/bin/env bash
# Longer fault injection for `ltre-cli index`: kill -9 at random points (and in the early
# windows, through the LTRE_INDEX_PAUSE hook), rerun the same command to completion, compare
# with an uninterrupted run. Same test as `cargo test -p ltre-cli --test index_faults`, sized
# by environment variables.
#
#   scripts/fault_index.sh [TRIALS=200] [SEED=random] [DOCS=300]
set -euo pipefail
cd "$(dirname "$0")/.."
trials="${1:-200}"
seed="${2:-$RANDOM}"
docs="${3:-300}"
echo "fault_index: $trials trials, seed $seed, $docs docs (rerun with: $0 $trials $seed $docs)"
LTRE_FAULT_TRIALS="$trials" LTRE_FAULT_SEED="$seed" LTRE_FAULT_DOCS="$docs" \
  cargo test -p ltre-cli --test index_faults -- \
  killed_index_runs_resume_to_the_uninterrupted_result --exact --nocapture
