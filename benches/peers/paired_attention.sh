#!/usr/bin/env bash
# Paired diffuse-vs-PyTorch attention comparison for a shared, noisy machine: each case runs diffuse's criterion
# bench and then PyTorch's F.scaled_dot_product_attention on the same shape, back to back, ROUNDS times, and prints
# both median times (ms) and PyTorch's time over diffuse's (> 1: diffuse is faster), with the load average.
#
# Usage: [THREADS=2] [PYTHON=/opt/torchenv/bin/python] benches/peers/paired_attention.sh [ROUNDS]   (repository root)
# THREADS sets both rayon's pool (RAYON_NUM_THREADS) and torch.set_num_threads.
set -euo pipefail
rounds=${1:-3}
python=${PYTHON:-/opt/torchenv/bin/python}
threads=${THREADS:-2}
export RAYON_NUM_THREADS=$threads
cases=(
  "attention B32 H4 L196 d32/forward"
  "attention B32 H4 L196 d32/backward"
  "attention B64 H4 L49 d32/forward"
  "attention B64 H4 L49 d32/backward"
  "attention B8 H8 L1024 d64/forward"
)
cargo bench -p diffuse-cpu-kernels --bench attention --no-run >/dev/null 2>&1
echo "threads: $threads; median times in ms"
printf '%-36s %5s %9s %9s %7s  %s\n' case round diffuse torch ratio load
for round in $(seq "$rounds"); do
  for case in "${cases[@]}"; do
    ours=$(cargo bench -q -p diffuse-cpu-kernels --bench attention -- "^${case}\$" --warm-up-time 1 --measurement-time 3 2>/dev/null |
      awk '/time:/ { v = $4; u = $5; if (u == "s") v *= 1000; if (u == "µs" || u == "us") v /= 1000; print v; exit }')
    theirs=$("$python" benches/peers/torch_cpu_norm_attn.py --threads "$threads" --only "${case%/*}" |
      awk -v pass="${case#*/}" '$0 ~ pass { for (i = 1; i < NF; i++) if ($(i + 1) == "ms") { print $i; exit } }')
    ratio=$(awk -v a="$ours" -v b="$theirs" 'BEGIN { printf "%.2f", b / a }')
    printf '%-36s %5s %9s %9s %7s  %s\n' "$case" "$round" "$ours" "$theirs" "$ratio" "$(cut -d' ' -f1 /proc/loadavg)"
  done
done
