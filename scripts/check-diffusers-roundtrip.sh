#!/usr/bin/env bash
# A diffuse training run, sampled in diffusers, gives what diffuse gives from the same noise.
#
# 1. installs diffusers 0.42.1 (with torch for the CPU and safetensors) into a virtual environment with pip, unless
#    PYTHON names an interpreter that already has them;
# 2. builds diffuse and trains a tiny unconditional U-Net for a few steps on the shipped Fashion-MNIST (or takes
#    RUN=DIR, an existing unconditional run);
# 3. runs scripts/diffusers_roundtrip.py: for every sampler of `diffuse sample --sampler`, diffusers loads the run's
#    model/ and scheduler/, builds the sampler from the config, samples from latents and step noise it draws, and
#    `diffuse sample --init-noise --noise --out-tensor` must give the same samples to 1e-4 of their magnitude.
#
# Usage: scripts/check-diffusers-roundtrip.sh            (VENV=DIR to choose where diffusers is installed)
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ -z "${PYTHON:-}" ]]; then
    venv=${VENV:-target/diffusers-venv}
    if [[ ! -x "$venv/bin/python" ]]; then
        python3 -m venv "$venv"
        "$venv/bin/pip" install --quiet --index-url https://download.pytorch.org/whl/cpu torch
        "$venv/bin/pip" install --quiet diffusers==0.42.1 safetensors numpy scipy
    fi
    PYTHON="$venv/bin/python"
fi

cargo build --release -p diffuse-cli
diffuse=target/release/diffuse

if [[ -z "${RUN:-}" ]]; then
    RUN=target/roundtrip-run
    rm -rf "$RUN"
    config=$(mktemp --suffix=.json)
    trap 'rm -f "$config"' EXIT
    cat > "$config" <<'EOF'
{
  "_class_name": "UNet2DModel",
  "sample_size": 28, "in_channels": 1, "out_channels": 1,
  "block_out_channels": [8, 16], "layers_per_block": 1,
  "down_block_types": ["DownBlock2D", "AttnDownBlock2D"],
  "up_block_types": ["AttnUpBlock2D", "UpBlock2D"],
  "attention_head_dim": 8, "norm_num_groups": 4
}
EOF
    "$diffuse" train --config "$config" --data data/fashion-mnist --out "$RUN" --steps 20 --batch-size 8 \
        --sample-every 0 --checkpoint-every 0 --device cpu
fi

"$PYTHON" scripts/diffusers_roundtrip.py --diffuse "$diffuse" --run "$RUN" "$@"
