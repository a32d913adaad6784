"""PyTorch CPU peer for diffuse's text-to-image bench (crates/diffusion/benches/text.rs): transformers' CLIPTextModel
and diffusers' UNet2DConditionModel with the same configs, 2 threads.

Run: /opt/torchenv/bin/python benches/peers/transformers_diffusers_text.py [--threads N] [--only SUBSTRING]
     [--min-time SECONDS] [--min-reps N] [--batch N]
Cases (median wall time over repeats after one warm-up):
  encoder/prompts64: the text encoder (width 64, 2 layers, 4 heads, MLP 128, 20 positions, 1024 tokens) on 64
    prompts of 20 ids under no_grad;
  fashion-text/train_step: the fashion-text U-Net on 64 28x28x1 images attending to 64 contexts of 20x64 at spread
    timesteps, MSE against noise, backward, AdamW step (lr 1e-4).
Library versions of the figures in docs: torch 2.15.0, diffusers 0.42.1, transformers (as installed; printed).
"""

import argparse
import statistics
import time

import diffusers
import torch
import torch.nn.functional as F
import transformers
from diffusers import UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel

ARGS = argparse.ArgumentParser()
ARGS.add_argument("--threads", type=int, default=2)
ARGS.add_argument("--only", default="", help="run the cases whose name contains this, e.g. train_step")
ARGS.add_argument("--min-time", type=float, default=10.0, help="seconds of repeats per case")
ARGS.add_argument("--min-reps", type=int, default=5, help="at least this many timed repeats per case")
ARGS.add_argument("--batch", type=int, default=64)
ARGS = ARGS.parse_args()
torch.set_num_threads(ARGS.threads)
torch.manual_seed(0)
BATCH, CONTEXT, WIDTH = ARGS.batch, 20, 64

TEXT = CLIPTextConfig(
    vocab_size=1024, hidden_size=WIDTH, intermediate_size=128, projection_dim=WIDTH, num_hidden_layers=2,
    num_attention_heads=4, max_position_embeddings=CONTEXT, hidden_act="quick_gelu", pad_token_id=0, bos_token_id=0,
    eos_token_id=2,
)
# diffuse's `fashion-text` (crates/models/src/unet_condition/config.rs).
UNET = dict(
    sample_size=28, in_channels=1, out_channels=1, block_out_channels=(32, 64, 64), layers_per_block=1,
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    attention_head_dim=2, norm_num_groups=8, cross_attention_dim=WIDTH, use_linear_projection=True,
)


def median_seconds(fn):
    """Median wall time per call, and mean process CPU time per call (all threads)."""
    fn()  # warm-up
    times = []
    start, cpu_start = time.perf_counter(), time.process_time()
    while len(times) < ARGS.min_reps or time.perf_counter() - start < ARGS.min_time:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), (time.process_time() - cpu_start) / len(times)


def main():
    print(
        f"transformers {transformers.__version__}, diffusers {diffusers.__version__}, torch {torch.__version__}, "
        f"threads {torch.get_num_threads()}"
    )
    encoder = CLIPTextModel(TEXT).eval()
    ids = torch.tensor(
        [2 if i % CONTEXT == CONTEXT - 1 else 3 + (i * 7919 % 1000) for i in range(BATCH * CONTEXT)]
    ).reshape(BATCH, CONTEXT)

    def encode():
        with torch.no_grad():
            encoder(input_ids=ids).last_hidden_state

    unet = UNet2DConditionModel(**UNET)
    opt = torch.optim.AdamW(unet.parameters(), lr=1e-4)
    x = torch.randn(BATCH, 1, 28, 28)
    noise = torch.randn(BATCH, 1, 28, 28)
    context = torch.randn(BATCH, CONTEXT, WIDTH)
    t = torch.tensor([(i * 397) % 1000 for i in range(BATCH)])

    def train_step():
        opt.zero_grad(set_to_none=True)
        loss = F.mse_loss(unet(x, t, encoder_hidden_states=context).sample, noise)
        loss.backward()
        opt.step()

    for name, fn in [(f"encoder/prompts{BATCH}", encode), (f"fashion-text/train_step/batch{BATCH}", train_step)]:
        if ARGS.only not in name:
            continue
        wall, cpu = median_seconds(fn)
        print(f"{name:40s} {wall * 1000:10.2f} ms  (cpu {cpu * 1000:.2f} ms)")


if __name__ == "__main__":
    main()
