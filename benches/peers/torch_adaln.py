"""PyTorch peer of diffuse's fused adaLN kernels (crates/cpu-kernels/benches/adaln.rs on the CPU,
crates/cuda-kernels/benches/adaln_bench.rs on a GPU): the same operations as PyTorch writes them in a DiT block
(diffusers' AdaLayerNormZero and BasicTransformerBlock), composed eager ops, at the dit-s-2 shape (batch 64,
196 tokens of 192 features).

Run: /opt/torchenv/bin/python benches/peers/torch_adaln.py [--device cpu|cuda] [--threads N] [--only SUBSTRING]
Cases (median wall time over repeats after one warm-up; on cuda, synchronised around each call):
  modulate forward:        F.layer_norm(x, (D,), eps=1e-6) * (1 + scale[:, None]) + shift[:, None]
  modulate backward:       its gradients with respect to x, scale and shift
  gated residual forward:  x + gate[:, None] * y
  gated residual backward: its gradients with respect to x, gate and y
"""

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

ARGS = argparse.ArgumentParser()
ARGS.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
ARGS.add_argument("--threads", type=int, default=2)
ARGS.add_argument("--only", default="")
ARGS.add_argument("--min-time", type=float, default=2.0)
ARGS = ARGS.parse_args()
torch.set_num_threads(ARGS.threads)
torch.manual_seed(0)
DEVICE = torch.device(ARGS.device)
BATCH, TOKENS, DIM = 64, 196, 192


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


def report(name, ms, passes):
    gbs = passes * 4 * BATCH * TOKENS * DIM / (ms * 1e-3) / 1e9
    print(f"{name:36s} {ms:10.3f} ms   {gbs:7.2f} GB/s of ideal traffic")


def main():
    print(f"torch {torch.__version__}, {DEVICE}, threads {torch.get_num_threads()}, B{BATCH} L{TOKENS} D{DIM}")
    x = torch.randn(BATCH, TOKENS, DIM, device=DEVICE, requires_grad=True)
    y = torch.randn(BATCH, TOKENS, DIM, device=DEVICE, requires_grad=True)
    scale = torch.randn(BATCH, DIM, device=DEVICE, requires_grad=True)
    shift = torch.randn(BATCH, DIM, device=DEVICE, requires_grad=True)
    gate = torch.randn(BATCH, DIM, device=DEVICE, requires_grad=True)
    g = torch.randn(BATCH, TOKENS, DIM, device=DEVICE)

    def modulate():
        return F.layer_norm(x, (DIM,), eps=1e-6) * (1 + scale[:, None]) + shift[:, None]

    def gated():
        return x + gate[:, None] * y

    if ARGS.only in "modulate forward":
        with torch.no_grad():
            report("modulate forward", median_ms(modulate), 2)
    if ARGS.only in "modulate backward":
        out = modulate()
        report("modulate backward", median_ms(lambda: torch.autograd.grad(out, (x, scale, shift), g, retain_graph=True)), 3)
    if ARGS.only in "gated residual forward":
        with torch.no_grad():
            report("gated residual forward", median_ms(gated), 3)
    if ARGS.only in "gated residual backward":
        out = gated()
        report("gated residual backward", median_ms(lambda: torch.autograd.grad(out, (x, gate, y), g, retain_graph=True)), 3)


if __name__ == "__main__":
    main()
