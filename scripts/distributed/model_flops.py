"""Parameters and forward FLOPs per image of the two models docs/distributed.md scales on paper: diffuse's
fashion-base (a diffusers UNet2DModel, 28x28x1) and a Stable-Diffusion-1.5-sized UNet2DConditionModel (64x64x4
latents, 77 text tokens of 768). Counted by torch.utils.flop_counter (2 FLOPs per multiply-add, matrix products and
convolutions) on the meta device: no weights are allocated and nothing is computed.

Written against torch 2.15.0 and diffusers 0.42.1:  /opt/torchenv/bin/python scripts/distributed/model_flops.py
"""
import torch
from diffusers import UNet2DConditionModel, UNet2DModel
from torch.utils.flop_counter import FlopCounterMode


def forward_flops(model, *args, **kwargs):
    with FlopCounterMode(display=False) as counter:
        model(*args, **kwargs)
    return counter.get_total_flops()


with torch.device("meta"):
    fashion_base = UNet2DModel(
        sample_size=28, in_channels=1, out_channels=1, block_out_channels=(64, 128, 128), layers_per_block=2,
        down_block_types=("DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=32, norm_num_groups=8, num_class_embeds=11,
    )
    flops = forward_flops(fashion_base, torch.randn(1, 1, 28, 28), torch.tensor([10]), class_labels=torch.tensor([3]))
    params = sum(p.numel() for p in fashion_base.parameters())
    print(f"fashion-base: {params} parameters, {flops / 1e9:.3f} GFLOPs per forward pass of one image")

    sd = UNet2DConditionModel(
        sample_size=64, in_channels=4, out_channels=4, cross_attention_dim=768,
        block_out_channels=(320, 640, 1280, 1280), layers_per_block=2, attention_head_dim=8,
    )
    flops = forward_flops(sd, torch.randn(1, 4, 64, 64), torch.tensor([10]), encoder_hidden_states=torch.randn(1, 77, 768))
    params = sum(p.numel() for p in sd.parameters())
    print(f"SD-1.5-sized U-Net: {params} parameters, {flops / 1e9:.1f} GFLOPs per forward pass of one 64x64x4 latent")
