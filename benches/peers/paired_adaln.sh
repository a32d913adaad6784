#!/usr/bin/env bash
# Paired diffuse-vs-PyTorch comparison of the fused adaLN kernels (the modulated layer norm and the gated residual
# of a DiT block) at the dit-s-2 shape (batch 64, 196 tokens, 192 features): each case runs diffuse's criterion bench
# (crates/cpu-kernels/benches/adaln.rs) and then PyTorch's composed eager ops (benches/peers/torch_adaln.py) back to
# back, ROUNDS times, and prints both median times (ms), PyTorch's time over diffuse's (> 1: diffuse is faster) and
# the load average. Only rounds on an otherwise idle machine (load average near THREADS) say anything.
#
# Usage: [THREADS=2] [PYTHON=/opt/torchenv/bin/python] benches/peers/paired_adaln.sh [ROUNDS]   (repository root)
set -euo pipefail
rounds=${1:-3}
python=${PYTHON:-/opt/torchenv/bin/python}
threads=${THREADS:-2}
export RAYON_NUM_THREADS=$threads
# criterion benchmark id | torch_adaln.py case
cases=(
  "modulate forward fused|modulate forward"
  "modulate backward fused|modulate backward"
  "gated residual forward fused|gated residual forward"
  "gated residual backward fused|gated residual backward"
)
group="adaln B64 L196 D192"
cargo bench -p diffuse-cpu-kernels --bench adaln --no-run >/dev/null 2>&1
echo "threads: $threads; median times in ms"
printf '%-32s %5s %9s %9s %7s  %s\n' case round diffuse torch ratio load
for round in $(seq "$rounds"); do
  for case in "${cases[@]}"; do
    IFS='|' read -r id torch_case <<<"$case"
    ours=$(cargo bench -q -p diffuse-cpu-kernels --bench adaln -- "^${group}/${id}\$" --warm-up-time 1 \
      --measurement-time 3 2>/dev/null | awk '/time:/ { for (i = 1; $i != "time:"; i++); v = $(i + 3); u = $(i + 4);
        if (u == "s") v *= 1000; if (u == "µs" || u == "us") v /= 1000; if (u == "ns") v /= 1e6; print v; exit }')
    theirs=$("$python" benches/peers/torch_adaln.py --threads "$threads" --only "$torch_case" |
      awk '/ ms / { for (i = 1; i < NF; i++) if ($(i + 1) == "ms") { print $i; exit } }')
    ratio=$(awk -v a="$ours" -v b="$theirs" 'BEGIN { printf "%.2f", b / a }')
    printf '%-32s %5s %9s %9s %7s  %s\n' "$id" "$round" "$ours" "$theirs" "$ratio" "$(cut -d' ' -f1 /proc/loadavg)"
  done
done
