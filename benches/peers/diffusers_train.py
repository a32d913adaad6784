"""PyTorch + diffusers peer of `diffuse train`: the same fashion-small U-Net trained the same way, saved in the
diffusers layout so that `diffuse eval` scores both models on the same settings (issue 7's peer comparison).

Run (from the repository root):
  /opt/torchenv/bin/python benches/peers/diffusers_train.py --seed 0 --out runs/peer-seed0
  diffuse eval --checkpoint runs/peer-seed0 --num 500 --guidance 2

What matches `diffuse train`'s defaults (crates/cli/src/train.rs, crates/diffusion/src/train):
  data       the 10,000 shipped training images of data/fashion-mnist, scaled to [-1, 1], reshuffled every epoch,
             last partial batch dropped, no flips;
  model      diffusers UNet2DModel with the fashion-small config (benches/peers/diffusers_unet.py), PyTorch's default
             initialisation (which diffuse reproduces);
  objective  epsilon prediction, timesteps uniform in [0, 1000), squaredcos_cap_v2 betas, per-sample MSE over pixels
             weighted by min-SNR-5 (min(SNR, 5)/SNR), label dropout 0.1 to the null class 10;
  optimiser  AdamW(lr 2e-3, betas (0.9, 0.999), eps 1e-8, weight decay 1e-4), global gradient-norm clip 1.0,
             learning rate (s+1)/50 warm-up then cosine to 1e-4 at the last step (diffuse's LrSchedule::Cosine);
  EMA        diffusers' EMAModel, max decay 0.999, warm-up (1+k)/(10+k) (diffuse's EmaWarmup::Fraction);
  outputs    a checkpoint every 100 steps (OUT/step-N: model, EMA and optimiser state; the last 2 kept) and a sample
             grid from the EMA model at step 250 and after the last step (OUT/samples/step-N.png: one row of 8 per
             class, DPM-Solver++(2M) with diffusers' default settings from the run's scheduler, 20 steps,
             classifier-free guidance 2 against the null class, noise from the seed), as `diffuse train` writes them,
             so that the two programs' wall times compare the same recipe (`--no-grids --checkpoint-every 0` leaves
             training and the final save alone).
What differs: the random streams (torch's generator instead of diffuse's Philox/SplitMix64), so the two runs see the
same distribution of batches, timesteps and noise, not the same draws. Hence two seeds per side.

Output: OUT/model and OUT/ema (config.json + diffusion_pytorch_model.safetensors), OUT/scheduler/scheduler_config.json,
OUT/metrics.jsonl (step, loss, lr, grad norm, seconds per step), and the checkpoints and grids above.
"""

import argparse
import copy
import gzip
import json
import math
import pathlib
import shutil
import struct
import time

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler, DPMSolverMultistepScheduler, UNet2DModel
from diffusers.training_utils import EMAModel
from PIL import Image

from diffusers_unet import CONFIGS

NULL_CLASS = 10


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = struct.unpack(">" + "I" * dims, data[4 : 4 + 4 * dims])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def lr_at(step, peak, warmup, total, floor):
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = min((step - warmup) / max(total - warmup, 1), 1.0)
    return floor + (peak - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def ema_copy(model, ema):
    """The EMA weights in a model of their own (the training model keeps its weights)."""
    ema_model = copy.deepcopy(model)
    ema.copy_to(ema_model.parameters())
    return ema_model


@torch.no_grad()
def save_grid(model, scheduler, args, path):
    """A grid of `args.grid_columns` samples per class from `model`, as `diffuse train`'s grids are drawn."""
    # The run's settings, every one of them: a config made in this process lists the settings left at their defaults
    # (`_use_default_values`), and `from_config` would give DPM-Solver its own defaults for those (timestep_spacing
    # "linspace", not DDPM's "leading"), unlike the saved config that `diffuse train` and `diffuse sample` read.
    settings = {key: value for key, value in scheduler.config.items() if not key.startswith("_")}
    sampler = DPMSolverMultistepScheduler.from_config(settings)
    sampler.set_timesteps(args.grid_steps)
    classes = torch.arange(NULL_CLASS).repeat_interleave(args.grid_columns)
    noise = torch.Generator().manual_seed(args.seed)
    x = torch.randn((len(classes), 1, 28, 28), generator=noise) * sampler.init_noise_sigma
    labels = torch.cat([classes, torch.full_like(classes, NULL_CLASS)])
    for t in sampler.timesteps:
        conditional, unconditional = model(torch.cat([x, x]), t, class_labels=labels).sample.chunk(2)
        epsilon = unconditional + args.grid_guidance * (conditional - unconditional)
        x = sampler.step(epsilon, t, x).prev_sample
    pixels = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)[:, 0].numpy()
    rows = [np.concatenate(list(pixels[r : r + args.grid_columns]), axis=1) for r in range(0, len(pixels), args.grid_columns)]
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate(rows, axis=0)).save(path)


def save_checkpoint(model, ema, optimizer, args, step):
    """OUT/step-N with the model, the EMA model and the optimiser state; only the last `args.keep` are kept."""
    folder = args.out / f"step-{step}"
    model.save_pretrained(folder / "model")
    ema_copy(model, ema).save_pretrained(folder / "ema")
    torch.save(optimizer.state_dict(), folder / "optimizer.pt")
    steps = sorted(int(p.name[5:]) for p in args.out.glob("step-*"))
    for old in steps[: -args.keep]:
        shutil.rmtree(args.out / f"step-{old}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=pathlib.Path, required=True)
    parser.add_argument("--data", type=pathlib.Path, default=pathlib.Path("data/fashion-mnist"))
    parser.add_argument("--config", default="fashion-small", choices=sorted(CONFIGS))
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--lr-floor", type=float, default=1e-4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--checkpoint-every", type=int, default=100, help="0: only the final save")
    parser.add_argument("--keep", type=int, default=2)
    parser.add_argument("--sample-every", type=int, default=250, help="0: only after the last step")
    parser.add_argument("--no-grids", action="store_true", help="draw no sample grids")
    parser.add_argument("--grid-steps", type=int, default=20)
    parser.add_argument("--grid-columns", type=int, default=8)
    parser.add_argument("--grid-guidance", type=float, default=2.0)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)

    images = torch.from_numpy(read_idx(args.data / "train-images-idx3-ubyte.gz").copy()).float()
    images = (images / 127.5 - 1.0).unsqueeze(1)
    labels = torch.from_numpy(read_idx(args.data / "train-labels-idx1-ubyte.gz").astype(np.int64))

    model = UNet2DModel(**CONFIGS[args.config])
    scheduler = DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2")
    alphas_cumprod = scheduler.alphas_cumprod.double()
    snr = alphas_cumprod / (1.0 - alphas_cumprod)
    weight_of_t = (snr.clamp(max=5.0) / snr).float()
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-4)
    ema = EMAModel(model.parameters(), decay=0.999, use_ema_warmup=False)

    args.out.mkdir(parents=True, exist_ok=True)
    log = open(args.out / "metrics.jsonl", "w")
    per_epoch = len(images) // args.batch_size
    order = None
    start = time.perf_counter()
    for step in range(args.steps):
        t0 = time.perf_counter()
        if step % per_epoch == 0:
            order = torch.randperm(len(images), generator=generator)
        index = order[(step % per_epoch) * args.batch_size : (step % per_epoch + 1) * args.batch_size]
        x0, y = images[index], labels[index].clone()
        y[torch.rand(len(y), generator=generator) < 0.1] = NULL_CLASS
        t = torch.randint(0, 1000, (len(y),), generator=generator)
        noise = torch.randn(x0.shape, generator=generator)
        x_t = scheduler.add_noise(x0, noise, t)

        lr = lr_at(step, args.lr, args.warmup, args.steps, args.lr_floor)
        for group in optimizer.param_groups:
            group["lr"] = lr
        prediction = model(x_t, t, class_labels=y).sample
        per_sample = F.mse_loss(prediction, noise, reduction="none").mean(dim=(1, 2, 3))
        loss = (weight_of_t[t] * per_sample).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        ema.step(model.parameters())
        seconds = time.perf_counter() - t0
        log.write(json.dumps(dict(step=step + 1, loss=loss.item(), lr=lr, grad_norm=grad_norm.item(), seconds=seconds)) + "\n")
        if (step + 1) % 50 == 0:
            print(f"step {step + 1}: loss {loss.item():.4f}, {seconds:.2f} s/step", flush=True)
        last = step + 1 == args.steps
        if args.checkpoint_every > 0 and (step + 1) % args.checkpoint_every == 0 and not last:
            save_checkpoint(model, ema, optimizer, args, step + 1)
        if not args.no_grids and (last or (args.sample_every > 0 and (step + 1) % args.sample_every == 0)):
            save_grid(ema_copy(model, ema), scheduler, args, args.out / "samples" / f"step-{step + 1}.png")
    log.close()

    model.save_pretrained(args.out / "model")
    ema_copy(model, ema).save_pretrained(args.out / "ema")
    scheduler.save_config(args.out / "scheduler")
    print(f"done: {args.steps} steps in {time.perf_counter() - start:.0f} s; {args.out}")


if __name__ == "__main__":
    main()
