#!/usr/bin/env bash
# The prompt sets of the fine-tuning studies, disjoint by caption:
#   prompts/train-256.txt   the captions fine-tuning trains on (the trainer's seed-0 pool of the
#                           train split; `finetune` writes it to OUT/prompts.txt)
#   prompts/tuning-128.txt  validation-split captions not in train-256, the first 128: for
#                           choosing settings and checkpoints
#   prompts/report-128.txt  the next 128 such captions: for the figures reported
#   prompts/heldout-128.txt held-out compositions (never in any training split)
# usage: Experiments/scripts/prompt_sets.sh   (from the repository root, after a release build)
set -euo pipefail
bin=.build/release/diffusion-rl
dir=Experiments/prompts
"$bin" world prompts --split validation --n 4000 --seed 1 \
  | awk -v train="$dir/train-256.txt" 'BEGIN { while ((getline line < train) > 0) seen[line] = 1 }
                                       !seen[$0]++ { print }' > /tmp/validation-unseen.txt
head -n 128 /tmp/validation-unseen.txt > "$dir/tuning-128.txt"
sed -n 129,256p /tmp/validation-unseen.txt > "$dir/report-128.txt"
wc -l "$dir"/train-256.txt "$dir"/tuning-128.txt "$dir"/report-128.txt
