#!/usr/bin/env bash
# Three seeds of a fine-tuning config, each compared with the base model on the trained and the
# report captions (128 × 4, the same seeds for both models, paired, clustered by prompt).
# usage: Experiments/scripts/seeds.sh CONFIG OUT_PREFIX [SEEDS...]    (from the repository root)
# e.g.   Experiments/scripts/seeds.sh Experiments/self-training/fidelity.json Logs/st-fidelity 0 1 2
# Writes OUT_PREFIX-sN/ (the run) and OUT_PREFIX-sN/compare-{train,report}.json; a finished run is kept.
set -euo pipefail
config=$1 prefix=$2; shift 2
seeds=${*:-0 1 2}
bin=${BIN:-.build/release/diffusion-rl}   # BIN, THREADS: e.g. a copied binary for a long campaign
threads=${THREADS:-2}
for seed in $seeds; do
  out=$prefix-s$seed
  if [ ! -d "$out/model" ]; then
    if [ -d "$out/checkpoints" ]; then "$bin" finetune --config "$config" --seed "$seed" --out "$out" --threads "$threads" --resume
    else "$bin" finetune --config "$config" --seed "$seed" --out "$out" --threads "$threads"; fi
  fi
  for set in train-256 report-128; do
    result=$out/compare-${set%%-*}.json
    # Written under a temporary name and moved, so a stopped evaluation never leaves a partial file behind.
    [ -s "$result" ] || { "$bin" eval --model Models/base --compare "$out/model" --threads "$threads" \
      --prompts "Experiments/prompts/$set.txt" --n-prompts 128 --images-per-prompt 4 --json > "$result.partial" && mv "$result.partial" "$result"; }
  done
  python3 - "$out" <<'PY'
import json, sys
out = sys.argv[1]
for name in ("train", "report"):
    scores = json.load(open(f"{out}/compare-{name}.json"))["scores"]
    line = "  ".join(f"{k} {scores[k]['difference']['mean']:+.3f} ± {scores[k]['difference']['standardError']:.3f}"
                     for k in ("alignment", "fidelity", "safety"))
    print(f"{out} {name}: {line}")
PY
done
