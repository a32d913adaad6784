#!/usr/bin/env python3
"""A diffuse training run sampled in diffusers: its checkpoint's model/ (or ema/) and scheduler/ are loaded by
diffusers' own classes, every sampler of `diffuse sample --sampler` is built from the scheduler config as diffusers
builds it (`NewScheduler.from_config(config, **settings)`), and diffusers' pipeline loop runs from latents and step
noise this script draws. `diffuse sample` then runs from the same latents and noise, and the two samples must agree to
1e-4 of the output's magnitude.

    python diffusers_roundtrip.py --diffuse target/release/diffuse --run RUN [--weights ema] [--steps 10]

Normally run by `scripts/check-diffusers-roundtrip.sh`, which installs diffusers with pip and trains a tiny run
first. Exit status 0 when every sampler agrees.
"""

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from diffusers import (
    DDIMScheduler,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    HeunDiscreteScheduler,
    LMSDiscreteScheduler,
    PNDMScheduler,
    UNet2DModel,
    UniPCMultistepScheduler,
)
from safetensors.torch import load_file, save_file

# The samplers of `diffuse sample --sampler` and the settings each name fixes (crates/diffusion/src/sampler/named.rs).
SAMPLERS = {
    "ddpm": (DDPMScheduler, {}),
    "ddim": (DDIMScheduler, {}),
    "pndm": (PNDMScheduler, {"skip_prk_steps": False}),
    "plms": (PNDMScheduler, {"skip_prk_steps": True}),
    "euler": (EulerDiscreteScheduler, {}),
    "euler-a": (EulerAncestralDiscreteScheduler, {}),
    "heun": (HeunDiscreteScheduler, {}),
    "lms": (LMSDiscreteScheduler, {}),
    "dpm2m": (DPMSolverMultistepScheduler,
              {"algorithm_type": "dpmsolver", "solver_order": 2, "final_sigmas_type": "sigma_min"}),
    "dpm++2m": (DPMSolverMultistepScheduler, {"algorithm_type": "dpmsolver++", "solver_order": 2}),
    "dpm++3m": (DPMSolverMultistepScheduler, {"algorithm_type": "dpmsolver++", "solver_order": 3}),
    "dpm++2m-sde": (DPMSolverMultistepScheduler, {"algorithm_type": "sde-dpmsolver++", "solver_order": 2}),
    "unipc": (UniPCMultistepScheduler, {"solver_type": "bh2"}),
    "unipc-bh1": (UniPCMultistepScheduler, {"solver_type": "bh1"}),
}


def draws_noise(scheduler, step_kwargs):
    return (
        isinstance(scheduler, (DDPMScheduler, EulerAncestralDiscreteScheduler))
        or step_kwargs.get("eta", 0) > 0
        or getattr(scheduler.config, "algorithm_type", "").startswith("sde")
    )


def diffusers_sample(unet, scheduler, latents, steps, noise):
    """diffusers' pipeline loop (latents × init_noise_sigma, scale_model_input, step), with the given step noise."""
    module = sys.modules[type(scheduler).__module__]
    original = getattr(module, "randn_tensor", None)
    state = {"step": 0}
    if original is not None:
        module.randn_tensor = lambda shape, **_: noise[state["step"]].reshape(shape).clone()
    try:
        scheduler.set_timesteps(steps)
        if hasattr(scheduler, "set_begin_index"):
            scheduler.set_begin_index(0)
        x = latents * scheduler.init_noise_sigma
        for k, t in enumerate(scheduler.timesteps):
            state["step"] = k
            with torch.no_grad():
                out = unet(scheduler.scale_model_input(x, t), t).sample
            x = scheduler.step(out[:, : x.shape[1]], t, x).prev_sample
    finally:
        if original is not None:
            module.randn_tensor = original
    return x


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--diffuse", required=True, help="the diffuse binary")
    parser.add_argument("--run", required=True, type=Path, help="a diffuse training run (or step-N checkpoint)")
    parser.add_argument("--weights", default="ema", choices=["ema", "model"])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--count", type=int, default=2)
    # unipc-bh1 is left out by default: with diffusers' final σ = 0 its last step computes (−∞)·0 and diffusers
    # returns NaN (diffuse returns the limit, x̂0; docs/samplers.md § UniPC).
    parser.add_argument("--samplers", default=",".join(n for n in SAMPLERS if n != "unipc-bh1"))
    args = parser.parse_args()

    step_dir = args.run
    if (args.run / "latest").is_file():
        step_dir = args.run / (args.run / "latest").read_text().strip()
    unet = UNet2DModel.from_pretrained(step_dir / args.weights).eval()
    if unet.config.num_class_embeds is not None:
        sys.exit("the round trip samples unconditional runs; train one without class embeddings")
    base = DDPMScheduler.from_pretrained(step_dir / "scheduler").config
    size = unet.config.sample_size
    shape = (args.count, unet.config.in_channels, size, size)
    failures = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for seed, name in enumerate(args.samplers.split(",")):
            cls, settings = SAMPLERS[name]
            scheduler = cls.from_config(base, **settings)
            generator = torch.Generator().manual_seed(seed)
            latents = torch.randn(shape, generator=generator)
            scheduler.set_timesteps(args.steps)
            count = len(scheduler.timesteps)
            noise = torch.randn((count,) + shape, generator=generator) if draws_noise(scheduler, {}) else None
            want = diffusers_sample(unet, scheduler, latents, args.steps, noise)

            save_file({"latents": latents.contiguous()}, tmp / "latents.safetensors")
            command = [
                args.diffuse, "sample", "--checkpoint", str(args.run), "--ema", str(args.weights == "ema").lower(),
                "--sampler", name, "--steps", str(args.steps), "--count", str(args.count), "--device", "cpu",
                "--init-noise", str(tmp / "latents.safetensors"), "--out", str(tmp / "grid.png"),
                "--out-tensor", str(tmp / "out.safetensors"),
            ]
            if noise is not None:
                save_file({"noise": noise.contiguous()}, tmp / "noise.safetensors")
                command += ["--noise", str(tmp / "noise.safetensors")]
            result = subprocess.run(command, capture_output=True, text=True)
            if result.returncode != 0:
                failures.append(f"{name}: diffuse failed: {result.stderr.strip()}")
                continue
            got = load_file(tmp / "out.safetensors")["samples"]
            scale = want.abs().max().item()
            worst = (got - want).abs().max().item()
            verdict = "ok" if worst <= 1e-4 * scale else "DIFFERS"
            print(json.dumps({"sampler": name, "steps": count, "worst": worst, "scale": scale, "verdict": verdict}))
            if verdict != "ok":
                failures.append(f"{name}: largest difference {worst:.3e} against magnitude {scale:.3e}")
    if failures:
        print("\n".join(failures), file=sys.stderr)
        sys.exit(1)
    print(f"all {len(args.samplers.split(','))} samplers agree with diffusers")


if __name__ == "__main__":
    main()
