#!/usr/bin/env bash
# Paired diffuse-vs-PyTorch comparison for a shared, noisy machine: each case runs diffuse's criterion bench and then
# PyTorch's timing of the same shape back to back, ROUNDS times, and prints both GFLOP/s and their ratio per round.
# Neighbouring runs see similar machine load, so the ratio is far steadier than either figure.
#
# Usage: [THREADS=2] [PYTHON=/opt/torchenv/bin/python] benches/peers/paired.sh [ROUNDS]   (from the repository root)
# THREADS sets both rayon's pool (RAYON_NUM_THREADS) and torch.set_num_threads.
set -euo pipefail
rounds=${1:-3}
python=${PYTHON:-/opt/torchenv/bin/python}
threads=${THREADS:-2}
export RAYON_NUM_THREADS=$threads
# criterion bench | criterion filter | torch_cpu.py case
cases=(
  "gemm|^sgemm/diffuse/512$|^sgemm 512\^3"
  "gemm|^sgemm/diffuse/2048$|^sgemm 2048\^3"
  "conv2d|forward/N32_C64_28x28$|forward N32_C64_28x28"
  "conv2d|forward/N32_C128_14x14$|forward N32_C128_14x14"
  "conv2d|forward\+backward/N32_C128_14x14$|forward\+backward N32_C128_14x14"
  "conv2d|forward/N32_C256_7x7$|forward N32_C256_7x7"
)
cargo bench -p diffuse-cpu-kernels --bench gemm --bench conv2d --no-run >/dev/null 2>&1
echo "threads: $threads; figures in GFLOP/s"
printf '%-34s %5s %9s %9s %7s\n' case round diffuse torch ratio
for round in $(seq "$rounds"); do
  for case in "${cases[@]}"; do
    IFS='|' read -r bench filter torch_case <<<"$case"
    ours=$(cargo bench -q -p diffuse-cpu-kernels --bench "$bench" -- "$filter" --warm-up-time 1 --measurement-time 2 2>/dev/null |
      awk '/thrpt:/ { v = $4; u = $5; if (u ~ /^M/) v /= 1000; print v; exit }')
    theirs=$("$python" benches/peers/torch_cpu.py --threads "$threads" --only "$torch_case" --repeats 5 | awk '/GFLOP/ { print $(NF-1) }')
    ratio=$(awk -v a="$ours" -v b="$theirs" 'BEGIN { printf "%.2f", a / b }')
    printf '%-34s %5s %9s %9s %7s\n' "${filter//[\\^$]/}" "$round" "$ours" "$theirs" "$ratio"
  done
done
