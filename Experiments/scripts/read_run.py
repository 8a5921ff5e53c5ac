"""Read a DiffusionRL run log with h5py: metrics, samples, events, images.

    python3 Experiments/scripts/read_run.py Logs/NAME/run.h5

Opens with swmr=True, so a live run or one whose writer crashed can be read too.
"""
import json
import sys

import h5py

path = sys.argv[1]
with h5py.File(path, "r", swmr=True) as f:
    print("commit:", f.attrs["git_commit"].decode(), "seed:", int(f.attrs["seed"]))
    print("config:", json.loads(f.attrs["config"].decode()))
    print("prompts:", [p.decode() for p in f["prompts"][:]])
    for name, dataset in f["metrics"].items():
        print(f"metric {name}: {len(dataset)} epochs, last {dataset[-1]:.4g}")
    samples = f["samples"]
    print("samples:", {name: samples[name].shape for name in samples})
    events = f["events"]
    for epoch, kind, message in zip(events["epoch"][:], events["kind"][:], events["message"][:]):
        print(f"event epoch {epoch} [{kind.decode()}] {message.decode()}")
    print("images:", f["images/pixels"].shape, f["images/pixels"].dtype)
