#!/usr/bin/env python3
"""Puts the output of cuda_bench and of its PyTorch peer (benches/peers/torch_cuda.py) side by side, row by row.

    python3 scripts/gpu-check/bench_table.py CUDA_BENCH_OUTPUT TORCH_OUTPUT

Both print one line per kernel, `name  shape  ms  rate unit [pct% of copy]`, on the same shapes; rows are paired by
shape and by name (the names that differ are mapped below). `speed` is PyTorch's time over ours: above 1, diffuse is
faster. Rows with a target of issue 22 say whether it is met: bandwidth-bound kernels against the device copy
bandwidth measured in the same run, the others against PyTorch in the same run.
"""
import re
import sys

# cuda_bench's name -> torch_cuda.py's name, where they differ
PEER_NAME = {
    "adamw_step": "adamw_step (fused)",
    "sgemm": "sgemm (fp32, no tf32)",
    "gemm_bf16 (f32 acc)": "matmul bf16",
    "conv2d_forward 3x3": "conv2d 3x3 (cuDNN fp32)",
    "attention_forward": "sdpa fp32",
    "attention fwd": "sdpa fp32 fwd",
    "attention bwd": "sdpa fp32 bwd",
}

# name prefix -> (what, threshold): "copy" is a fraction of the copy bandwidth, "peer" a speed against PyTorch, and
# "copy and peer" the fraction and faster than PyTorch too
TARGETS = {
    "q_sample": ("copy", 0.90),
    "sampler_step": ("copy", 0.90),
    "adamw_step": ("copy", 0.90),
    "group_norm_forward": ("copy and peer", 0.80),
    "gemm_bf16": ("peer", 0.70),
    "conv fwd": ("peer", 0.70),
    "conv bwd": ("peer", 0.70),
    "conv bf16": ("peer", 0.70),
    "attention_forward": ("peer", 0.70),
    "attention fwd": ("peer", 0.70),
    "attention bwd": ("peer", 0.50),
}

ROW = re.compile(r"^(?P<head>.*?)\s+(?P<ms>[\d.]+) ms\s+(?P<rate>[\d.]+) (?P<unit>GB/s|TFLOP/s)(?:\s+(?P<pct>[\d.]+)% of copy)?")
COPY = re.compile(r"device-to-device copy of 256 MiB: (?P<ms>[\d.]+) ms, (?P<gbs>[\d.]+) GB/s")


def rows(path):
    """({(name, shape): (ms, rate, unit, pct)}, copy GB/s) of one output."""
    table, copy = {}, None
    for line in open(path, encoding="utf-8", errors="replace"):
        if m := COPY.search(line):
            copy = float(m["gbs"])
            continue
        m = ROW.match(line.rstrip())
        if not m:
            continue
        head = m["head"]
        at = head.find("[")
        name, shape = (head[:at], head[at:]) if at >= 0 else head.rsplit(None, 1)
        pct = float(m["pct"]) if m["pct"] else None
        table[(name.strip(), shape.strip())] = (float(m["ms"]), float(m["rate"]), m["unit"], pct)
    return table, copy


def target(name, ours, speed):
    for prefix, (what, threshold) in TARGETS.items():
        if name.startswith(prefix):
            if what.startswith("copy"):
                value = None if ours[3] is None else ours[3] / 100
                label = f">= {threshold:.0%} of copy"
                if what == "copy and peer":
                    label += " and faster than PyTorch"
                    value = None if value is None or speed is None else (value if speed > 1 else 0.0)
            else:
                value, label = speed, f">= {threshold}x PyTorch"
            if value is None:
                return f"{label}: no figure"
            return f"{label}: {'met' if value >= threshold else 'MISSED'}"
    return ""


def main():
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    ours, our_copy = rows(sys.argv[1])
    peer, peer_copy = rows(sys.argv[2])
    print(f"device copy bandwidth: diffuse's measurement {our_copy} GB/s, PyTorch's {peer_copy} GB/s")
    print(f"{'kernel':<26} {'shape':<26} {'diffuse ms':>10} {'PyTorch ms':>10} {'speed':>6}  {'% of copy':>9}  target")
    for (name, shape), mine in ours.items():
        theirs = peer.get((PEER_NAME.get(name, name), shape))
        speed = theirs[0] / mine[0] if theirs and mine[0] > 0 else None
        print(
            f"{name:<26} {shape:<26} {mine[0]:>10.3f} "
            + (f"{theirs[0]:>10.3f} {speed:>6.2f}" if theirs else f"{'-':>10} {'-':>6}")
            + f"  {'' if mine[3] is None else f'{mine[3]:.1f}%':>9}  {target(name, mine, speed)}"
        )
    unpaired = sorted(set(peer) - {(PEER_NAME.get(n, n), s) for n, s in ours})
    if unpaired:
        print("PyTorch rows without a diffuse twin:", ", ".join(f"{n} {s}" for n, s in unpaired))


if __name__ == "__main__":
    main()
