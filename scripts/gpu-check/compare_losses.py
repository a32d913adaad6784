#!/usr/bin/env python3
"""Holds the loss curve of a `diffuse train --device cuda` run against the same run on the CPU, step by step, and
that of a `--precision bf16` run against the f32 one.

    python3 scripts/gpu-check/compare_losses.py CUDA_RUN CPU_RUN CONTROL_RUN
    python3 scripts/gpu-check/compare_losses.py --bf16 CUDA_BF16_RUN CUDA_RUN

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

With --bf16 the two CUDA runs differ by design: bf16 rounds the operands of every matrix product (the time
embedding's MLP, each ResNet block's time projection, the attention projections) and of every convolution (all of
fashion-small's are ungrouped) to 8 significant bits, 2^-9 relative each. Two checks:
- step 0 (same weights) within 5e-2 relative. Each product is off by at most 2^-8 of its magnitude sum, and the
  longest chain of products from input to loss is now some 36 deep (conv_in; two convolutions per ResNet block, 11
  blocks on the way down, through the middle and up; the two downsamplers and two upsamplers; the attention in and
  out projections of 4 attention layers; conv_out). Added up as worst cases that is 36 * 2^-8 = 0.14 on the
  network's output, a bound that says nothing; but the roundings of different layers are independent and of either
  sign, and every convolution is followed by a group norm that removes any common scale, so they add like a random
  walk: sqrt(36) * 2^-8 = 2.3e-2 on the output, and a mean squared error moves by at most 2r + r^2 of itself for a
  relative output error r: 4.8e-2. The threshold rests on that model, not on a proof; a broken convolution (a wrong
  tap, a transposed operand) moves the loss by far more;
- the mean loss of the last 50 steps within 5% of the f32 run's: by then the two trajectories have parted by far
  more than rounding (each bf16 step perturbs the update about 2^-9, ten thousand times the control's one ulp), so
  only the level the training reached is compared. The loss falls from about 0.84 to about 0.05 over these 200
  steps; a bf16 path that breaks training lands far outside 5%, while runs that train alike land well inside it
  (a threshold chosen, not derived: a GPU run will show how much of it they use).
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


BF16_STEP0 = 5e-2
BF16_LAST_MEAN = 5e-2
LAST = 50


def compare_bf16(bf16, f32):
    """(passed, report lines) of a bf16 run against the f32 one."""
    steps = sorted(f32)
    if sorted(bf16) != steps:
        return False, ["the bf16 and f32 runs logged different steps"]
    bad = [s for s in steps if not bf16[s][1] and not math.isfinite(bf16[s][0])]
    if bad:
        return False, [f"the bf16 run's loss is not finite at steps {bad[:5]}"]
    first = abs(bf16[steps[0]][0] - f32[steps[0]][0]) / f32[steps[0]][0]
    tail = steps[-LAST:]
    mean = lambda run: sum(run[s][0] for s in tail if not run[s][1]) / max(1, sum(not run[s][1] for s in tail))
    level = abs(mean(bf16) - mean(f32)) / mean(f32)
    passed = first <= BF16_STEP0 and level <= BF16_LAST_MEAN
    return passed, [
        f"step {steps[0]}: bf16 {bf16[steps[0]][0]:.7f}, f32 {f32[steps[0]][0]:.7f}, relative {first:.2e} "
        f"(at most {BF16_STEP0:.0e})",
        f"mean of the last {len(tail)} steps: bf16 {mean(bf16):.7f}, f32 {mean(f32):.7f}, relative {level:.2e} "
        f"(at most {BF16_LAST_MEAN:.0e})",
        f"{'agree' if passed else 'DISAGREE'} (bf16): {len(steps)} steps",
    ]


def main():
    if len(sys.argv) == 4 and sys.argv[1] == "--bf16":
        passed, lines = compare_bf16(losses(sys.argv[2]), losses(sys.argv[3]))
        print("\n".join(lines))
        sys.exit(0 if passed else 1)
    if len(sys.argv) != 4:
        raise SystemExit(__doc__)
    passed, lines = compare(*(losses(run) for run in sys.argv[1:]))
    print("\n".join(lines))
    sys.exit(0 if passed else 1)


if __name__ == "__main__":
    main()
