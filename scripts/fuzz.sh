#!/usr/bin/env bash
# Long fuzz run of ltre-core's loaders of outside data (safetensors, config.json,
# tokenizer.json, manifest.json, BEIR lines, SMART files, training config, optimizer state).
# The normal test run does a few dozen cases per loader; this does PROPTEST_CASES (default
# 20000) of each, in release mode, then replays the seed corpus.
#   scripts/fuzz.sh                 # 20000 cases per loader
#   PROPTEST_CASES=200000 scripts/fuzz.sh
# A failure prints proptest's minimal input: save it under ltre-core/tests/fuzz-seeds/<loader>/
# as err-<what>.<ext> (or ok-), fix the loader, and rerun.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export PROPTEST_CASES="${PROPTEST_CASES:-20000}"
cargo test -p ltre-core --release --test fuzz_loaders --test fuzz_seeds
