"""PyTorch CPU peer for diffuse's U-Net bench (crates/diffusion/benches/unet.rs): diffusers' UNet2DModel with the
same named configs, batch 64 (or --batch) of 28x28x1, 2 threads.

Run: /opt/torchenv/bin/python benches/peers/diffusers_unet.py [--threads N] [--only SUBSTRING] [--min-time SECONDS]
     [--min-reps N] [--batch N]
Cases (median wall time over repeats after one warm-up):
  train_step: forward at random timesteps with class labels, MSE against noise, backward, AdamW step (lr 1e-4);
  sample_step: one forward pass under no_grad (what a sampler does per step).
"""

import argparse
import statistics
import time

import diffusers
import torch
import torch.nn.functional as F
from diffusers import UNet2DModel


def parse_args():
    """The command line, parsed only when this file runs as a script: `diffusers_train.py` imports its CONFIGS."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--only", default="", help="run the cases whose name contains this, e.g. fashion-base/train")
    parser.add_argument("--min-time", type=float, default=10.0, help="seconds of repeats per case (at least 5 repeats)")
    parser.add_argument("--min-reps", type=int, default=5, help="at least this many timed repeats per case")
    parser.add_argument("--batch", type=int, default=64)
    return parser.parse_args()


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


def median_seconds(fn, min_time, min_reps):
    """Median wall time per call, and mean process CPU time per call (all threads; on a shared machine the CPU time
    is the steadier figure)."""
    fn()  # warm-up
    times = []
    start, cpu_start = time.perf_counter(), time.process_time()
    while len(times) < min_reps or time.perf_counter() - start < min_time:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), (time.process_time() - cpu_start) / len(times)


def main():
    args = parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    batch = args.batch
    print(f"diffusers {diffusers.__version__}, torch {torch.__version__}, threads {torch.get_num_threads()}")
    for name, config in CONFIGS.items():
        model = UNet2DModel(**config)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        x = torch.randn(batch, 1, 28, 28)
        noise = torch.randn(batch, 1, 28, 28)
        t = torch.randint(0, 1000, (batch,))
        labels = torch.randint(0, 11, (batch,))

        def train_step():
            opt.zero_grad(set_to_none=True)
            loss = F.mse_loss(model(x, t, class_labels=labels).sample, noise)
            loss.backward()
            opt.step()

        def sample_step():
            with torch.no_grad():
                model(x, t, class_labels=labels)

        for case, fn in [("train_step", train_step), ("sample_step", sample_step)]:
            if args.only not in f"{name}/{case}":
                continue
            wall, cpu = median_seconds(fn, args.min_time, args.min_reps)
            print(f"unet/{name}/{case}/batch{batch}: {wall * 1e3:9.1f} ms   (CPU {cpu * 1e3:9.1f} ms per step)")


if __name__ == "__main__":
    main()
