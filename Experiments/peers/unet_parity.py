"""Loads the Swift UNet's weights by name into diffusers' UNet2DConditionModel and compares outputs.

    .build/release/diffusion-rl debug unet-parity --out /tmp/parity
    .venv/bin/python Experiments/peers/unet_parity.py /tmp/parity

Exits non-zero when a weight is missing or unexpected, or when the outputs differ by more than
1e-4 (max absolute difference).
"""
import sys

import torch
from default_unet import default_unet
from safetensors.torch import load_file

directory = sys.argv[1]
unet = default_unet()
weights = load_file(f"{directory}/unet.safetensors")
missing, unexpected = unet.load_state_dict(weights, strict=False)
print(f"loaded {len(weights)} tensors by name; missing {len(missing)}, unexpected {len(unexpected)}")
if missing or unexpected:
    print("missing:", missing[:10], "unexpected:", unexpected[:10])
    sys.exit(1)
inputs = load_file(f"{directory}/inputs.safetensors")
expected = load_file(f"{directory}/output.safetensors")["output"]
with torch.no_grad():
    output = unet(inputs["sample"], inputs["timesteps"], encoder_hidden_states=inputs["context"]).sample
difference = (output - expected).abs().max().item()
scale = expected.abs().max().item()
print(f"max |diffusers − swift| = {difference:.2e} (outputs up to {scale:.2f})")
sys.exit(0 if difference <= 1e-4 else 1)
