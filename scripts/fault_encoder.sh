#!/usr/bin/env bash
# Long fault-injection run of the encoder registry: SIGKILLs `ltre-cli encoder activate` and
# `rollback` at random points and inside the HISTORY->ACTIVE commit window, checking after each
# kill that the index opens, the active encoder resolves, and the same command resumes to a
# consistent registry (cli/tests/encoder_faults.rs, `killed_switches_resume`).
#
#   scripts/fault_encoder.sh [TRIALS] [SEED]     (defaults: 500 trials, seed 1)
#
# A failure prints the trial number; rerun with the same SEED to replay it.
set -euo pipefail
cd "$(dirname "$0")/.."
TRIALS="${1:-500}"
SEED="${2:-1}"
export LTRE_FAULT_TRIALS="$TRIALS" LTRE_FAULT_SEED="$SEED"
exec cargo test -p ltre-cli --test encoder_faults killed_switches_resume -- --nocapture
