"""Summarizes interleaved `bench ddpo --json` and `ddpo_epoch_torch.py --json` runs.

    python3 Experiments/scripts/summarize_ddpo_bench.py LABEL=GLOB [LABEL=GLOB ...]

Each GLOB names one side's rounds (for example `swift=Logs/perf17/ddpo-default-*.json`); prints, per
side, the sampling and training samples per second (range over the rounds), the best epoch's samples
per second and the peak resident memory.
"""
import glob
import json
import sys


def figures(report):
    if "phases" in report:  # diffusion-rl bench ddpo
        sampling, training = report["phases"][0], report["phases"][1]
        return (sampling["samplesPerSecond"], training["samplesPerSecond"], sampling["seconds"] + training["seconds"],
                sampling["samples"], report.get("peakResidentBytes") or 0)
    return (report["samplingSamplesPerSecond"], report["trainingSamplesPerSecond"],
            report["samplingSeconds"] + report["trainingSeconds"], report["samples"], report["peakResidentBytes"])


for argument in sys.argv[1:]:
    label, pattern = argument.split("=", 1)
    rows = [figures(json.load(open(path))) for path in sorted(glob.glob(pattern))]
    if not rows:
        sys.exit(f"no files match {pattern}")
    sampling, training = [r[0] for r in rows], [r[1] for r in rows]
    best = min(rows, key=lambda r: r[2])
    memory = [r[4] / 2**20 for r in rows]
    print(f"{label:>12}: {len(rows)} rounds; sampling {min(sampling):.1f}–{max(sampling):.1f} samples/s, "
          f"training {min(training):.2f}–{max(training):.2f}, epoch (best) {best[3] / best[2]:.2f} samples/s, "
          f"memory {min(memory):.0f}–{max(memory):.0f} MiB")
