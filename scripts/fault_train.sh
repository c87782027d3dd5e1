#!/usr/bin/env bash
# Long fault-injection run of training: SIGKILLs `ltre-cli train --threads 1` at random points of
# a run (start-up included), reruns the same command, and checks it ends with exactly the result of
# an uninterrupted run: per-epoch losses and held-out nDCG, best epoch, byte-identical parameters
# (cli/tests/train_faults.rs).
#
#   scripts/fault_train.sh [TRIALS] [SEED]     (defaults: 200 trials, seed 1)
set -euo pipefail
cd "$(dirname "$0")/.."
export LTRE_FAULT_TRIALS="${1:-200}" LTRE_FAULT_SEED="${2:-1}"
exec cargo test -p ltre-cli --test train_faults -- --nocapture
