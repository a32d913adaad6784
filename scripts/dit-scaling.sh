#!/usr/bin/env bash
# The DiT scaling series of docs/dit.md (the DiT paper's FID-against-Gflops plots in miniature): trains each named
# DiT config for the same number of steps at the same batch size, evaluating FD and classifier accuracy every
# EVAL_EVERY steps (diffuse train --eval-every), then draws FD against GFLOPs per forward pass and against training
# compute (diffuse-figures dit-scaling): RUNS/dit-scaling.md and RUNS/dit-scaling.png.
#
#   scripts/dit-scaling.sh [RUNS]            # RUNS: runs/dit-scaling; a config whose folder exists is not retrained
#
# Sizes (environment): CONFIGS (dit-s-4 dit-s-2 dit-b-4 dit-m-2), STEPS per config (4000), BATCH (32), EVAL_EVERY
# (1000), EVAL_NUM samples per evaluation (1000), GUIDANCE of the evaluations (2), LR (3e-4), WARMUP (200), TRAIN_ARGS
# (--schedule linear --loss-weighting uniform, the DiT paper's). Every config sees the same data, schedule and seed;
# only the network differs.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-runs/dit-scaling}
CONFIGS=${CONFIGS:-dit-s-4 dit-s-2 dit-b-4 dit-m-2}
STEPS=${STEPS:-4000}
BATCH=${BATCH:-32}
EVAL_EVERY=${EVAL_EVERY:-1000}
EVAL_NUM=${EVAL_NUM:-1000}
GUIDANCE=${GUIDANCE:-2}
LR=${LR:-3e-4}
WARMUP=${WARMUP:-200}
TRAIN_ARGS=${TRAIN_ARGS:---schedule linear --loss-weighting uniform}
cargo build --release -q -p diffuse-cli -p diffuse-figures
mkdir -p "$RUNS"
for config in $CONFIGS; do
    if [[ -e $RUNS/$config ]]; then
        echo "$RUNS/$config exists: kept (delete it to retrain)"
        continue
    fi
    target/release/diffuse train --config "$config" --out "$RUNS/$config" --steps "$STEPS" --batch-size "$BATCH" \
        --lr "$LR" --warmup "$WARMUP" --sample-every 0 --eval-every "$EVAL_EVERY" --eval-num "$EVAL_NUM" \
        --eval-guidance "$GUIDANCE" $TRAIN_ARGS
done
target/release/diffuse-figures dit-scaling --runs "$RUNS" --batch-size "$BATCH" --out "$RUNS"
