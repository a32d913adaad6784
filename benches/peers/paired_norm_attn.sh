#!/usr/bin/env bash
# Paired diffuse-vs-PyTorch comparison of the memory-bound and attention kernels (group norm, attention, the fused
# noise updates, AdamW) for a shared, noisy machine: each case runs diffuse's criterion bench and then PyTorch's
# timing of the same shape (benches/peers/torch_cpu_norm_attn.py) back to back, ROUNDS times, and prints both median
# times (ms), PyTorch's time over diffuse's (> 1: diffuse is faster) and the load average.
#
# Usage: [THREADS=2] [ONLY=substring] [PYTHON=/opt/torchenv/bin/python] benches/peers/paired_norm_attn.sh [ROUNDS]
# (from the repository root). THREADS sets both rayon's pool (RAYON_NUM_THREADS) and torch.set_num_threads; ONLY
# keeps the cases whose name contains it (e.g. ONLY=attention).
set -euo pipefail
rounds=${1:-3}
python=${PYTHON:-/opt/torchenv/bin/python}
threads=${THREADS:-2}
only=${ONLY:-}
export RAYON_NUM_THREADS=$threads
# criterion bench | criterion benchmark id | torch_cpu_norm_attn.py --only | pattern of PyTorch's output line
cases=(
  "group_norm|group_norm N32 C128 14x14 G32/forward|group_norm N32|forward"
  "group_norm|group_norm N32 C128 14x14 G32/backward|group_norm N32|backward"
  "attention|attention B32 H4 L196 d32/forward|attention B32 H4 L196 d32|forward"
  "attention|attention B32 H4 L196 d32/backward|attention B32 H4 L196 d32|backward"
  "attention|attention B64 H4 L49 d32/forward|attention B64 H4 L49 d32|forward"
  "attention|attention B64 H4 L49 d32/backward|attention B64 H4 L49 d32|backward"
  "attention|attention B8 H8 L1024 d64/forward|attention B8 H8 L1024 d64|forward"
  "noise|noise 64x1x28x28/q_sample|64x1x28x28|^q_sample"
  "noise|noise 64x1x28x28/sampler_step|64x1x28x28|^sampler_step"
  "noise|noise 128x3x32x32/q_sample|128x3x32x32|^q_sample"
  "noise|noise 128x3x32x32/sampler_step|128x3x32x32|^sampler_step"
  "adamw|adamw 10M/step|adamw 10M|adamw"
)
cargo bench -p diffuse-cpu-kernels --bench group_norm --bench attention --bench noise --bench adamw --no-run \
  >/dev/null 2>&1
echo "threads: $threads; median times in ms"
printf '%-40s %5s %9s %9s %7s  %s\n' case round diffuse torch ratio load
for round in $(seq "$rounds"); do
  for case in "${cases[@]}"; do
    IFS='|' read -r bench id torch_only torch_line <<<"$case"
    [[ $id == *"$only"* ]] || continue
    ours=$(cargo bench -q -p diffuse-cpu-kernels --bench "$bench" -- "^${id}\$" --warm-up-time 1 --measurement-time 3 \
      2>/dev/null | awk '/time:/ { for (i = 1; $i != "time:"; i++); v = $(i + 3); u = $(i + 4); if (u == "s") v *= 1000;
        if (u == "µs" || u == "us") v /= 1000; if (u == "ns") v /= 1e6; print v; exit }')
    theirs=$("$python" benches/peers/torch_cpu_norm_attn.py --threads "$threads" --only "$torch_only" |
      awk -v pattern="$torch_line" '$0 ~ pattern { for (i = 1; i < NF; i++) if ($(i + 1) == "ms") { print $i; exit } }')
    ratio=$(awk -v a="$ours" -v b="$theirs" 'BEGIN { printf "%.2f", b / a }')
    printf '%-40s %5s %9s %9s %7s  %s\n' "$id" "$round" "$ours" "$theirs" "$ratio" "$(cut -d' ' -f1 /proc/loadavg)"
  done
done
