#!/usr/bin/env bash
# Paired diffuse-vs-PyTorch comparison for latent diffusion: each case runs diffuse's criterion bench
# (crates/diffusion/benches/latent.rs) and then the same case in PyTorch + diffusers (diffusers_vae.py), back to back,
# ROUNDS times, and prints both median times and diffuse's time over PyTorch's (< 1: diffuse is faster), with the
# load average. After the rounds it prints, from diffuse's own times of the last round, the latent U-Net's speed-up
# per sampling step over fashion-small and the per-image cost of sampling + decoding in STEPS steps against pixel
# sampling in as many. Only rounds on an otherwise idle machine (load average near THREADS) say anything.
#
# Usage: [THREADS=2] [STEPS=20] [PYTHON=/opt/torchenv/bin/python] benches/peers/paired_vae.sh [ROUNDS] [CASE-FILTER]
# (from the repository root; CASE-FILTER is a substring of the case names, e.g. vae/fashion-vae).
set -euo pipefail
rounds=${1:-2}
filter=${2:-}
python=${PYTHON:-/opt/torchenv/bin/python}
threads=${THREADS:-2}
steps=${STEPS:-20}
export RAYON_NUM_THREADS=$threads
cases=(
  "vae/fashion-vae/train_step"
  "latent/fashion-vae/decode"
  "latent/fashion-latent/sample_step"
  "latent/fashion-small/sample_step"
)
cargo bench -p diffuse-diffusion --bench latent --no-run >/dev/null 2>&1
echo "threads: $threads; median times in ms"
printf '%-36s %5s %9s %9s %7s  %s\n' case round diffuse torch ratio load
declare -A ours_last
for round in $(seq "$rounds"); do
  for case in "${cases[@]}"; do
    [[ $case == *"$filter"* ]] || continue
    ours=$(cargo bench -q -p diffuse-diffusion --bench latent -- "${case}/batch64" --warm-up-time 2 --measurement-time 10 2>/dev/null |
      awk '/time:/ { v = $4; u = $5; if (u == "s") v *= 1000; if (u == "µs" || u == "us") v /= 1000; print v; exit }')
    theirs=$("$python" benches/peers/diffusers_vae.py --threads "$threads" --only "$case" --min-time 10 |
      awk '/ms/ { for (i = 1; i < NF; i++) if ($(i + 1) == "ms") { print $i; exit } }')
    ratio=$(awk -v a="$ours" -v b="$theirs" 'BEGIN { printf "%.2f", a / b }')
    printf '%-36s %5s %9s %9s %7s  %s\n' "$case" "$round" "$ours" "$theirs" "$ratio" "$(cut -d' ' -f1 /proc/loadavg)"
    ours_last[$case]=$ours
  done
done
latent=${ours_last["latent/fashion-latent/sample_step"]:-}
pixel=${ours_last["latent/fashion-small/sample_step"]:-}
decode=${ours_last["latent/fashion-vae/decode"]:-}
if [[ -n $latent && -n $pixel && -n $decode ]]; then
  awk -v l="$latent" -v p="$pixel" -v d="$decode" -v s="$steps" 'BEGIN {
    printf "diffuse, last round: pixel step / latent step = %.2f; pixel sampling / (latent sampling + decode) in %d steps = %.2f\n",
      p / l, s, (s * p) / (s * l + d) }'
fi
