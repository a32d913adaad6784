"""PyTorch CPU peer for diffuse's U-Net bench (crates/diffusion/benches/unet.rs): diffusers' UNet2DModel with the
same named configs, batch 64 of 28x28x1, 2 threads.

Run: /opt/torchenv/bin/python benches/peers/diffusers_unet.py
Cases (median wall time over repeats after one warm-up):
  train_step: forward at random timesteps with class labels, MSE against noise, backward, AdamW step (lr 1e-4);
  sample_step: one forward pass under no_grad (what a sampler does per step).
"""

import statistics
import time

import diffusers
import torch
import torch.nn.functional as F
from diffusers import UNet2DModel

torch.set_num_threads(2)
torch.manual_seed(0)

COMMON = dict(sample_size=28, in_channels=1, out_channels=1, attention_head_dim=32, norm_num_groups=8, num_class_embeds=11)
CONFIGS = {
    "fashion-small": dict(
        block_out_channels=(32, 64, 64),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
        **COMMON,
    ),
    "fashion-base": dict(
        block_out_channels=(64, 128, 128),
        layers_per_block=2,
        down_block_types=("DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
        **COMMON,
    ),
}
BATCH = 64


def median_seconds(fn, min_time=10.0, min_reps=5):
    fn()  # warm-up
    times = []
    start = time.perf_counter()
    while len(times) < min_reps or time.perf_counter() - start < min_time:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main():
    print(f"diffusers {diffusers.__version__}, torch {torch.__version__}, threads {torch.get_num_threads()}")
    for name, config in CONFIGS.items():
        model = UNet2DModel(**config)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        x = torch.randn(BATCH, 1, 28, 28)
        noise = torch.randn(BATCH, 1, 28, 28)
        t = torch.randint(0, 1000, (BATCH,))
        labels = torch.randint(0, 11, (BATCH,))

        def train_step():
            opt.zero_grad(set_to_none=True)
            loss = F.mse_loss(model(x, t, class_labels=labels).sample, noise)
            loss.backward()
            opt.step()

        def sample_step():
            with torch.no_grad():
                model(x, t, class_labels=labels)

        for case, fn in [("train_step", train_step), ("sample_step", sample_step)]:
            print(f"unet/{name}/{case}/batch{BATCH}: {median_seconds(fn) * 1e3:9.1f} ms")


if __name__ == "__main__":
    main()
