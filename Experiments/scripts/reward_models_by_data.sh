#!/usr/bin/env bash
# Three reward models trained on 1×, 2× and 4× the preference data (the first 256, 512 and 1,024
# training prompts of one data set), each from the same 6,000-step caption-pretrained decoder:
# the reward models `study overoptimization` compares. About 40 minutes on 2 cores.
# usage: Experiments/scripts/reward_models_by_data.sh      (from the repository root)
set -euo pipefail
bin=.build/release/diffusion-rl
[ -d Logs/reward-mllm-6k/decoder ] || "$bin" reward pretrain --config Experiments/reward-pretrain-6k.json --out Logs/reward-mllm-6k
[ -s Logs/reward-data-1024/data.jsonl ] || "$bin" reward make-data --model Models/base --out Logs/reward-data-1024 --split train \
    --prompts 1024 --first 0 --seed 0 --noise 0 --saturation-bias 0
python3 Experiments/scripts/subset_preference_data.py Logs/reward-data-1024/data.jsonl 256 512 1024
for k in 256 512 1024; do
  [ -d Logs/reward-$k-prompts/model ] || "$bin" reward train --config Experiments/reward-train-$k-prompts.json --out Logs/reward-$k-prompts
done
