#!/usr/bin/env bash
# The whole CPU speed comparison of issue 23, paired: every case runs diffuse and then PyTorch (or PyTorch first, on
# even rounds, so that a drift in machine load does not favour one side), ROUNDS times in turn, and the script prints
# each round's times and diffuse's time over PyTorch's (< 1: diffuse is faster), then per case the median ratio and
# the round-to-round spread of each side's time ((max − min) / median over the rounds).
#
# Cases:
# - U-Net steps, fashion-small and fashion-base, training and sampling, batch 32 and 64: diffuse's `unet_time`
#   example beside diffusers' UNet2DModel of the same configuration (benches/peers/diffusers_unet.py), each the
#   median wall time per step over at least MIN_TIME seconds and MIN_REPS steps after one warm-up (the same window on
#   both sides: the machine's speed drifts over seconds, and a median over 2 s of steps follows it more than one over
#   10 s);
# - the kernels: conv 3×3 forward N32 C256 7², conv forward + backward N32 C128 14² (criterion's median, benches
#   conv2d) beside benches/peers/torch_cpu.py; group norm forward and backward N32 C128 14² G32 (bench group_norm)
#   beside benches/peers/torch_cpu_norm_attn.py;
# - the FMA peaks of the same round (bench fma_peak: 12 chains of 256-bit FMAs per thread, and 24 of 512-bit ones on
#   AVX-512 CPUs, whose roof can be twice the AVX2 one), on one thread and on THREADS.
#
# Only rounds on an otherwise idle machine (load average near THREADS, printed per case) say anything; the figures in
# docs/ come from this script on such a machine.
#
# Usage: [THREADS=2] [MIN_TIME=10] [MIN_REPS=5] [KERNEL_TIME=3] [ONLY=substring]
#        [PYTHON=/opt/torchenv/bin/python] benches/peers/paired_speed.sh [ROUNDS]       (from the repository root)
# THREADS sets both rayon's pool (RAYON_NUM_THREADS) and torch.set_num_threads; ONLY keeps the cases whose name
# contains it (e.g. ONLY=fashion-small, ONLY=conv); MIN_TIME, MIN_REPS and KERNEL_TIME (criterion's measurement
# seconds) shorten a trial run: `MIN_TIME=0 MIN_REPS=1 KERNEL_TIME=1 ... paired_speed.sh 2`.
set -euo pipefail
rounds=${1:-3}
python=${PYTHON:-/opt/torchenv/bin/python}
threads=${THREADS:-2}
min_time=${MIN_TIME:-10}
min_reps=${MIN_REPS:-5}
kernel_time=${KERNEL_TIME:-3}
only=${ONLY:-}
export RAYON_NUM_THREADS=$threads

# name | kind | diffuse's arguments | PyTorch's arguments | pattern of PyTorch's output line
# kind unet: diffuse's arguments go to unet_time, PyTorch's to diffusers_unet.py;
# kind kernel: diffuse's are "bench|criterion id", PyTorch's "script|--only value".
cases=()
for batch in 32 64; do
  for model in fashion-small fashion-base; do
    for step in train sample; do
      cases+=("$model/${step}_step/batch$batch|unet|$model $step $min_reps $batch $min_time|$model/${step}_step --batch $batch|^unet/")
    done
  done
done
cases+=(
  "conv3x3 forward N32 C256 7x7|kernel|conv2d|conv2d_3x3/forward/N32_C256_7x7|torch_cpu.py|conv2d_3x3 forward N32_C256_7x7|forward"
  "conv3x3 fwd+bwd N32 C128 14x14|kernel|conv2d|conv2d_3x3/forward+backward/N32_C128_14x14|torch_cpu.py|conv2d_3x3 forward\+backward N32_C128_14x14|forward"
  "group_norm forward N32 C128 14x14|kernel|group_norm|group_norm N32 C128 14x14 G32/forward|torch_cpu_norm_attn.py|group_norm N32|forward"
  "group_norm backward N32 C128 14x14|kernel|group_norm|group_norm N32 C128 14x14 G32/backward|torch_cpu_norm_attn.py|group_norm N32|backward"
)

cargo build -q --release -p diffuse-diffusion --example unet_time
cargo bench -p diffuse-cpu-kernels --bench conv2d --bench group_norm --bench fma_peak --no-run >/dev/null 2>&1
unet_time=target/release/examples/unet_time

# Criterion's median time of one benchmark id, in ms.
criterion_ms() {
  local regex=${2//+/\\+}
  cargo bench -q -p diffuse-cpu-kernels --bench "$1" -- "^${regex}\$" --warm-up-time 1 --measurement-time "$kernel_time" \
    2>/dev/null | awk '/time:/ { for (i = 1; $i != "time:"; i++); v = $(i + 3); u = $(i + 4); if (u == "s") v *= 1000;
      if (u == "µs" || u == "us") v /= 1000; if (u == "ns") v /= 1e6; print v; exit }'
}

# The first number followed by "ms" on the first line matching a pattern.
ms_on_line() {
  awk -v pattern="$1" '$0 ~ pattern { for (i = 1; i < NF; i++) if ($(i + 1) == "ms") { print $i; exit } }'
}

ours_ms() {
  IFS='|' read -r _ kind a b _ <<<"$1"
  if [[ $kind == unet ]]; then
    # shellcheck disable=SC2086 # the arguments are words
    "$unet_time" $a | awk '/median/ { print $2 }'
  else
    criterion_ms "$a" "$b"
  fi
}

theirs_ms() {
  IFS='|' read -r _ kind a b c d e <<<"$1"
  if [[ $kind == unet ]]; then
    # shellcheck disable=SC2086
    "$python" benches/peers/diffusers_unet.py --threads "$threads" --only $b --min-time "$min_time" \
      --min-reps "$min_reps" | ms_on_line "$c"
  elif [[ $c == torch_cpu.py ]]; then
    "$python" benches/peers/torch_cpu.py --threads "$threads" --only "$d" --repeats "$min_reps" | ms_on_line "$e"
  else
    "$python" benches/peers/torch_cpu_norm_attn.py --threads "$threads" --only "$d" | ms_on_line "$e"
  fi
}

# fma_gflops LOOP THREADS: GFLOP/s of fma_peak's LOOP (avx2_fma or avx512_fma) on THREADS threads; empty when the CPU
# lacks that width.
fma_gflops() {
  cargo bench -q -p diffuse-cpu-kernels --bench fma_peak -- "^fma_peak/$1_threads/$2\$" --warm-up-time 1 \
    --measurement-time 1 2>/dev/null | awk '/thrpt:/ { for (i = 1; $i != "thrpt:"; i++); v = $(i + 3); u = $(i + 4);
      if (u ~ /^M/) v /= 1000; print v; exit }'
}

results=$(mktemp)
trap 'rm -f "$results"' EXIT
echo "threads: $threads; times in ms (U-Net: per step); ratio = diffuse ÷ PyTorch (< 1: diffuse is faster)"
printf '%-36s %5s %10s %10s %7s  %s\n' case round diffuse torch ratio load
for round in $(seq "$rounds"); do
  for case in "${cases[@]}"; do
    name=${case%%|*}
    [[ $name == *"$only"* ]] || continue
    if ((round % 2)); then
      ours=$(ours_ms "$case")
      theirs=$(theirs_ms "$case")
    else
      theirs=$(theirs_ms "$case")
      ours=$(ours_ms "$case")
    fi
    ratio=$(awk -v a="$ours" -v b="$theirs" 'BEGIN { printf "%.3f", a / b }')
    printf '%-36s %5s %10s %10s %7s  %s\n' "$name" "$round" "$ours" "$theirs" "$ratio" "$(cut -d' ' -f1 /proc/loadavg)"
    printf '%s\t%s\t%s\t%s\n' "$name" "$ours" "$theirs" "$ratio" >>"$results"
  done
  for width in avx2_fma avx512_fma; do
    one=$(fma_gflops "$width" 1)
    [[ -n $one ]] || continue
    many=$(fma_gflops "$width" "$threads")
    printf '%-36s %5s %10s %10s  GFLOP/s (one thread, %s threads)\n' "fma_peak/$width" "$round" "$one" "$many" \
      "$threads"
    printf '%s\t%s\t%s\t-\n' "fma_peak/$width" "$one" "$many" >>"$results"
  done
done

echo
echo "over $rounds rounds: median ratio, and each side's spread (max − min) / median of its times; for the FMA"
echo "peaks, the host's own spread on one thread and on $threads (a loop that touches no memory)"
printf '%-36s %7s %9s %9s\n' case ratio diffuse torch
awk -F'\t' '
  function median(list, n,    sorted, i, j, t) {
    for (i = 1; i <= n; i++) sorted[i] = list[i]
    for (i = 2; i <= n; i++) for (j = i; j > 1 && sorted[j - 1] > sorted[j]; j--) {
      t = sorted[j]; sorted[j] = sorted[j - 1]; sorted[j - 1] = t
    }
    return n % 2 ? sorted[(n + 1) / 2] : (sorted[n / 2] + sorted[n / 2 + 1]) / 2
  }
  function spread(list, n,    i, lo, hi) {
    lo = hi = list[1]
    for (i = 2; i <= n; i++) { if (list[i] < lo) lo = list[i]; if (list[i] > hi) hi = list[i] }
    return (hi - lo) / median(list, n)
  }
  !($1 in count) { order[++cases] = $1 }
  { k = ++count[$1]; ours[$1, k] = $2; theirs[$1, k] = $3; ratio[$1, k] = $4 }
  END {
    for (c = 1; c <= cases; c++) {
      name = order[c]; n = count[name]
      for (k = 1; k <= n; k++) { o[k] = ours[name, k]; t[k] = theirs[name, k]; r[k] = ratio[name, k] }
      if (name ~ /^fma_peak/) printf "%-36s %7s %8.1f%% %8.1f%%\n", name, "-", 100 * spread(o, n), 100 * spread(t, n)
      else printf "%-36s %7.3f %8.1f%% %8.1f%%\n", name, median(r, n), 100 * spread(o, n), 100 * spread(t, n)
    }
  }' "$results"
