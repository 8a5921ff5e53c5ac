#!/usr/bin/env bash
# The reward-model study behind the README's tables, from a captioning-pretrained decoder and
# preference data (see Experiments/README.md for the commands that make them):
#   ablation  — LLaVA-Reward with SkipCA, without SkipCA, and the CLIP-style dual encoder, trained
#               on the same annotator labels, scored against the gold judge on validation and
#               held-out-composition pairs, and the decoder's zero-shot caption likelihood;
#   noise     — the same training with annotator labels of rising noise (relabeled images);
#   prior     — the caption-likelihood prior (PRIOR_CONFIG, its decoder): noiseless, σ 0.2, σ 0.4 and
#               the default annotators, and noiseless without SkipCA (run `noise` first: it writes
#               the relabeled files).
# Usage: Experiments/scripts/reward_study.sh ablation|noise|prior   (THREADS=2 by default)
set -euo pipefail
cd "$(dirname "$0")/../.."
B=${B:-.build/release/diffusion-rl}
THREADS=${THREADS:-2}
DECODER=${DECODER:-Logs/reward-mllm/decoder}
TRAIN=${TRAIN:-Logs/reward-data-train/data.jsonl}
EVALS=(Logs/reward-data-validation/data.jsonl Logs/reward-data-heldout/data.jsonl)

train_and_eval() {  # name, extra train options...
    local name=$1; shift
    "$B" reward train ${CONFIG:+--config "$CONFIG"} --decoder "$DECODER" --data "$DATA" --out "Logs/reward-$name" --threads "$THREADS" --force "$@" \
        > "Logs/reward-$name.train.txt"
    for data in "${EVALS[@]}"; do
        "$B" reward eval --model "Logs/reward-$name/model" --data "$data" --threads "$THREADS" --json \
            > "Logs/reward-$name.$(basename "$(dirname "$data")").json"
    done
}

table() {  # names...
    python3 - "$@" <<'PY'
import json, sys
print("| model | split | " + " | ".join(f"{p} (gold pairs)" for p in ["alignment", "fidelity", "overall"]) + " | safety (labels) |")
print("|---|---|---|---|---|---|")
for name in sys.argv[1:]:
    for split in ["reward-data-validation", "reward-data-heldout"]:
        r = json.load(open(f"Logs/reward-{name}.{split}.json"))
        cells = [f"{r[p]['goldPairAccuracy']:.3f} ± {r[p]['goldPairAccuracySE']:.3f}" for p in ["alignment", "fidelity", "overall"]]
        cells.append(f"{r['safety']['goldLabelAccuracy']:.3f}")
        print(f"| {name} | {split.split('-')[-1]} | " + " | ".join(cells) + " |")
PY
}

case "${1:-}" in
ablation)
    DATA=$TRAIN
    train_and_eval skipca
    train_and_eval no-skipca --no-skip-ca
    train_and_eval dual-encoder --dual-encoder
    table skipca no-skipca dual-encoder
    # The zero-shot row: the decoder's log p(prompt | image), no head trained (alignment only).
    for data in "${EVALS[@]}"; do
        "$B" reward eval --caption-likelihood "$DECODER" --data "$data" --threads "$THREADS" --json \
            | python3 -c 'import json, sys; a = json.load(sys.stdin)["alignment"]; p, e = a["goldPairAccuracy"], a["goldPairAccuracySE"]; print(f"| zero-shot caption likelihood | {sys.argv[1]} | {p:.3f} ± {e:.3f} | — | — | — |")' \
                "$(basename "$(dirname "$data")" | sed 's/reward-data-//')"
    done
    ;;
noise)
    for noise in 0 0.1 0.2 0.4; do
        "$B" reward make-data --relabel "$TRAIN" --out "noise-$noise.jsonl" --noise "$noise" --saturation-bias 0 --force
        DATA=$(dirname "$TRAIN")/noise-$noise.jsonl
        train_and_eval "noise-$noise"
    done
    table noise-0 noise-0.1 noise-0.2 noise-0.4
    ;;
prior)
    CONFIG=${PRIOR_CONFIG:-Experiments/reward-train-caption-prior-12k.json}
    DECODER=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["decoder"])' "$CONFIG")
    for noise in 0 0.2 0.4; do
        DATA=$(dirname "$TRAIN")/noise-$noise.jsonl
        train_and_eval "prior-noise-$noise"
    done
    DATA=$TRAIN
    train_and_eval prior-default
    DATA=$(dirname "$TRAIN")/noise-0.jsonl
    train_and_eval prior-no-skipca --no-skip-ca
    table prior-noise-0 prior-noise-0.2 prior-noise-0.4 prior-default prior-no-skipca
    ;;
*)
    echo "usage: $0 ablation|noise|prior" >&2
    exit 2
    ;;
esac
