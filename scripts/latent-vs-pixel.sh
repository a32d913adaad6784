#!/usr/bin/env bash
# The quality half of docs/latent.md's table: the autoencoder's reconstructions, then a latent model against the
# pixel fashion-small trained for the same wall time on the same machine, both scored by `diffuse eval` on the same
# settings. Run it on an otherwise idle machine; it takes about as long as PIXEL_STEPS pixel steps, twice, plus the
# autoencoder.
#
#   VAE_STEPS      steps of `diffuse vae train` (default 4000)
#   PIXEL_STEPS    steps of the pixel model (default 4000); its training seconds T set the latent model's budget
#   NUM            samples per evaluation (default 10000)
#   RUNS           where the runs go (default runs/latent-vs-pixel)
#
# The latent model's step count is T / (its seconds per step), measured on a 50-step probe run; training seconds
# are the runs' own `elapsed_s` (the training loop only: the one-off encoding of the training set and the
# autoencoder's own training are reported beside them, not included). Results: RUNS/*.json and the printed table.
# Usage (from the repository root): [VAE_STEPS=…] [PIXEL_STEPS=…] scripts/latent-vs-pixel.sh
set -euo pipefail
cd "$(dirname "$0")/.."
vae_steps=${VAE_STEPS:-4000}
pixel_steps=${PIXEL_STEPS:-4000}
num=${NUM:-10000}
runs=${RUNS:-runs/latent-vs-pixel}
cargo build --release -p diffuse-cli >/dev/null
diffuse=target/release/diffuse
elapsed() { tail -n 1 "$1/metrics.jsonl" | sed 's/.*"elapsed_s":\([0-9.eE+-]*\).*/\1/'; }

"$diffuse" vae train --out "$runs/vae" --steps "$vae_steps" --device cpu
"$diffuse" vae eval --vae "$runs/vae" --num "$num" --json "$runs/vae-eval.json" --device cpu

"$diffuse" train --config fashion-small --out "$runs/pixel" --steps "$pixel_steps" --device cpu
budget=$(elapsed "$runs/pixel")

rm -rf "$runs/latent-probe"
"$diffuse" train --config fashion-latent --vae "$runs/vae" --out "$runs/latent-probe" --steps 50 --device cpu \
  --sample-every 0 --checkpoint-every 0
per_step=$(awk -v t="$(elapsed "$runs/latent-probe")" 'BEGIN { print t / 50 }')
latent_steps=$(awk -v b="$budget" -v s="$per_step" 'BEGIN { printf "%d", b / s }')
echo "pixel: $pixel_steps steps in $budget s; latent: $per_step s/step, so $latent_steps steps"
"$diffuse" train --config fashion-latent --vae "$runs/vae" --out "$runs/latent" --steps "$latent_steps" --device cpu

for run in pixel latent; do
  "$diffuse" eval --checkpoint "$runs/$run" --num "$num" --json "$runs/$run-eval.json" --device cpu
done
echo "training seconds: pixel $budget, latent $(elapsed "$runs/latent") (+ autoencoder $(elapsed "$runs/vae"))"
