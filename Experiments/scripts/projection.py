#!/usr/bin/env python3
"""Projects data-parallel fine-tuning to N machines from `bench ddpo --json` measured on one
machine with 1 rank and with 2 ranks (1 thread each). What is measured: the epoch's compute C
(sampling + training, 1 rank), the 2-rank epoch, the bytes of each gradient all-reduce and of the
gathered trajectories. What is assumed: the network (bandwidth and latency below, a ring
all-reduce and all-gather) and that the 2-rank overhead O = T2 − C/2 (replicated scoring and
bookkeeping, imbalance) does not shrink with N.
    T(N) = C/2 + O + steps(N)·[2(N−1)/N·B/bw + 2(N−1)·α] + (N−1)/N·G(N)/bw
with each machine keeping the 2-rank run's share of the epoch (weak scaling: the epoch, its
optimizer steps and its gathered trajectories G(N) grow with N).
The benchmark's rewards are random: a run's scoring, which each rank does for its own samples only,
is added with --scoring-rate (images per second one rank scores; `bench reward` measures it).
usage: Experiments/scripts/projection.py BENCH1.json BENCH2.json [--bandwidth GBps] [--latency us] [--scoring-rate N]"""
import json, sys

args = sys.argv[1:]
bandwidth, latency, scoring = 1.25e9, 50e-6, 0.0
if "--scoring-rate" in args:
    i = args.index("--scoring-rate"); scoring = float(args[i + 1]); del args[i:i + 2]
if "--bandwidth" in args:
    i = args.index("--bandwidth"); bandwidth = float(args[i + 1]) * 1e9; del args[i:i + 2]
if "--latency" in args:
    i = args.index("--latency"); latency = float(args[i + 1]) * 1e-6; del args[i:i + 2]
one, two = (json.load(open(path)) for path in args[:2])
seconds = lambda report: sum(p["seconds"] for p in report["phases"])
samples = one["phases"][0]["samples"]
compute, t2 = seconds(one), seconds(two)
overhead = max(t2 - compute / 2, 0)
steps = max(two["allreduce"]["calls"], 1)
gathered = two["trajectoryBytes"]
print(f"measured: 1 rank {compute:.2f} s per epoch of {samples} samples ({samples / compute:.2f} samples/s); "
      f"2 ranks {t2:.2f} s ({samples / t2:.2f} samples/s, ×{compute / t2:.2f}); overhead O = {overhead:.2f} s; "
      f"{steps} all-reduces per epoch; trajectories {gathered / 1e6:.2f} MB per epoch")
print(f"assumed: {bandwidth / 1e9:.2f} GB/s, {latency * 1e6:.0f} µs per message, ring all-reduce and all-gather"
      + (f"; each rank scores its own samples at {scoring:.0f} images/s" if scoring > 0 else "; scoring not counted"))
# Weak scaling, the use that matters here (DDPO needs more samples per epoch, not the same epoch
# sooner): each machine keeps the 2-rank run's share of the epoch (samples/2 samples), so the epoch
# grows with N, and so do its optimizer steps and its gathered trajectories.
share = samples // 2
print(f"weak scaling: {share} samples per machine per epoch (the epoch grows with N)")
print("| machines | epoch | LoRA: s per epoch | samples/s | speed-up | full fine-tuning: s per epoch | samples/s | speed-up |")
print("|---:|---:|---:|---:|---:|---:|---:|---:|")
for n in [1, 2, 4, 8, 16, 32, 64]:
    epoch = share * n
    row = [str(n), str(epoch)]
    for floats in [two["allreduceFloats"], two["fullFloats"]]:
        b = 4 * floats
        steps_n = steps * epoch / samples
        comm = 0 if n == 1 else steps_n * (2 * (n - 1) / n * b / bandwidth + 2 * (n - 1) * latency) + (n - 1) / n * gathered * epoch / samples / bandwidth
        t = compute / 2 + (0 if n == 1 else overhead) + comm + (share / scoring if scoring > 0 else 0)
        one = compute / 2 + (share / scoring if scoring > 0 else 0)
        row += [f"{t:.2f}", f"{epoch / t:.1f}", f"×{(epoch / t) / (share / one):.1f}"]
    print("| " + " | ".join(row) + " |")
