#!/usr/bin/env python3
"""Writes the records of the first K distinct prompts of a preference JSONL beside it, as
prompts-K.jsonl (image paths stay relative to the same folder).
usage: Experiments/scripts/subset_preference_data.py DIR/data.jsonl K [K ...]"""
import json, os, sys

source, counts = sys.argv[1], [int(k) for k in sys.argv[2:]]
records = [json.loads(line) for line in open(source) if line.strip()]
order = list(dict.fromkeys(r["prompt"] for r in records))
for k in counts:
    keep = set(order[:k])
    target = os.path.join(os.path.dirname(source), f"prompts-{k}.jsonl")
    with open(target + ".partial", "w") as out:
        for r in records:
            if r["prompt"] in keep:
                out.write(json.dumps(r, sort_keys=True) + "\n")
    os.replace(target + ".partial", target)
    print(f"{target}: {sum(r['prompt'] in keep for r in records)} records of {min(k, len(order))} prompts")
