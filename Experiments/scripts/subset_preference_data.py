#!/usr/bin/env python3
"""Writes the records of the first K prompts of a preference JSONL beside it, as prompts-K.jsonl
(image paths stay relative to the same folder). A prompt is one drawn scene and its images, not a
distinct caption: the world's short captions repeat ("a red triangle"), so K distinct captions
would not grow the data K-fold. `reward make-data` writes each prompt's images consecutively, so
a record belongs to prompt (index of its first image) // IMAGES_PER_PROMPT.
usage: Experiments/scripts/subset_preference_data.py DIR/data.jsonl K [K ...] [--images-per-prompt N]"""
import json, os, sys

args = sys.argv[1:]
per_prompt = 6
if "--images-per-prompt" in args:
    i = args.index("--images-per-prompt")
    per_prompt = int(args[i + 1])
    del args[i:i + 2]
source, counts = args[0], [int(k) for k in args[1:]]
records = [json.loads(line) for line in open(source) if line.strip()]

def prompt_index(record):
    return int(os.path.splitext(os.path.basename(record["images"][0]))[0]) // per_prompt

total = max(prompt_index(r) for r in records) + 1
for k in counts:
    kept = [r for r in records if prompt_index(r) < k]
    target = os.path.join(os.path.dirname(source), f"prompts-{k}.jsonl")
    with open(target + ".partial", "w") as out:
        for r in kept:
            out.write(json.dumps(r, sort_keys=True) + "\n")
    os.replace(target + ".partial", target)
    pairs = sum(len(r["images"]) == 2 for r in kept)
    print(f"{target}: {len(kept)} records ({pairs} pairs) of {min(k, total)} prompts, {len({r['prompt'] for r in kept})} distinct captions")
