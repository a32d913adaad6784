"""PyTorch CPU peer for diffuse's latent-diffusion bench (crates/diffusion/benches/latent.rs): diffusers'
AutoencoderKL and UNet2DModel with the same named configs, batch 64, 2 threads.

Run: /opt/torchenv/bin/python benches/peers/diffusers_vae.py [--threads N] [--only SUBSTRING] [--min-time SECONDS]
Cases (median wall time over repeats after one warm-up):
  vae/fashion-vae/train_step: what one `AutoencoderTrainer::step` of `diffuse vae train` does without the optional
      terms: take the batch, encode, draw z = mean + std * eps, decode, loss = mean over images of (sum over pixels of
      |x - x_hat|) + 1e-6 * mean KL, backward, Adam (lr 1e-4, betas (0.5, 0.9)), EMA update (diffusers' EMAModel);
  latent/fashion-vae/decode: the decoder on 64 latents under no_grad;
  latent/fashion-latent/sample_step, latent/fashion-small/sample_step: one U-Net forward under no_grad.
With --counts, the parameter counts instead.
"""

import argparse
import statistics
import time

import diffusers
import torch
from diffusers import AutoencoderKL, UNet2DModel
from diffusers.training_utils import EMAModel

ARGS = argparse.ArgumentParser()
ARGS.add_argument("--threads", type=int, default=2)
ARGS.add_argument("--only", default="", help="run the cases whose name contains this, e.g. vae/fashion-vae")
ARGS.add_argument("--min-time", type=float, default=10.0, help="seconds of repeats per case (at least 5 repeats)")
ARGS.add_argument("--counts", action="store_true")
ARGS = ARGS.parse_args()
torch.set_num_threads(ARGS.threads)
torch.manual_seed(0)

BATCH = 64
# crates/models/src/vae/config.rs and crates/models/src/unet/config.rs
FASHION_VAE = dict(
    in_channels=1, out_channels=1, down_block_types=("DownEncoderBlock2D",) * 3,
    up_block_types=("UpDecoderBlock2D",) * 3, block_out_channels=(32, 64, 64), layers_per_block=1,
    latent_channels=4, norm_num_groups=8, sample_size=28, scaling_factor=1.0,
)
UNETS = {
    "fashion-latent": dict(
        sample_size=7, in_channels=4, out_channels=4, block_out_channels=(64,), layers_per_block=2,
        down_block_types=("AttnDownBlock2D",), up_block_types=("AttnUpBlock2D",),
        attention_head_dim=32, norm_num_groups=8, num_class_embeds=11,
    ),
    "fashion-small": dict(
        sample_size=28, in_channels=1, out_channels=1, block_out_channels=(32, 64, 64), layers_per_block=1,
        down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
        attention_head_dim=32, norm_num_groups=8, num_class_embeds=11,
    ),
}


def median_seconds(fn, min_reps=5):
    """Median wall time per call, and mean process CPU time per call."""
    fn()  # warm-up
    times = []
    start, cpu_start = time.perf_counter(), time.process_time()
    while len(times) < min_reps or time.perf_counter() - start < ARGS.min_time:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), (time.process_time() - cpu_start) / len(times)


def report(case, fn):
    if ARGS.only not in case:
        return
    wall, cpu = median_seconds(fn)
    print(f"{case}/batch{BATCH}: {wall * 1e3:9.1f} ms   (CPU {cpu * 1e3:9.1f} ms per step)")


def main():
    print(f"diffusers {diffusers.__version__}, torch {torch.__version__}, threads {torch.get_num_threads()}")
    vae = AutoencoderKL(**FASHION_VAE)
    if ARGS.counts:
        print("fashion-vae", sum(p.numel() for p in vae.parameters()))
        for name, config in UNETS.items():
            print(name, sum(p.numel() for p in UNet2DModel(**config).parameters()))
        return
    images = torch.rand(BATCH, 1, 28, 28) * 2 - 1
    opt = torch.optim.Adam(vae.parameters(), lr=1e-4, betas=(0.5, 0.9))
    ema = EMAModel(vae.parameters(), decay=0.999)

    def vae_train_step():
        x = images.clone()
        opt.zero_grad(set_to_none=True)
        posterior = vae.encode(x).latent_dist
        x_hat = vae.decode(posterior.sample()).sample
        reconstruction = (x - x_hat).abs().sum(dim=(1, 2, 3)).mean()
        loss = reconstruction + 1e-6 * posterior.kl().mean()
        loss.backward()
        opt.step()
        ema.step(vae.parameters())

    report("vae/fashion-vae/train_step", vae_train_step)
    latents = torch.randn(BATCH, 4, 7, 7)

    def decode():
        with torch.no_grad():
            vae.decode(latents)

    report("latent/fashion-vae/decode", decode)
    t = torch.randint(0, 1000, (BATCH,))
    labels = torch.randint(0, 11, (BATCH,))
    for name, config in UNETS.items():
        model = UNet2DModel(**config)
        x = torch.randn(BATCH, config["in_channels"], config["sample_size"], config["sample_size"])

        def sample_step():
            with torch.no_grad():
                model(x, t, class_labels=labels)

        report(f"latent/{name}/sample_step", sample_step)


if __name__ == "__main__":
    main()
