"""Per-noise-level probe of consistency distillation of an ε-prediction, VP teacher (docs/distillation.md).

Written against torch 2.15.0, diffusers 0.42.1, numpy. Reads only; nothing is written.

For each adjacent pair (σ_n, σ_{n+1}) of the run's Karras levels it draws one batch x_{n+1} = x0 + σ_{n+1}·z of
Fashion-MNIST training images, takes the guided teacher's Heun step to x̂_n (its x̂0 clipped to [−1, 1], as
`diffuse distill consistency` does) and prints, for the teacher read as a consistency function (the untrained
student) and for each given checkpoint of a distillation run (its `model/` as the student, its `target/` as θ⁻):

- the pseudo-Huber loss d(f_θ(x_{n+1}, σ_{n+1}), f_θ⁻(x̂_n, σ_n)), c = 0.00054·√784, batch mean;
- the RMS of clip(f_θ) − the guided teacher's clipped x̂0 at (x_{n+1}, σ_{n+1});
- the RMS of f_θ itself (the data's is about 0.8);
- with --grad, the norm of the loss's gradient in the weights at that level (the untrained student only).

The formulas are the library's (crates/diffusion/src/distill/consistency.rs): f = A·x + B·ε̂ with
A = c_skip − r·σ_d²/(σ² + σ_d²) + r, B = −r·σ, r = (σ − σ_min)/σ, σ_d = 0.5, network input x/√(1 + σ²) at the
fractional timestep of σ (log-σ interpolation). Guidance is ε_u + w·(ε_c − ε_u) with the null class.

  taskset -c 1 /opt/torchenv/bin/python scripts/consistency_probe.py --teacher runs/fashion-small \
      --run runs/distill-consistency --steps step-400,step-2400 --guidance 2 --grad
"""

import argparse
import gzip
import math
import os

import numpy as np
import torch
from diffusers import UNet2DModel

parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
parser.add_argument("--teacher", required=True, help="the teacher's training run (its latest checkpoint's EMA)")
parser.add_argument("--run", help="a consistency-distillation run folder")
parser.add_argument("--steps", default="", help="comma-separated checkpoints of --run, e.g. step-400,step-2400")
parser.add_argument("--guidance", type=float, default=1.0)
parser.add_argument("--levels", type=int, default=18)
parser.add_argument("--batch", type=int, default=32)
parser.add_argument("--data", default=os.path.join(os.path.dirname(__file__), "..", "data", "fashion-mnist"))
parser.add_argument("--grad", action="store_true", help="also the weight-gradient norm per level (slow)")
args = parser.parse_args()
torch.set_num_threads(1)

latest = open(os.path.join(args.teacher, "latest")).read().strip()
teacher_dir = os.path.join(args.teacher, latest)
teacher = UNet2DModel.from_pretrained(os.path.join(teacher_dir, "ema")).eval()
if "squaredcos_cap_v2" not in open(os.path.join(teacher_dir, "scheduler", "scheduler_config.json")).read():
    raise SystemExit("this probe builds the cosine (squaredcos_cap_v2, 1000 steps) schedule only")

alpha_bar_fn = lambda t: math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2
betas = [min(1 - alpha_bar_fn((i + 1) / 1000) / alpha_bar_fn(i / 1000), 0.999) for i in range(1000)]
alpha_bar = np.cumprod(1 - np.array(betas, dtype=np.float64))
train_sigmas = np.sqrt((1 - alpha_bar) / alpha_bar)
sigma_min, sigma_max, sigma_data, rho = max(0.002, train_sigmas[0]), min(80.0, train_sigmas[-1]), 0.5, 7.0
N = args.levels
ramp = [
    (sigma_max ** (1 / rho) + i / (N - 1) * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho for i in range(N)
]
levels = sorted(ramp)
levels[0], levels[-1] = sigma_min, sigma_max


def timestep(sigma):
    if sigma <= train_sigmas[0]:
        return 0.0
    if sigma >= train_sigmas[-1]:
        return float(len(train_sigmas) - 1)
    upper = int(np.searchsorted(train_sigmas, sigma, side="right"))
    lo, hi = math.log(train_sigmas[upper - 1]), math.log(train_sigmas[upper])
    return upper - 1 + (math.log(sigma) - lo) / (hi - lo)


with gzip.open(os.path.join(args.data, "train-images-idx3-ubyte.gz")) as fh:
    images = np.frombuffer(fh.read(), np.uint8, offset=16).reshape(-1, 1, 28, 28)
with gzip.open(os.path.join(args.data, "train-labels-idx1-ubyte.gz")) as fh:
    labels = np.frombuffer(fh.read(), np.uint8, offset=8)
x0 = torch.tensor(images[: args.batch] / 127.5 - 1.0, dtype=torch.float32)
y = torch.tensor(labels[: args.batch].astype(np.int64))
null = torch.full_like(y, teacher.config.num_class_embeds - 1)


def eps(model, x, sigma, guided):
    inp, t = x / math.sqrt(1 + sigma * sigma), torch.full((x.shape[0],), timestep(sigma))
    cond = model(inp, t, class_labels=y).sample
    if not guided or args.guidance == 1.0:
        return cond
    uncond = model(inp, t, class_labels=null).sample
    return uncond + args.guidance * (cond - uncond)


@torch.no_grad()
def teacher_x0(x, sigma):
    return (x - sigma * eps(teacher, x, sigma, True)).clamp(-1, 1)


def consistency(model, x, sigma):
    r = (sigma - sigma_min) / sigma
    c_skip = sigma_data**2 / ((sigma - sigma_min) ** 2 + sigma_data**2)
    a = c_skip - r * sigma_data**2 / (sigma * sigma + sigma_data**2) + r
    return a * x - r * sigma * eps(model, x, sigma, False)


@torch.no_grad()
def heun(x, sigma, to):
    d = teacher_x0(x, sigma)
    euler = d + (to / sigma) * (x - d)
    return x + 0.5 * (to - sigma) * ((x - d) / sigma + (euler - teacher_x0(euler, to)) / to)


c = 0.00054 * math.sqrt(x0[0].numel())
pseudo_huber = lambda a, b: (((a - b) ** 2).flatten(1).sum(1) + c * c).sqrt() - c

load = lambda path: UNet2DModel.from_pretrained(path).eval()
runs = [("untrained", teacher, teacher)]
for step in filter(None, args.steps.split(",")):
    runs.append((step, load(os.path.join(args.run, step, "model")), load(os.path.join(args.run, step, "target"))))

generator = torch.Generator().manual_seed(1)
print(f"σ_min {sigma_min:.5f}, σ_max {sigma_max:.1f} (schedule's last σ {train_sigmas[-1]:.0f}), guidance {args.guidance}")
print("per run: loss | rms(clip f − teacher x̂0) | rms f" + ("   (untrained: | grad norm)" if args.grad else ""))
print(" n   σ_n+1  " + "".join(f"{name:>28}" for name, _, _ in runs))
for n in range(N - 1):
    sigma, sigma_next = levels[n], levels[n + 1]
    x_next = x0 + sigma_next * torch.randn(x0.shape, generator=generator)
    x_hat = heun(x_next, sigma_next, sigma)
    reference = teacher_x0(x_next, sigma_next)
    cells = []
    for k, (name, student, target) in enumerate(runs):
        with torch.no_grad():
            goal = consistency(target, x_hat, sigma)
        grad = k == 0 and args.grad
        student.zero_grad()
        with torch.set_grad_enabled(grad):
            f = consistency(student, x_next, sigma_next)
            loss = pseudo_huber(f, goal).mean()
        cell = f"{loss.item():9.3f} {((f.detach().clamp(-1, 1) - reference) ** 2).mean().sqrt():8.3f} "
        cell += f"{(f.detach() ** 2).mean().sqrt():8.3f}"
        if grad:
            loss.backward()
            cell += f" | {math.sqrt(sum((p.grad ** 2).sum().item() for p in student.parameters())):7.1f}"
        cells.append(cell + "  ")
    print(f"{n:2d} {sigma_next:8.4f} " + "".join(cells))
