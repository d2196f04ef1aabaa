#!/usr/bin/env bash
# The head profile and attribution sanity of docs/interpret/README.md, exactly as committed:
# a fresh SynthAV test split (seed 7, 10 samples per task x 9 tasks, disjoint from training),
# `inspect profile` on it and `inspect attribution-sanity` on 40 AVE samples rendered in memory.
# Usage: bash scripts/interpret_profile.sh [MODEL] [OUT]   (defaults: crab-tiny docs/interpret/profile)
set -euo pipefail
MODEL="${1:-crab-tiny}"
OUT="${2:-docs/interpret/profile}"
PY="${PYTHON:-python}"
DATA="$(mktemp -d)"
trap 'rm -rf "$DATA"' EXIT
"$PY" -m crab_core synth --out "$DATA" --split test --num 90 --seed 7 --workers 1
"$PY" -m crab_core inspect profile --model "$MODEL" --data "$DATA/test/manifest.jsonl" --limit 10 \
    --out "$OUT" --threads 1
"$PY" -m crab_core inspect attribution-sanity --model "$MODEL" --num 40 --n-steps 16 \
    --out "$OUT/attribution_sanity.json" --threads 1
