#!/usr/bin/env bash
# The shipped recipe at eight times the preference prompts, labelled by the default annotators:
# the 4,096 prompts of reward_model_4096.sh plus 4,096 more (prompts 4,096–8,191 of the training
# split, seed 5), merged into one JSONL, the same training, then the held-out-composition accuracy
# against gold and, paired on the same pairs, against the 4,096-prompt model. About 45 minutes on
# 2 cores after reward_model_4096.sh (17 for the new data, 27 for training, with other jobs running).
# usage: Experiments/scripts/reward_model_8192.sh      (from the repository root; BIN, THREADS as in seeds.sh)
set -euo pipefail
bin=${BIN:-.build/release/diffusion-rl}
threads=${THREADS:-2}
[ -d Logs/reward-default-4096/model ] || Experiments/scripts/reward_model_4096.sh
[ -s Logs/reward-data-4096b/data.jsonl ] || "$bin" reward make-data --model Models/base --out Logs/reward-data-4096b --split train \
    --prompts 4096 --first 4096 --seed 5 --threads "$threads"
[ -s Logs/reward-data-8192.jsonl ] || python3 Experiments/scripts/merge_preference_data.py Logs/reward-data-8192.jsonl \
    Logs/reward-data-4096/data.jsonl Logs/reward-data-4096b/data.jsonl
[ -d Logs/reward-default-8192/model ] || "$bin" reward train --config Experiments/reward-train-default-annotators-8192.json \
    --out Logs/reward-default-8192 --threads "$threads"
"$bin" reward eval --model Logs/reward-default-8192/model --data Logs/reward-data-heldout/data.jsonl --threads "$threads" --json \
    > Logs/reward-default-8192/heldout.json
"$bin" reward eval --model Logs/reward-default-8192/model --data Logs/reward-data-heldout/data.jsonl --threads "$threads"
"$bin" reward eval --model Logs/reward-default-8192/model --compare Logs/reward-default-4096/model \
    --data Logs/reward-data-heldout/data.jsonl --threads "$threads"
