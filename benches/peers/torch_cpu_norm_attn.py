"""PyTorch CPU peer for the diffuse-cpu-kernels norm/attention/noise/optimiser benches (same shapes, 2 threads).

Run: /opt/torchenv/bin/python benches/peers/torch_cpu_norm_attn.py [--threads N] [--only SUBSTRING]
Prints one line per case: median time over repeats and the same throughput unit the criterion bench reports.
`--only` runs the cases whose name contains SUBSTRING (e.g. "attention B32").
"""

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

ARGS = argparse.ArgumentParser()
ARGS.add_argument("--threads", type=int, default=2)
ARGS.add_argument("--only", default="")
ARGS = ARGS.parse_args()
torch.set_num_threads(ARGS.threads)
torch.manual_seed(0)


def wanted(name):
    return ARGS.only in name


def median_seconds(fn, min_time=2.0, min_reps=5):
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


def report(name, timing, amount, unit):
    seconds, cpu = timing
    if unit == "GB/s":
        rate = f"{amount / seconds / 2**30:.2f} GiB/s"
    else:
        rate = f"{amount / seconds / 1e9:.2f} GFLOP/s"
    print(f"{name:48s} {seconds * 1e3:10.3f} ms   {rate}   (CPU {cpu * 1e3:.3f} ms per call)")


def group_norm():
    if not wanted("group_norm N32 C128 14x14 G32"):
        return
    n, c, h, w, g = 32, 128, 14, 14, 32
    x = torch.randn(n, c, h, w, requires_grad=True)
    gamma = torch.randn(c, requires_grad=True)
    beta = torch.randn(c, requires_grad=True)
    elems = x.numel()
    with torch.no_grad():
        t = median_seconds(lambda: F.group_norm(x, g, gamma, beta, 1e-5))
    report("group_norm N32 C128 14x14 G32 forward", t, 8 * elems, "GB/s")
    y = F.group_norm(x, g, gamma, beta, 1e-5)
    gy = torch.randn_like(y)

    def backward():
        torch.autograd.grad(y, (x, gamma, beta), gy, retain_graph=True)

    t = median_seconds(backward)
    report("group_norm N32 C128 14x14 G32 backward", t, 12 * elems, "GB/s")


def attention(batch, heads, length, d, with_backward):
    q = torch.randn(batch, heads, length, d, requires_grad=with_backward)
    k = torch.randn(batch, heads, length, d, requires_grad=with_backward)
    v = torch.randn(batch, heads, length, d, requires_grad=with_backward)
    flops = 4 * batch * heads * length * length * d
    name = f"attention B{batch} H{heads} L{length} d{d}"
    if not wanted(name):
        return
    with torch.no_grad():
        t = median_seconds(lambda: F.scaled_dot_product_attention(q, k, v), min_time=3.0, min_reps=3)
    report(name + " forward", t, flops, "FLOP")
    if with_backward:
        out = F.scaled_dot_product_attention(q, k, v)
        go = torch.randn_like(out)
        t = median_seconds(lambda: torch.autograd.grad(out, (q, k, v), go, retain_graph=True), min_reps=3)
        report(name + " backward", t, 10 * batch * heads * length * length * d, "FLOP")


def noise(batch, per_sample_shape):
    x0 = torch.randn(batch, *per_sample_shape)
    t_coef = torch.rand(batch)
    sab = t_coef.sqrt().view(-1, *([1] * len(per_sample_shape)))
    somab = (1 - t_coef).sqrt().view(-1, *([1] * len(per_sample_shape)))
    elems = x0.numel()
    shape = "x".join(str(s) for s in (batch, *per_sample_shape))
    if not wanted(f"q_sample sampler_step memcpy {shape}"):
        return

    def q_sample():
        eps = torch.randn_like(x0)
        return sab * x0 + somab * eps, eps

    report(f"q_sample {shape}", median_seconds(q_sample), 12 * elems, "GB/s")
    model = torch.randn_like(x0)
    c = [torch.rand(batch).view(-1, *([1] * len(per_sample_shape))) for _ in range(5)]

    def sampler_step():
        x0_hat = (c[0] * x0 + c[1] * model).clamp(-1, 1)
        return c[2] * x0_hat + c[3] * x0 + c[4] * torch.randn_like(x0), x0_hat

    report(f"sampler_step {shape}", median_seconds(sampler_step), 16 * elems, "GB/s")
    src = torch.empty(elems * 3 // 2)
    dst = torch.empty_like(src)
    report(f"memcpy 12 B/elem {shape}", median_seconds(lambda: dst.copy_(src)), 12 * elems, "GB/s")


def adamw():
    if not wanted("adamw 10M"):
        return
    n = 10_000_000
    p = torch.nn.Parameter(torch.full((n,), 0.5))
    p.grad = (torch.arange(n) % 1000 - 500).float() * 1e-3
    opt = torch.optim.AdamW([p], lr=1e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01, foreach=True)
    report("adamw 10M step (foreach)", median_seconds(opt.step, min_reps=10), 28 * n, "GB/s")


if __name__ == "__main__":
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    group_norm()
    attention(32, 4, 196, 32, with_backward=True)
    attention(64, 4, 49, 32, with_backward=True)
    attention(8, 8, 1024, 64, with_backward=False)
    noise(64, (1, 28, 28))
    noise(128, (3, 32, 32))
    adamw()
