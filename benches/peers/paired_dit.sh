#!/usr/bin/env bash
# Paired diffuse-vs-PyTorch DiT comparison: each case runs diffuse's criterion bench (crates/diffusion/benches/dit.rs)
# and then diffusers' DiTTransformer2DModel of the same configuration (benches/peers/diffusers_dit.py), back to back,
# ROUNDS times, and prints both median times per step and diffuse's time over PyTorch's (< 1: diffuse is faster),
# with the load average. Only rounds taken on an otherwise idle machine (load average near THREADS) say anything.
#
# Usage: [THREADS=2] [DEVICE=cpu|cuda] [PYTHON=/opt/torchenv/bin/python] benches/peers/paired_dit.sh [ROUNDS] [FILTER]
# (from the repository root; FILTER is a substring of the case names, e.g. dit-s-2/train).
set -euo pipefail
rounds=${1:-2}
filter=${2:-}
python=${PYTHON:-/opt/torchenv/bin/python}
threads=${THREADS:-2}
device=${DEVICE:-cpu}
export RAYON_NUM_THREADS=$threads DIFFUSE_BENCH_DEVICE=$device
cases=(
  "dit-s-4/train_step"
  "dit-s-4/sample_step"
  "dit-s-2/train_step"
  "dit-s-2/sample_step"
  "dit-b-4/train_step"
  "dit-b-4/sample_step"
)
cargo bench -p diffuse-diffusion --bench dit --no-run >/dev/null 2>&1
echo "threads: $threads, device: $device; median times per step in ms"
printf '%-24s %5s %9s %9s %7s  %s\n' case round diffuse torch ratio load
for round in $(seq "$rounds"); do
  for case in "${cases[@]}"; do
    [[ $case == *"$filter"* ]] || continue
    ours=$(cargo bench -q -p diffuse-diffusion --bench dit -- "dit/${case}/batch64" --warm-up-time 2 \
      --measurement-time 10 2>/dev/null | awk '/time:/ { for (i = 1; $i != "time:"; i++); v = $(i + 3); u = $(i + 4);
        if (u == "s") v *= 1000; if (u == "µs" || u == "us") v /= 1000; print v; exit }')
    theirs=$("$python" benches/peers/diffusers_dit.py --device "$device" --threads "$threads" --only "$case" \
      --min-time 10 | awk '/ ms$/ { print $(NF - 1); exit }')
    ratio=$(awk -v a="$ours" -v b="$theirs" 'BEGIN { printf "%.2f", a / b }')
    printf '%-24s %5s %9s %9s %7s  %s\n' "$case" "$round" "$ours" "$theirs" "$ratio" "$(cut -d' ' -f1 /proc/loadavg)"
  done
done
