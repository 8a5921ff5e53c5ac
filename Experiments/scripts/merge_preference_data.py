"""Merge preference JSONL files into one, rewriting each record's image paths so they stay
relative to the merged file (`reward train` reads one `data` file).

    python3 Experiments/scripts/merge_preference_data.py OUT.jsonl IN1.jsonl IN2.jsonl ...
"""
import json
import os
import sys

if len(sys.argv) < 3:
    sys.exit("usage: merge_preference_data.py OUT.jsonl IN.jsonl [IN.jsonl ...]")
out_path = sys.argv[1]
if os.path.exists(out_path):
    sys.exit(f"{out_path} exists; remove it first")
out_dir = os.path.dirname(os.path.abspath(out_path))
count = 0
with open(out_path, "w") as out:
    for in_path in sys.argv[2:]:
        in_dir = os.path.dirname(os.path.abspath(in_path))
        with open(in_path) as lines:
            for number, line in enumerate(lines, 1):
                if not line.strip():
                    continue
                record = json.loads(line)
                if "images" not in record:
                    sys.exit(f"{in_path}: line {number} has no images")
                record["images"] = [os.path.relpath(os.path.join(in_dir, image), out_dir) for image in record["images"]]
                out.write(json.dumps(record, sort_keys=True) + "\n")
                count += 1
print(f"wrote {count} records to {out_path}")
