"""PyTorch CPU throughput on the shapes of crates/cpu-kernels/benches/{gemm,conv2d}.rs, for side-by-side comparison.

Usage: python benches/peers/torch_cpu.py [--threads 2] [--repeats 10] [--only REGEX]

Each case is warmed up, then timed `repeats` times; the median time is reported as GFLOP/s with the same FLOP counts
as the criterion benches (GEMM 2·m·n·k; conv forward 2·N·Cout·OH·OW·Cin·KH·KW, forward+backward three times that).
"""

import argparse
import re
import statistics
import time

import torch


def median_seconds(fn, repeats):
    for _ in range(2):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


ONLY = re.compile("")


def wanted(name):
    return ONLY.search(name) is not None


def report(name, flops, seconds):
    print(f"{name:<40} {seconds * 1e3:10.2f} ms {flops / seconds / 1e9:10.1f} GFLOP/s")


def gemm_cases(repeats):
    for size in (512, 2048):
        if not wanted(f"sgemm {size}^3"):
            continue
        a = torch.rand(size, size)
        b = torch.rand(size, size)
        out = torch.empty(size, size)
        seconds = median_seconds(lambda: torch.mm(a, b, out=out), repeats)
        report(f"sgemm {size}^3", 2 * size**3, seconds)


def conv_cases(repeats):
    layers = [(32, 64, 28, False), (32, 128, 14, True), (32, 256, 7, False)]
    for batch, channels, side, with_backward in layers:
        x = torch.rand(batch, channels, side, side)
        w = torch.rand(channels, channels, 3, 3)
        b = torch.rand(channels)
        flops = 2 * batch * channels * side * side * channels * 9
        name = f"N{batch}_C{channels}_{side}x{side}"
        if wanted(f"conv2d_3x3 forward {name}"):
            with torch.no_grad():
                seconds = median_seconds(lambda: torch.nn.functional.conv2d(x, w, b, padding=1), repeats)
            report(f"conv2d_3x3 forward {name}", flops, seconds)
        if with_backward and wanted(f"conv2d_3x3 forward+backward {name}"):
            xg = x.clone().requires_grad_(True)
            wg = w.clone().requires_grad_(True)
            bg = b.clone().requires_grad_(True)

            def step():
                y = torch.nn.functional.conv2d(xg, wg, bg, padding=1)
                y.backward(y.detach())

            seconds = median_seconds(step, repeats)
            report(f"conv2d_3x3 forward+backward {name}", 3 * flops, seconds)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--only", default="", help="run only cases whose name matches this regular expression")
    args = parser.parse_args()
    global ONLY
    ONLY = re.compile(args.only)
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, mkldnn {torch.backends.mkldnn.is_available()}")
    gemm_cases(args.repeats)
    conv_cases(args.repeats)


if __name__ == "__main__":
    main()
