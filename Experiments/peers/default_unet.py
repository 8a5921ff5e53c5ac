"""The default UNet of `diffusion-rl` (docs/design.md) as diffusers' UNet2DConditionModel: the one
network every peer script here builds, so that their figures are for the same architecture."""
from diffusers import UNet2DConditionModel


def default_unet():
    return UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, block_out_channels=(64, 128), layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=64, attention_head_dim=8, norm_num_groups=32)
