#!/usr/bin/env python3
"""The oracle's checkpoint of a fine-tuning run kept with `evaluation.keepModels`: the evaluated
epoch whose gold alignment on the evaluation prompts (the tuning set) is highest (ties: the
earliest), with the KL and the guard's signals logged near it. Prints one JSON object.
usage: Experiments/scripts/oracle_pick.py RUN_DIR"""
import json, os, sys
import h5py
import numpy as np

run = sys.argv[1]
with h5py.File(os.path.join(run, "run.h5"), "r") as f:
    m = f["metrics"]
    alignment = m["eval_alignment"][:]
    se = m["eval_alignment_se"][:]
    partial = m["eval_alignment_partial"][:]
    kl = m["kl_mean"][:]
    base = float(m["base_eval_alignment"][0])
evaluated = [e for e in range(len(alignment)) if np.isfinite(alignment[e])]
best = max(evaluated, key=lambda e: (alignment[e], -e))

def kl_at(e):
    """The last KL measured at or before epoch e (KL is measured every few epochs)."""
    known = [k for k in range(e + 1) if np.isfinite(kl[k])]
    return float(kl[known[-1]]) if known else None

curve = [{"epochs": e + 1, "alignment": round(float(alignment[e]), 4), "se": round(float(se[e]), 4),
          "partial": round(float(partial[e]), 4), "kl": kl_at(e)} for e in evaluated]
print(json.dumps({"run": run, "base_alignment": base, "oracle_epochs": best + 1,
                  "oracle_model": os.path.join(run, "models", "epoch-%04d" % (best + 1)),
                  "oracle_alignment": float(alignment[best]), "oracle_kl": kl_at(best), "curve": curve}, indent=1))
