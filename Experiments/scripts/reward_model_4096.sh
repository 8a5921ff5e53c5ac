#!/usr/bin/env bash
# The shipped reward model's recipe at four times the preference prompts, labelled by the default
# (noisy, saturation-biased) annotators as a user with AI annotators would have them: the
# 12,000-step caption-pretrained decoder as the alignment prior, 4,096 training prompts, then the
# held-out-composition accuracy against gold. About 90 minutes on 2 cores.
# usage: Experiments/scripts/reward_model_4096.sh      (from the repository root; BIN, THREADS as in seeds.sh)
set -euo pipefail
bin=${BIN:-.build/release/diffusion-rl}
threads=${THREADS:-2}
[ -d Logs/reward-mllm-6k/decoder ] || "$bin" reward pretrain --config Experiments/reward-pretrain-6k.json --out Logs/reward-mllm-6k --threads "$threads"
[ -d Logs/reward-mllm-12k/decoder ] || "$bin" reward pretrain --config Experiments/reward-pretrain-12k.json --out Logs/reward-mllm-12k --threads "$threads" &
[ -s Logs/reward-data-4096/data.jsonl ] || "$bin" reward make-data --model Models/base --out Logs/reward-data-4096 --split train \
    --prompts 4096 --first 0 --seed 0 --threads "$threads" &
wait
[ -d Logs/reward-default-4096/model ] || "$bin" reward train --config Experiments/reward-train-default-annotators-4096.json \
    --out Logs/reward-default-4096 --threads "$threads"
[ -s Logs/reward-data-heldout/data.jsonl ] || "$bin" reward make-data --model Models/base --out Logs/reward-data-heldout --split heldout \
    --prompts 256 --seed 2 --threads "$threads"
"$bin" reward eval --model Logs/reward-default-4096/model --data Logs/reward-data-heldout/data.jsonl --threads "$threads" --json \
    > Logs/reward-default-4096/heldout.json
"$bin" reward eval --model Logs/reward-default-4096/model --data Logs/reward-data-heldout/data.jsonl --threads "$threads"
