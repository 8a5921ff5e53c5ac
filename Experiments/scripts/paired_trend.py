#!/usr/bin/env python3
"""Training reward of a DDPO run, paired by prompt: for every prompt drawn in both halves of the
run, its mean reward in the second half minus the first; prints the mean change and its standard
error for the total reward, gold alignment and gold fidelity. Epoch means mix different prompts;
pairing by prompt removes that spread. Needs h5py (see Experiments/README.md).

usage: Experiments/scripts/paired_trend.py RUN.h5 [RUN.h5 ...]
"""
import sys

import h5py
import numpy as np


def paired_change(path):
    samples = h5py.File(path, "r", swmr=True)["samples"]
    epoch, prompt = np.array(samples["epoch"]), np.array(samples["prompt"])
    half = (epoch.max() + 1) // 2
    columns = {"reward": "reward", "alignment": "gold_alignment", "fidelity": "gold_fidelity"}
    changes = {name: [] for name in columns}
    for p in np.unique(prompt):
        first, second = (prompt == p) & (epoch < half), (prompt == p) & (epoch >= half)
        if first.any() and second.any():
            for name, column in columns.items():
                values = np.array(samples[column])
                changes[name].append(values[second].mean() - values[first].mean())
    return epoch.max() + 1, {name: np.array(v) for name, v in changes.items()}


for path in sys.argv[1:]:
    epochs, changes = paired_change(path)
    parts = [f"{name} {v.mean():+.3f} ± {v.std(ddof=1) / np.sqrt(len(v)):.3f}" for name, v in changes.items()]
    print(f"{path}: {epochs} epochs, {len(changes['reward'])} prompts in both halves; 2nd − 1st half: " + ", ".join(parts))
