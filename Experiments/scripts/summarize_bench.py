"""Summarizes interleaved benchmark runs: `diffusion-rl bench ddpo|unet --json` and the PyTorch
peers' `--json` output.

    python3 Experiments/scripts/summarize_bench.py LABEL=GLOB [LABEL=GLOB ...]

Each GLOB names one side's rounds (for example `swift=Logs/perf17/ddpo-default-*.json`). Files
ending in -a.json and -b.json are the two halves of one round run at the same time (two processes
of one thread on half the work each): the round's time is the slower half's. For DDPO epochs it
prints the sampling and training samples per second (range over the rounds), the best epoch and
the peak resident memory (summed over processes; under mpirun, rank 0's times the ranks; reports
written before `processes` existed count worker threads as processes too); for UNet passes the best milliseconds of each (batch, pass).
"""
import glob
import json
import re
import sys


def rounds(pattern):
    """The rounds of a glob: lists of one report, or of the two halves run together."""
    groups = {}
    for path in sorted(glob.glob(pattern)):
        key = re.sub(r"-[ab]\.json$", "", path)
        groups.setdefault(key, []).append(json.load(open(path)))
    return list(groups.values())


def ddpo(halves):
    """(sampling s, training s, samples, peak bytes) of one round; halves run at once add samples."""
    def one(report):
        if "phases" in report:  # diffusion-rl bench ddpo
            sampling, training = report["phases"][0], report["phases"][1]
            # Under mpirun the report holds rank 0's peak; the ranks are alike, so the job's is about
            # processes × it (worker threads share one process, whose peak the report holds).
            processes = report.get("processes", report.get("ranks", 1))
            return (sampling["seconds"], training["seconds"], sampling["samples"], (report.get("peakResidentBytes") or 0) * processes)
        return report["samplingSeconds"], report["trainingSeconds"], report["samples"], report["peakResidentBytes"]
    parts = [one(r) for r in halves]
    return (max(p[0] for p in parts), max(p[1] for p in parts), sum(p[2] for p in parts), sum(p[3] for p in parts))


def unet(halves):
    """Milliseconds by (batch of the whole job, pass) of one round."""
    figures = {}
    for report in halves:
        for f in report["figures"]:
            key = (f["batch"] * len(halves), f["pass"])
            figures[key] = max(figures.get(key, 0), f["milliseconds"])
    return figures, [r.get("fractionOfCeiling") for r in halves]


for argument in sys.argv[1:]:
    label, pattern = argument.split("=", 1)
    found = rounds(pattern)
    if not found:
        sys.exit(f"no files match {pattern}")
    if "figures" in found[0][0]:
        best = {}
        shares = {}
        for halves in found:
            figures, _ = unet(halves)
            for key, ms in figures.items():
                best[key] = min(best.get(key, float("inf")), ms)
            if len(halves) == 1:
                for f in halves[0]["figures"]:
                    key = (f["batch"], f["pass"])
                    if f["milliseconds"] == best[key] and "fractionOfCeiling" in f:
                        shares[key] = f["fractionOfCeiling"]
        text = ", ".join(f"b{b} {p} {ms:.1f} ms" + (f" ({100 * shares[(b, p)]:.0f} %)" if (b, p) in shares else "")
                         for (b, p), ms in sorted(best.items()))
        print(f"{label:>16}: {len(found)} rounds; best {text}")
        continue
    rows = [ddpo(h) for h in found]
    sampling = [r[2] / r[0] for r in rows]
    training = [r[2] / r[1] for r in rows]
    best = min(rows, key=lambda r: (r[0] + r[1]) / r[2])
    memory = [r[3] / 2**20 for r in rows]
    print(f"{label:>16}: {len(rows)} rounds; sampling {min(sampling):.1f}–{max(sampling):.1f} samples/s, "
          f"training {min(training):.2f}–{max(training):.2f}, epoch (best) {best[2] / (best[0] + best[1]):.2f} samples/s, "
          f"memory {min(memory):.0f}–{max(memory):.0f} MiB")
