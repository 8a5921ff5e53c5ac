#!/usr/bin/env python3
"""One preference file from several labellings of the same pairs: each label is the majority of
the labellers' (an odd number of files, line for line the same pairs and images, e.g. written by
`diffusion-rl reward make-data --relabel DIR/data.jsonl --out vote-S.jsonl --seed S` for three S).
The gold verdicts and everything else are taken from the first file. Prints, per perspective,
how often the voted labels agree with the gold judge on the pairs it separates.

usage: python3 Experiments/scripts/majority_vote.py OUT.jsonl IN1.jsonl IN2.jsonl IN3.jsonl
"""
import json
import sys


def main():
    out, sources = sys.argv[1], sys.argv[2:]
    if len(sources) < 3 or len(sources) % 2 == 0:
        sys.exit("majority_vote.py: give an odd number (at least 3) of labelled files")
    files = [open(s) for s in sources]
    written = 0
    agreement = {}  # perspective → [agreeing, pairs gold separates]
    with open(out, "w") as sink:
        for lines in zip(*files):
            records = [json.loads(line) for line in lines]
            first = records[0]
            if any(r["images"] != first["images"] or r["prompt"] != first["prompt"] for r in records):
                sys.exit(f"majority_vote.py: line {written + 1} differs in its images or prompt across the files")
            for field in ("preferred", "labels"):
                if field not in first:
                    continue
                for key, value in first[field].items():
                    votes = [r[field][key] for r in records]
                    # 0/1 preferences and true/false labels alike: the more frequent value.
                    first[field][key] = max(set(votes), key=votes.count)
            for key, gold in first.get("goldPreferred", {}).items():
                if key in first.get("preferred", {}):
                    counts = agreement.setdefault(key, [0, 0])
                    counts[0] += first["preferred"][key] == gold
                    counts[1] += 1
            sink.write(json.dumps(first, sort_keys=True) + "\n")
            written += 1
    print(f"{written} records, majority of {len(sources)} labellings, written to {out}")
    print("voted labels agree with the gold judge on pairs it separates: "
          + ", ".join(f"{key} {a / n:.3f}" for key, (a, n) in sorted(agreement.items())))


if __name__ == "__main__":
    main()
