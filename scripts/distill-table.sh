#!/usr/bin/env bash
# The few-step table of docs/distillation.md: FD and classifier accuracy at 1, 2, 4 and 8 steps for the progressive,
# consistency-distilled and consistency-trained students beside DDIM, DPM-Solver++(2M) and UniPC on the teacher, with
# each method's training wall time; the table (distill-table.md) and the plot (distill-fd.png) go into OUT.
#
#   scripts/distill-table.sh [TEACHER] [OUT]        # TEACHER: runs/fashion-small; OUT: runs/distill-table
#
# Sizes (environment): NUM evaluation samples (1000), PROG_STEPS steps per progressive round (400; four rounds
# 16 → 8 → 4 → 2 → 1), CD_STEPS consistency-distillation steps (1600), CT_STEPS consistency-training steps (4000),
# GUIDANCE the teacher's guidance scale, distilled into the students and used for the teacher's samplers (2), BATCH
# (32). The teacher's samplers run on trailing timesteps (the first is T − 1, as the students' are) and all clip x̂0
# to [−1, 1] as the run's DDIM does: an ε model's x̂0 at T − 1 of the cosine schedule is divided by √ᾱ ≈ 5·10⁻⁵, and
# unclipped DPM-Solver++ and UniPC diverge there. The teacher's DDIM also takes its noise from the clipped x̂0
# (`--clipped-eps`), as the progressive students' DDIM does. Wall times are only comparable on an idle machine.
set -euo pipefail
cd "$(dirname "$0")/.."
TEACHER=${1:-runs/fashion-small}
OUT=${2:-runs/distill-table}
NUM=${NUM:-1000}
PROG_STEPS=${PROG_STEPS:-400}
CD_STEPS=${CD_STEPS:-1600}
CT_STEPS=${CT_STEPS:-4000}
GUIDANCE=${GUIDANCE:-2}
BATCH=${BATCH:-32}
cargo build --release -q -p diffuse-cli -p diffuse-figures
D=target/release/diffuse
mkdir -p "$OUT/results"
declare -A WALL

timed() { # NAME COMMAND...: runs COMMAND and records its wall time under NAME
    local name=$1 start end
    shift
    start=$(date +%s.%N)
    "$@"
    end=$(date +%s.%N)
    WALL[$name]=$(echo "$end - $start" | bc)
}

timed progressive $D distill progressive --teacher "$TEACHER" --out "$OUT/progressive" --teacher-steps 16 \
    --to-steps 1 --steps "$PROG_STEPS" --batch-size "$BATCH" --guidance "$GUIDANCE"
timed consistency-distilled $D distill consistency --teacher "$TEACHER" --out "$OUT/consistency" \
    --steps "$CD_STEPS" --batch-size "$BATCH" --guidance "$GUIDANCE"
timed consistency-trained $D train --objective consistency --out "$OUT/consistency-training" \
    --steps "$CT_STEPS" --batch-size "$BATCH" --lr 2e-4
{
    echo "{"
    sep=""
    for name in "${!WALL[@]}"; do
        printf '%s  "%s": %s' "$sep" "$name" "${WALL[$name]}"
        sep=$',\n'
    done
    printf '\n}\n'
} > "$OUT/results/wall_time_s.json"

evaluate() { # NAME STEPS ARGS...: one evaluation into OUT/results/NAME-STEPS.json
    local name=$1 steps=$2
    shift 2
    $D eval --num "$NUM" --steps "$steps" --json "$OUT/results/$name-$steps.json" "$@"
}
for n in 1 2 4 8; do
    for sampler in ddim dpm++2m unipc; do
        # DDIM takes its noise from the clipped x̂0, as the progressive students' DDIM does (docs/distillation.md).
        like_students=()
        [[ $sampler == ddim ]] && like_students=(--clipped-eps)
        evaluate "teacher-$sampler" "$n" --checkpoint "$TEACHER" --sampler "$sampler" --spacing trailing \
            --clip 1 --guidance "$GUIDANCE" "${like_students[@]}"
    done
    # Round k of 16 → 1 is the 16/2^k-step student.
    round=$(( $(echo "l(16/$n)/l(2)" | bc -l | xargs printf '%.0f') ))
    evaluate progressive "$n" --checkpoint "$OUT/progressive/round-$round"
    evaluate consistency-distilled "$n" --checkpoint "$OUT/consistency/round-1" --sampler consistency
    evaluate consistency-trained "$n" --checkpoint "$OUT/consistency-training" --sampler consistency
done
cargo run --release -q -p diffuse-figures -- distill --results "$OUT/results" --out "$OUT"
