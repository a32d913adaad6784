#!/usr/bin/env bash
# Paired diffuse-vs-PyTorch text-to-image comparison: each case runs diffuse's criterion bench
# (crates/diffusion/benches/text.rs) and then the same case in transformers + diffusers
# (transformers_diffusers_text.py), back to back, ROUNDS times, and prints both median times and diffuse's time over
# PyTorch's (< 1: diffuse is faster), with the load average. Only rounds on an otherwise idle machine (load average
# near THREADS) say anything.
#
# Usage: [THREADS=2] [PYTHON=/opt/torchenv/bin/python] [MEASURE=10] benches/peers/paired_text.sh [ROUNDS] [CASE-FILTER]
# (from the repository root; CASE-FILTER is a substring of the case names, e.g. train_step).
set -euo pipefail
rounds=${1:-2}
filter=${2:-}
python=${PYTHON:-/opt/torchenv/bin/python}
threads=${THREADS:-2}
measure=${MEASURE:-10}
export RAYON_NUM_THREADS=$threads
cases=(
  "encoder/prompts64"
  "fashion-text/train_step/batch64"
)
cargo bench -p diffuse-diffusion --bench text --no-run >/dev/null 2>&1
echo "threads: $threads; median times in ms"
printf '%-34s %5s %9s %9s %7s  %s\n' case round diffuse torch ratio load
for round in $(seq "$rounds"); do
  for case in "${cases[@]}"; do
    [[ $case == *"$filter"* ]] || continue
    ours=$(cargo bench -q -p diffuse-diffusion --bench text -- "text/${case}" --warm-up-time 1 \
      --measurement-time "$measure" 2>/dev/null |
      awk '/time:/ { for (i = 1; i < NF; i++) if ($i == "time:") { v = $(i + 3); u = $(i + 4) }
        if (u == "s") v *= 1000; if (u == "µs" || u == "us") v /= 1000; if (u == "ns") v /= 1e6; print v; exit }')
    theirs=$("$python" benches/peers/transformers_diffusers_text.py --threads "$threads" --only "$case" \
      --min-time "$measure" | awk '/ ms/ { for (i = 1; i < NF; i++) if ($(i + 1) == "ms") { print $i; exit } }')
    ratio=$(awk -v a="$ours" -v b="$theirs" 'BEGIN { printf "%.2f", a / b }')
    printf '%-34s %5s %9s %9s %7s  %s\n' "$case" "$round" "$ours" "$theirs" "$ratio" "$(cut -d' ' -f1 /proc/loadavg)"
  done
done
