"""PyTorch's time for one DDPO epoch of `diffusion-rl bench ddpo`'s config, on the same machine.

    python3 -m venv .venv && .venv/bin/pip install "torch==2.13.0+cpu" diffusers
    .venv/bin/python Experiments/peers/ddpo_epoch_torch.py --threads 2 [--repeats 3] [--steps-per-pass K] [--json]

The same work as the Swift benchmark, pinned so that it is no straw man:
- the same UNet (diffusers' UNet2DConditionModel, `default_unet.py`), LoRA
  of rank 4 (α = rank) on the same projections (to_q, to_k, to_v, to_out.0 of every attention
  block) and nothing else trainable — the trainable parameter count is printed to check against
  the Swift run's;
- sampling: 32 samples, 20 DDIM steps, η = 1, guidance 5, both guidance branches in one batched
  pass, the per-step log-probabilities kept, under `torch.inference_mode()`;
- training: PPO's clipped objective on every one of the 20 steps of every sample, batches of 8
  samples (4 AdamW steps of lr 3e-4, gradient norm clipped to 1), the guided ε recomputed with
  gradients for the LoRA only; with --steps-per-pass K, K of a batch's steps share one UNet pass
  (rows stacked, each at its own timestep), as the Swift trainer's `stepsPerPass` does;
- `torch.set_num_threads(--threads)`.
Left out on the PyTorch side (less work for it than for the Swift epoch): the text encoder (a
random context of the same shape, 16 tokens of width 64) and the VAE decode of the final latents.
Reports the fastest of --repeats epochs (sampling and training timed apart) and the process's peak
resident memory.
"""
import argparse
import json
import math
import resource
import time

import torch
from default_unet import default_unet

parser = argparse.ArgumentParser()
parser.add_argument("--threads", type=int, default=2)
parser.add_argument("--repeats", type=int, default=3)
parser.add_argument("--samples", type=int, default=32)
parser.add_argument("--steps", type=int, default=20)
parser.add_argument("--train-batch", type=int, default=8)
parser.add_argument("--rank", type=int, default=4)
parser.add_argument("--steps-per-pass", type=int, default=1,
                    help="trained steps of a batch stacked into one UNet pass (the Swift config's stepsPerPass); 1: one pass per step, as ddpo-pytorch")
parser.add_argument("--json", action="store_true")
args = parser.parse_args()
torch.set_num_threads(args.threads)
torch.manual_seed(0)

unet = default_unet()
unet.requires_grad_(False)


class LoRALinear(torch.nn.Module):
    """base(x) + (α/r)·up(down(x)), up initialized to zero (as the Swift LoRALinear)."""

    def __init__(self, base, rank):
        super().__init__()
        self.base = base
        self.down = torch.nn.Linear(base.in_features, rank, bias=False)
        self.up = torch.nn.Linear(rank, base.out_features, bias=False)
        torch.nn.init.zeros_(self.up.weight)

    def forward(self, x):
        return self.base(x) + self.up(self.down(x))


for module in list(unet.modules()):
    if module.__class__.__name__ == "Attention":
        for name in ("to_q", "to_k", "to_v"):
            setattr(module, name, LoRALinear(getattr(module, name), args.rank))
        module.to_out[0] = LoRALinear(module.to_out[0], args.rank)
trainable = [p for p in unet.parameters() if p.requires_grad]
optimizer = torch.optim.AdamW(trainable, lr=3e-4, weight_decay=0.0)

# DDIM with η = 1 over 20 of 1,000 steps (scaled-linear βs; the timing does not depend on them).
betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float64) ** 2
alphas_cumprod = torch.cumprod(1 - betas, 0).float()
timesteps = list(range(999, -1, -1000 // args.steps))[: args.steps]
guidance, eta, clip_range = 5.0, 1.0, 0.2
samples, steps, batch = args.samples, args.steps, args.train_batch
context = torch.randn(samples, 16, 64)
empty = torch.randn(1, 16, 64).expand(samples, 16, 64)


def guided_epsilon(x, t, ctx, emp):
    """ε̂ with guidance; t is one timestep or one per row."""
    t = torch.full((x.shape[0],), t) if isinstance(t, int) else t
    both = unet(torch.cat([x, x]), torch.cat([t, t]), encoder_hidden_states=torch.cat([emp, ctx])).sample
    unconditional, conditional = both.chunk(2)
    return unconditional + guidance * (conditional - unconditional)


def ddim_mean_and_std(x, eps, t, t_prev):
    # The last step goes to ᾱ_0 (not 1), as Stable Diffusion's DDIM does, so its variance is not 0.
    a, a_prev = alphas_cumprod[t], alphas_cumprod[max(t_prev, 0)]
    std = eta * math.sqrt((1 - a_prev) / (1 - a) * (1 - a / a_prev))
    x0 = (x - (1 - a).sqrt() * eps) / a.sqrt()
    mean = a_prev.sqrt() * x0 + (1 - a_prev - std ** 2).sqrt() * eps
    return mean, std


def log_prob(sample, mean, std):
    return (-((sample - mean) ** 2) / (2 * std ** 2) - math.log(std) - 0.5 * math.log(2 * math.pi)).sum(dim=(1, 2, 3))


def sampling_epoch():
    with torch.inference_mode():
        x = torch.randn(samples, 4, 8, 8)
        latents, log_probs = [x], []
        for i, t in enumerate(timesteps):
            t_prev = timesteps[i + 1] if i + 1 < len(timesteps) else -1
            mean, std = ddim_mean_and_std(x, guided_epsilon(x, t, context, empty), t, t_prev)
            x = mean + std * torch.randn_like(mean)
            latents.append(x)
            log_probs.append(log_prob(x, mean, std))
    # Out of inference mode, so that training can use them as inputs.
    return [l.clone() for l in latents], [lp.clone() for lp in log_probs]


def training_epoch(latents, old_log_probs):
    advantages = torch.randn(samples)
    order = torch.randperm(samples)
    for start in range(0, samples, batch):
        rows = order[start:start + batch]
        order_of_steps = torch.randperm(steps).tolist()
        for first in range(0, steps, args.steps_per_pass):
            chunk = order_of_steps[first:first + args.steps_per_pass]
            # The chunk's steps stacked along the batch, each row at its own timestep.
            x = torch.cat([latents[i][rows] for i in chunk])
            t = torch.cat([torch.full((len(rows),), timesteps[i]) for i in chunk])
            eps = guided_epsilon(x, t, context[rows].repeat(len(chunk), 1, 1), empty[rows].repeat(len(chunk), 1, 1))
            loss = 0
            for k, i in enumerate(chunk):
                t_now, t_prev = timesteps[i], (timesteps[i + 1] if i + 1 < steps else -1)
                part = slice(k * len(rows), (k + 1) * len(rows))
                mean, std = ddim_mean_and_std(x[part], eps[part], t_now, t_prev)
                ratio = torch.exp(log_prob(latents[i + 1][rows], mean, std) - old_log_probs[i][rows])
                a = advantages[rows]
                loss = loss + torch.maximum(-a * ratio, -a * torch.clamp(ratio, 1 - clip_range, 1 + clip_range)).mean()
            (loss / steps).backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)


epochs = []
for _ in range(args.repeats):
    start = time.perf_counter()
    latents, old = sampling_epoch()
    sampled = time.perf_counter()
    training_epoch(latents, old)
    done = time.perf_counter()
    epochs.append({"sampling": sampled - start, "training": done - sampled})
best = min(epochs, key=lambda e: e["sampling"] + e["training"])
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
report = {
    "torch": torch.__version__, "threads": args.threads, "trainableParameters": sum(p.numel() for p in trainable),
    "samples": samples, "steps": steps, "trainBatch": batch, "stepsPerPass": args.steps_per_pass, "repeats": args.repeats,
    "samplingSeconds": best["sampling"], "trainingSeconds": best["training"],
    "samplesPerSecond": samples / (best["sampling"] + best["training"]),
    "samplingSamplesPerSecond": samples / best["sampling"], "trainingSamplesPerSecond": samples / best["training"],
    "peakResidentBytes": peak,
}
if args.json:
    print(json.dumps(report))
else:
    print(f"PyTorch {torch.__version__}, {args.threads} thread(s), LoRA rank {args.rank}: {report['trainableParameters']} trainable parameters")
    print(f"sampling {best['sampling']:.2f} s ({report['samplingSamplesPerSecond']:.2f} samples/s), training {best['training']:.2f} s "
          f"({report['trainingSamplesPerSecond']:.2f} samples/s), epoch {samples / report['samplesPerSecond']:.2f} s "
          f"({report['samplesPerSecond']:.2f} samples/s); peak resident {peak / 2**20:.0f} MiB (best of {args.repeats})")
