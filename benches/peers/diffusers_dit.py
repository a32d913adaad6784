"""PyTorch + diffusers peer of diffuse's DiT bench (crates/diffusion/benches/dit.rs): diffusers' DiTTransformer2DModel
with the same named configs (crates/models/src/dit/config.rs), batch 64 of 28x28x1, learned variance (2 output
channels), 2 threads on the CPU.

Run: /opt/torchenv/bin/python benches/peers/diffusers_dit.py [--device cpu|cuda] [--threads N] [--only SUBSTRING]
         [--min-time SECONDS]
Cases (median wall time over repeats after one warm-up; on cuda, synchronised around each call):
  train_step: forward at spread timesteps with class labels, MSE of the whole output against a fixed target,
              backward, AdamW step (lr 1e-4);
  sample_step: one forward pass under no_grad (what a sampler does per step).
"""

import argparse
import statistics
import time

import diffusers
import torch
import torch.nn.functional as F
from diffusers import DiTTransformer2DModel

ARGS = argparse.ArgumentParser()
ARGS.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
ARGS.add_argument("--threads", type=int, default=2)
ARGS.add_argument("--only", default="", help="run the cases whose name contains this, e.g. dit-s-2/train")
ARGS.add_argument("--min-time", type=float, default=10.0, help="seconds of repeats per case (at least 5 repeats)")
ARGS = ARGS.parse_args()
torch.set_num_threads(ARGS.threads)
torch.manual_seed(0)
DEVICE = torch.device(ARGS.device)


def dit(width, heads, depth, patch):
    return dict(num_attention_heads=heads, attention_head_dim=width // heads, in_channels=1, out_channels=2,
                num_layers=depth, sample_size=28, patch_size=patch, num_embeds_ada_norm=10)


# diffuse's named configs (DiTConfig::named), in the same order as its bench.
CONFIGS = {
    "dit-s-4": dit(192, 3, 6, 4),
    "dit-s-2": dit(192, 3, 6, 2),
    "dit-b-4": dit(384, 6, 12, 4),
}
BATCH = 64


def sync():
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()


def median_ms(fn, min_reps=5):
    fn()
    sync()
    times = []
    start = time.perf_counter()
    while len(times) < min_reps or time.perf_counter() - start < ARGS.min_time:
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def main():
    print(f"diffusers {diffusers.__version__}, torch {torch.__version__}, {DEVICE}, threads {torch.get_num_threads()}")
    for name, config in CONFIGS.items():
        if ARGS.only and not any(ARGS.only in f"{name}/{case}" for case in ("train_step", "sample_step")):
            continue
        model = DiTTransformer2DModel(**config).to(DEVICE)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        x = torch.randn(BATCH, 1, 28, 28, device=DEVICE)
        target = torch.randn(BATCH, 2, 28, 28, device=DEVICE)
        t = torch.tensor([(i * 397) % 1000 for i in range(BATCH)], device=DEVICE)
        labels = torch.tensor([i % 11 for i in range(BATCH)], device=DEVICE)

        def train_step():
            opt.zero_grad(set_to_none=True)
            loss = F.mse_loss(model(x, timestep=t, class_labels=labels).sample, target)
            loss.backward()
            opt.step()

        def sample_step():
            with torch.no_grad():
                model(x, timestep=t, class_labels=labels)

        for case, fn in (("train_step", train_step), ("sample_step", sample_step)):
            if ARGS.only in f"{name}/{case}":
                print(f"{name}/{case}/batch{BATCH:<3d} {median_ms(fn):10.2f} ms")


if __name__ == "__main__":
    main()
