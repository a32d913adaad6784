#!/usr/bin/env python3
"""Holds the loss curve of a `diffuse train --device cuda` run against the same run on the CPU, step by step.

    python3 scripts/gpu-check/compare_losses.py CUDA_RUN CPU_RUN CONTROL_RUN

Each argument is a run folder with `metrics.jsonl` logged every step (`--log-every 1`). The three runs share every
setting and seed, so they see the same batches, timesteps, noise and dropout (the Philox streams are the same on both
devices), and their losses are paired step by step. CONTROL_RUN is the CPU run again with the learning rate one f32
ulp higher (0.0020000003 for 0.002): its distance from CPU_RUN measures how far a one-ulp difference per update
carries on this problem.

The tolerance at step s, relative to the CPU loss, is

    1e-3 + 10 * max over s' <= s of |control - cpu| / cpu

- 1e-3: at step 0 the weights, batch and noise are the same (the GPU's Box-Muller noise is within 5e-6 of the
  CPU's), so the losses differ only by the order of f32 sums. fashion-small's longest reduction is a 3x3 convolution
  over 64 channels, k = 576 terms: at most k * 2^-24 = 3.4e-5 relative per layer, and some 20 layers deep that is
  under 7e-4 in the worst case (about 1e-6 in practice, where rounding errors cancel). A loss is a mean of squares,
  so its relative error is about twice that of the network output: 1e-3 bounds the worst case at step 0.
- The second term covers the divergence of the two trajectories afterwards. The GPU's gradients differ from the
  CPU's by about 1e-6 relative at every step; the control's updates differ by the lr's one ulp, 1.2e-7 relative:
  ten times less, hence the factor 10. The running maximum keeps the bound from shrinking when the control's
  difference happens to cross zero.

Measured on the CPU (the gpu-check train settings, 200 steps): the control stays within 5.2e-7 of the CPU run at
every step, with no sign of growth, so in practice the bound is 1e-3 throughout; a kernel that is wrong by more than
rounding moves the loss by far more.
A non-finite GPU loss, or steps skipped on one device and not the other, fail outright.
"""
import json
import math
import sys
from pathlib import Path

BASE_TOLERANCE = 1e-3
CONTROL_FACTOR = 10.0


def losses(run):
    """{step: (loss, skipped)} of a run folder's metrics.jsonl (training lines only)."""
    path = Path(run) / "metrics.jsonl"
    if not path.is_file():
        raise SystemExit(f"compare_losses: {path} is missing (did the run start?)")
    out = {}
    for line in path.read_text().splitlines():
        record = json.loads(line)
        if "eval" in record or "loss" not in record:
            continue
        loss = record["loss"]
        out[record["step"]] = (math.nan if loss is None else float(loss), bool(record.get("skipped")))
    return out


def compare(cuda, cpu, control):
    """(passed, report lines)."""
    lines, passed = [], True
    steps = sorted(cpu)
    if sorted(cuda) != steps or sorted(control) != steps:
        missing = sorted(set(steps) - set(cuda))
        return False, [f"the runs logged different steps (cuda lacks {missing[:5]}...)"]
    worst = (0.0, None)
    control_max = 0.0
    lines.append(f"{'step':>5} {'cpu':>12} {'cuda':>12} {'control':>12} {'|cuda-cpu|/cpu':>15} {'tolerance':>10}")
    for step in steps:
        (g, g_skip), (c, c_skip), (k, _) = cuda[step], cpu[step], control[step]
        if g_skip != c_skip:
            passed = False
            lines.append(f"step {step}: skipped on {'cuda' if g_skip else 'cpu'} only")
            continue
        if c_skip:
            continue
        if not math.isfinite(g):
            passed = False
            lines.append(f"step {step}: cuda loss {g} is not finite (cpu {c})")
            continue
        control_max = max(control_max, abs(k - c) / abs(c))
        tolerance = BASE_TOLERANCE + CONTROL_FACTOR * control_max
        difference = abs(g - c) / abs(c)
        if difference / tolerance > worst[0]:
            worst = (difference / tolerance, step)
        bad = difference > tolerance
        passed &= not bad
        if bad or step % 20 == 0 or step == steps[-1]:
            mark = "  <-- over" if bad else ""
            lines.append(
                f"{step:>5} {c:>12.7f} {g:>12.7f} {k:>12.7f} {difference:>15.2e} {tolerance:>10.2e}{mark}"
            )
    ratio, step = worst
    lines.append(
        f"{'agree' if passed else 'DISAGREE'}: {len(steps)} steps; the largest |cuda-cpu|/cpu is {ratio:.3f} of its "
        f"tolerance (step {step}); the control's largest relative difference is {control_max:.2e}"
    )
    return passed, lines


def main():
    if len(sys.argv) != 4:
        raise SystemExit(__doc__)
    passed, lines = compare(*(losses(run) for run in sys.argv[1:]))
    print("\n".join(lines))
    sys.exit(0 if passed else 1)


if __name__ == "__main__":
    main()
