"""PyTorch's time for the same UNet as `diffusion-rl bench unet`, on the same machine.

    python3 -m venv .venv && .venv/bin/pip install "torch==2.13.0+cpu" diffusers
    .venv/bin/python Experiments/peers/bench_unet_torch.py --threads 2 [--batches 8,32] [--json]

Builds diffusers' UNet2DConditionModel with the default config of DESIGN.md, times forward (no
grad) and forward + backward at batch 8 and 32 (8×8×4 latents, 16 context tokens of width 64),
fastest of repeated runs, as the Swift benchmark does. Prints one JSON object with --json.
"""
import argparse
import json
import time

import torch
from default_unet import default_unet

parser = argparse.ArgumentParser()
parser.add_argument("--threads", type=int, default=2)
parser.add_argument("--batches", default="8,32",
                    help="comma-separated batch sizes; two processes at --threads 1 and half the batches each are "
                         "PyTorch data-parallel over two cores, as `mpirun -np 2 diffusion-rl bench unet --threads 1` (less "
                         "the gradient all-reduce, which the Swift pass includes)")
parser.add_argument("--json", action="store_true")
args = parser.parse_args()
torch.set_num_threads(args.threads)
torch.manual_seed(0)

unet = default_unet()
parameters = sum(p.numel() for p in unet.parameters())


def best(fn, seconds=1.0, minimum=5):
    for _ in range(2):
        fn()
    times, start = [], time.perf_counter()
    while len(times) < minimum or time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


rows = []
for batch in [int(b) for b in args.batches.split(",")]:
    x = torch.randn(batch, 4, 8, 8)
    context = torch.randn(batch, 16, 64)
    t = torch.tensor([(i * 37) % 1000 for i in range(batch)])
    seed = torch.randn(batch, 4, 8, 8)

    def forward():
        with torch.no_grad():
            unet(x, t, encoder_hidden_states=context)

    def training():
        out = unet(x, t, encoder_hidden_states=context).sample
        out.backward(seed)
        unet.zero_grad(set_to_none=True)

    rows.append({"batch": batch, "pass": "forward", "milliseconds": best(forward) * 1000})
    rows.append({"batch": batch, "pass": "forward+backward", "milliseconds": best(training) * 1000})

if args.json:
    print(json.dumps({"torch": torch.__version__, "threads": args.threads, "parameters": parameters, "figures": rows}))
else:
    print(f"PyTorch {torch.__version__}, {args.threads} thread(s), UNet {parameters} parameters")
    for row in rows:
        print(f"{row['batch']:5d}  {row['pass']:18s} {row['milliseconds']:8.2f} ms")
