#!/usr/bin/env bash
# DDPO on the gold alignment reward with three seeds, each evaluated on 128 held-out prompts × 4
# images (20 DDIM steps, η = 1, guidance 5) next to the base model. Prints one JSON line per model.
# usage: Experiments/scripts/ddpo_seeds.sh [CONFIG] [OUT_PREFIX]
set -euo pipefail
config=${1:-Experiments/ddpo-alignment.json}
prefix=${2:-Logs/ddpo-alignment}
bin=.build/release/diffusion-rl
eval_args=(--prompts heldout --n-prompts 128 --images-per-prompt 4 --steps 20 --eta 1 --guidance 5 --seed 0 --json)
$bin eval --model Models/base "${eval_args[@]}" > "$prefix-base-eval.json"
for seed in 0 1 2; do
  out="$prefix-seed$seed"
  sed "s/\"seed\": [0-9]*/\"seed\": $seed/" "$config" > "$prefix-seed$seed.json"
  $bin finetune --config "$prefix-seed$seed.json" --out "$out"
  $bin eval --model "$out/model" "${eval_args[@]}" > "$out-eval.json"
done
python3 - "$prefix" <<'PY'
import json, sys
prefix = sys.argv[1]
base = json.load(open(f"{prefix}-base-eval.json"))["scores"]["alignment"]
print(f"base: alignment {base['mean']:.3f} ± {base['standardError']:.3f}")
for seed in range(3):
    after = json.load(open(f"{prefix}-seed{seed}-eval.json"))["scores"]["alignment"]
    gain = after["mean"] - base["mean"]
    se = (after["standardError"] ** 2 + base["standardError"] ** 2) ** 0.5
    print(f"seed {seed}: alignment {after['mean']:.3f} ± {after['standardError']:.3f}, gain {gain:+.3f} ± {se:.3f} ({gain / se:.1f} SE)")
PY
