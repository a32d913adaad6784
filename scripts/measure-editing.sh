#!/usr/bin/env bash
# The three tables of docs/editing.md §5 (issue 27), at equal training time and equal sampling time:
#
#   1. SDEdit's trade-off: RMS distance to the guide, FD and accuracy over strengths 0 … 1 (the direct model).
#   2. Inpainting the left half of NUM test images: RePaint (no resampling, and with resampling at the same number of
#      model calls) on the direct model against the trained inpainting U-Net (fashion-inpaint) trained for the same
#      time: FD, the shipped classifier's accuracy against the guide's label, distance to the guide.
#   3. The cascade: base 14×14 (fashion-small-14) + super-resolution stage (fashion-sr, 14:28), trained together
#      for the direct model's training time and sampled in its sampling time, against the direct 28×28 model
#      (fashion-small): FD and accuracy at 28×28; and the stage's PSNR / SSIM on box-averaged training images
#      against bilinear and bicubic upsampling.
#
#   scripts/measure-editing.sh [OUT]     # OUT: runs/measure-editing; writes OUT/editing-tables.md, OUT/results/*.json
#
# Sizes (environment), the defaults being the full-size run:
#   TRAIN_STEPS   steps of the direct 28×28 model, the training-time unit (800: twice the default run's, so that the
#                 cascade's two halves are not starved)
#   BATCH         images per training step, every model (32)
#   SAMPLE_STEPS  DDIM steps of the direct model, the sampling-time unit (20)
#   NUM           samples / guides per row (1000); EVAL_BATCH images per model batch (250)
#   CAL_STEPS     steps of each calibration run (20)
#   JUMP_LENGTH, JUMP_N_SAMPLE  RePaint's resampling row (5, 2)
#   WARMUP        learning-rate warm-up steps of every run (50, capped at a fifth of its steps)
#   SR_LEVELS     augmentation levels of the PSNR / SSIM table (0,1,4); SR_LEVEL the cascade's (1)
#   STRENGTHS     SDEdit's strengths (0,0.2,0.4,0.6,0.8,1)
# Smoke size (a few minutes): TRAIN_STEPS=4 BATCH=4 SAMPLE_STEPS=4 NUM=20 EVAL_BATCH=20 CAL_STEPS=2 JUMP_LENGTH=1
#
# How the step counts are chosen. Equal time is equal work on one machine, so every model's cost per training step
# is measured first: a CAL_STEPS-step run of each (its images_per_s in metrics.jsonl, start-up excluded) gives
# seconds per step s_direct, s_base14, s_sr, s_inpaint. The direct model's training time is TRAIN_STEPS·s_direct;
# - the inpainting U-Net gets it all: TRAIN_STEPS·s_direct/s_inpaint steps (it differs from the direct model only in
#   its first convolution's two extra input channels, so about TRAIN_STEPS);
# - the cascade splits it in half: the base gets ½·TRAIN_STEPS·s_direct/s_base14 steps, the stage
#   ½·TRAIN_STEPS·s_direct/s_sr (a 14×14 step costs about a quarter of a 28×28 one, so the base takes several
#   times the stage's steps).
# Assuming the networks' sampling steps cost in the same proportion as their training steps (the backward pass the
# same multiple of the forward for each; the wall times of the cascade's and the direct model's evaluations, in the
# table, check it), the same ratios split the sampling time: the cascade's base
# runs ½·SAMPLE_STEPS·s_direct/s_base14 steps and its stage ½·SAMPLE_STEPS·s_direct/s_sr (each at least 1). RePaint
# and the inpainting U-Net call a 28×28 network of equal cost once per step, so equal sampling time is an equal
# number of calls: SAMPLE_STEPS for the U-Net and for RePaint without resampling; with resampling, the largest step
# count whose calls (N + (r − 1)·J·⌈(N − J)/J⌉ for jumps of J levels, r passes) stay within SAMPLE_STEPS. Every
# chosen count is written to OUT/results/plan.json.
#
# Expected time on one core at the defaults, scaled from CPU (user) times seen on the shared 2-core machine at
# 305a5d1: a fashion-small training step of 32 images about 0.8 s, a 28×28 DDIM step about 8 ms per image with the
# scoring included, about 7 s of start-up per evaluation. So: calibration 1–2 minutes; each of the three training
# budgets (direct; base + stage; inpainting U-Net) about 11 minutes; SDEdit (60 steps per guide over the six
# strengths) about 8; the direct and cascade evaluations about 3 each; the stage's PSNR rows about 4; the three
# inpainting rows about 8: about an hour in all, within an hour and a half with start-ups and a slower core. Wall
# times are only comparable on an otherwise idle core: pin it (taskset -c N) and run nothing beside it.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/measure-editing}
TRAIN_STEPS=${TRAIN_STEPS:-800}
BATCH=${BATCH:-32}
SAMPLE_STEPS=${SAMPLE_STEPS:-20}
NUM=${NUM:-1000}
EVAL_BATCH=${EVAL_BATCH:-250}
CAL_STEPS=${CAL_STEPS:-20}
JUMP_LENGTH=${JUMP_LENGTH:-5}
JUMP_N_SAMPLE=${JUMP_N_SAMPLE:-2}
WARMUP=${WARMUP:-50}
SR_LEVELS=${SR_LEVELS:-0,1,4}
SR_LEVEL=${SR_LEVEL:-1}
STRENGTHS=${STRENGTHS:-0,0.2,0.4,0.6,0.8,1}
cargo build --release -q -p diffuse-cli
D=target/release/diffuse
R=$OUT/results
mkdir -p "$R"

# The mask of tables 2: white (fill) in columns 0-13 of a 28×28 image.
python3 - "$OUT/left-half.png" <<'EOF'
import struct, sys, zlib
rows = b"".join(b"\0" + bytes(255 if x < 14 else 0 for x in range(28)) for _ in range(28))
chunk = lambda kind, data: struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 28, 28, 8, 0, 0, 0, 0))
open(sys.argv[1], "wb").write(png + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))
EOF

train() { # NAME STEPS ARGS...: a run of STEPS steps into OUT/NAME
    local name=$1 steps=$2 warmup=$(( WARMUP < $2 / 5 ? WARMUP : $2 / 5 ))
    shift 2
    $D train --out "$OUT/$name" --steps "$steps" --batch-size "$BATCH" --warmup "$warmup" --log-every "$steps" \
        --checkpoint-every 0 --sample-every 0 --grid-steps 5 --grid-columns 2 "$@"
}
DIRECT=(--config fashion-small)
BASE14=(--config fashion-small-14 --resolution 14)
SR=(--config fashion-sr --super-resolution 14:28)
INPAINT=(--config fashion-inpaint --inpainting)

# ---- calibration: seconds per training step of each model ----
seconds_per_step() { # RUN: BATCH / images_per_s of the run's last metrics line
    python3 -c 'import json,sys; m=json.loads(open(sys.argv[1]).read().splitlines()[-1]); print(int(sys.argv[2])/m["images_per_s"])' \
        "$1/metrics.jsonl" "$BATCH"
}
train calibrate/DIRECT "$CAL_STEPS" "${DIRECT[@]}"
train calibrate/BASE14 "$CAL_STEPS" "${BASE14[@]}"
train calibrate/SR "$CAL_STEPS" "${SR[@]}"
train calibrate/INPAINT "$CAL_STEPS" "${INPAINT[@]}"
S_DIRECT=$(seconds_per_step "$OUT/calibrate/DIRECT")
S_BASE14=$(seconds_per_step "$OUT/calibrate/BASE14")
S_SR=$(seconds_per_step "$OUT/calibrate/SR")
S_INPAINT=$(seconds_per_step "$OUT/calibrate/INPAINT")
share() { # FRACTION UNITS S_MODEL: round(FRACTION·UNITS·S_DIRECT/S_MODEL), at least 1
    python3 -c 'import sys; f,u,d,m=map(float,sys.argv[1:]); print(max(1, round(f*u*d/m)))' "$1" "$2" "$S_DIRECT" "$3"
}
INPAINT_STEPS=$(share 1 "$TRAIN_STEPS" "$S_INPAINT")
BASE14_STEPS=$(share 0.5 "$TRAIN_STEPS" "$S_BASE14")
SR_STEPS=$(share 0.5 "$TRAIN_STEPS" "$S_SR")
BASE14_SAMPLE_STEPS=$(share 0.5 "$SAMPLE_STEPS" "$S_BASE14")
SR_SAMPLE_STEPS=$(share 0.5 "$SAMPLE_STEPS" "$S_SR")
repaint_calls() { # N J R
    local n=$1 j=$2 r=$3
    echo $(( n + (r - 1) * j * ( n > j ? (n - j + j - 1) / j : 0 ) ))
}
REPAINT_STEPS=1
while [ "$(repaint_calls $((REPAINT_STEPS + 1)) "$JUMP_LENGTH" "$JUMP_N_SAMPLE")" -le "$SAMPLE_STEPS" ]; do
    REPAINT_STEPS=$((REPAINT_STEPS + 1))
done
cat > "$R/plan.json" <<EOF
{
  "seconds_per_step": {"direct": $S_DIRECT, "base14": $S_BASE14, "sr": $S_SR, "inpaint": $S_INPAINT},
  "batch": $BATCH, "num": $NUM, "sr_level": $SR_LEVEL,
  "train_steps": {"direct": $TRAIN_STEPS, "base14": $BASE14_STEPS, "sr": $SR_STEPS, "inpaint": $INPAINT_STEPS},
  "sample_steps": {"direct": $SAMPLE_STEPS, "base14": $BASE14_SAMPLE_STEPS, "sr": $SR_SAMPLE_STEPS,
                   "inpaint": $SAMPLE_STEPS, "repaint": $SAMPLE_STEPS, "repaint_jumps": $REPAINT_STEPS},
  "repaint_jumps": {"jump_length": $JUMP_LENGTH, "jump_n_sample": $JUMP_N_SAMPLE,
                    "calls": $(repaint_calls "$REPAINT_STEPS" "$JUMP_LENGTH" "$JUMP_N_SAMPLE")}
}
EOF
cat "$R/plan.json"

# ---- training at equal time ----
timed() { # NAME COMMAND...: runs COMMAND, writes its wall time to R/wall-NAME.txt
    local name=$1 start
    shift
    start=$(date +%s.%N)
    "$@"
    python3 -c 'import sys,time; print(round(time.time()-float(sys.argv[1]), 3))' "$start" > "$R/wall-$name.txt"
}
timed train-direct train direct "$TRAIN_STEPS" "${DIRECT[@]}"
timed train-base14 train base14 "$BASE14_STEPS" "${BASE14[@]}"
timed train-sr train sr "$SR_STEPS" "${SR[@]}"
timed train-inpaint train inpaint "$INPAINT_STEPS" "${INPAINT[@]}"

# ---- evaluation at equal sampling time (DDIM everywhere but RePaint, whose step is DDIM's with η = 1) ----
EVAL=(--num "$NUM" --batch "$EVAL_BATCH" --sampler ddim)
timed sdedit $D eval-edit --checkpoint "$OUT/direct" "${EVAL[@]}" --steps "$SAMPLE_STEPS" --strengths "$STRENGTHS" \
    --json "$R/sdedit.json"
timed eval-direct $D eval --checkpoint "$OUT/direct" "${EVAL[@]}" --steps "$SAMPLE_STEPS" --json "$R/direct.json"
timed eval-cascade $D eval --checkpoint "$OUT/base14" "${EVAL[@]}" --steps "$BASE14_SAMPLE_STEPS" \
    --upscale "$OUT/sr" --sr-steps "$SR_SAMPLE_STEPS" --sr-level "$SR_LEVEL" --json "$R/cascade.json"
timed sr-psnr $D eval-edit --checkpoint "$OUT/sr" "${EVAL[@]}" --steps "$SR_SAMPLE_STEPS" --sr-levels "$SR_LEVELS" \
    --json "$R/sr-psnr.json"
MASKED=(--num "$NUM" --batch "$EVAL_BATCH" --guides test --mask "$OUT/left-half.png")
timed repaint $D eval-edit --checkpoint "$OUT/direct" "${MASKED[@]}" --steps "$SAMPLE_STEPS" --json "$R/repaint.json"
timed repaint-jumps $D eval-edit --checkpoint "$OUT/direct" "${MASKED[@]}" --steps "$REPAINT_STEPS" \
    --jump-length "$JUMP_LENGTH" --jump-n-sample "$JUMP_N_SAMPLE" --json "$R/repaint-jumps.json"
timed inpaint $D eval-edit --checkpoint "$OUT/inpaint" "${MASKED[@]}" --sampler ddim --steps "$SAMPLE_STEPS" \
    --json "$R/inpaint.json"

python3 scripts/editing_tables.py "$R" > "$OUT/editing-tables.md"
cat "$OUT/editing-tables.md"
