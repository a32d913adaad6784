#!/usr/bin/env bash
# Paired diffuse-vs-PyTorch U-Net comparison: each case runs diffuse's criterion bench (crates/diffusion/benches/unet.rs)
# and then diffusers' UNet2DModel of the same configuration (diffusers_unet.py), back to back, ROUNDS times, and prints
# both median times per step and diffuse's time over PyTorch's (< 1: diffuse is faster), with the load average.
# PyTorch's OpenMP threads lose far more than rayon's when other processes compete for the cores, so only rounds
# taken on an otherwise idle machine (load average near THREADS) say anything.
#
# Usage: [THREADS=2] [PYTHON=/opt/torchenv/bin/python] benches/peers/paired_unet.sh [ROUNDS] [CASE-FILTER]
# (from the repository root; CASE-FILTER is a substring of the case names, e.g. fashion-small/train).
set -euo pipefail
rounds=${1:-2}
filter=${2:-}
python=${PYTHON:-/opt/torchenv/bin/python}
threads=${THREADS:-2}
export RAYON_NUM_THREADS=$threads
cases=(
  "fashion-small/train_step"
  "fashion-small/sample_step"
  "fashion-base/train_step"
  "fashion-base/sample_step"
)
cargo bench -p diffuse-diffusion --bench unet --no-run >/dev/null 2>&1
echo "threads: $threads; median times per step in ms"
printf '%-28s %5s %9s %9s %7s  %s\n' case round diffuse torch ratio load
for round in $(seq "$rounds"); do
  for case in "${cases[@]}"; do
    [[ $case == *"$filter"* ]] || continue
    ours=$(cargo bench -q -p diffuse-diffusion --bench unet -- "unet/${case}/batch64" --warm-up-time 2 --measurement-time 10 2>/dev/null |
      awk '/time:/ { v = $4; u = $5; if (u == "s") v *= 1000; if (u == "µs" || u == "us") v /= 1000; print v; exit }')
    theirs=$("$python" benches/peers/diffusers_unet.py --threads "$threads" --only "$case" --min-time 10 |
      awk '/ms/ { for (i = 1; i < NF; i++) if ($(i + 1) == "ms") { print $i; exit } }')
    ratio=$(awk -v a="$ours" -v b="$theirs" 'BEGIN { printf "%.2f", a / b }')
    printf '%-28s %5s %9s %9s %7s  %s\n' "$case" "$round" "$ours" "$theirs" "$ratio" "$(cut -d' ' -f1 /proc/loadavg)"
  done
done
