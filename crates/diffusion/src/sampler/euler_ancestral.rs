//! Euler ancestral sampling (k-diffusion's `sample_euler_ancestral`), as diffusers' `EulerAncestralDiscreteScheduler`:
//! each step from σ to σ_next is split into a deterministic Euler step down to `σ_down = √(σ_next² − σ_up²)` and fresh
//! noise of standard deviation `σ_up = √(σ_next²·(σ² − σ_next²)/σ²)`, so the marginal noise level is σ_next again:
//! `x ← x + (σ_down − σ)·(x − D(x, σ))/σ + σ_up·z`. This is the DDPM posterior step written in σ-space. Noise is
//! drawn at every step (σ_up = 0 on the last, to σ = 0).

use super::grid::{k_grid, SigmaInterpolation};
use super::k_diffusion::{init_noise_sigma, SigmaDenoiser};
use super::noise::StepNoise;
use super::{Condition, Denoiser, SamplerOptions, Start};
use crate::error::Result;
use crate::schedule::NoiseSchedule;
use diffuse_tensor::Tensor;

/// Stochastic Euler ancestral sampling from the unit normal `noise` (scaled here by `init_noise_sigma`).
pub fn euler_ancestral(
    model: &dyn Denoiser,
    schedule: &NoiseSchedule,
    options: &SamplerOptions,
    start: Start<'_>,
    cond: Condition<'_>,
) -> Result<Tensor> {
    let grid = k_grid(schedule, options, SigmaInterpolation::Linear, false)?;
    let step_noise = StepNoise::new(
        options.seed,
        options.step_noise.as_ref(),
        grid.timesteps.len(),
        start.tensor(),
        true,
    )?;
    let denoiser = SigmaDenoiser {
        model,
        cond,
        limit: options.x0_limit(),
    };
    let mut x = start.initial(
        init_noise_sigma(&grid, options.spacing),
        grid.timesteps.len(),
    )?;
    for (step, &t) in grid.timesteps.iter().enumerate().skip(start.first_step()) {
        let (sigma, sigma_next) = (grid.sigmas[step] as f32, grid.sigmas[step + 1] as f32);
        let sigma_up = (sigma_next * sigma_next * (sigma * sigma - sigma_next * sigma_next)
            / (sigma * sigma))
            .max(0.0)
            .sqrt();
        let sigma_down = (sigma_next * sigma_next - sigma_up * sigma_up)
            .max(0.0)
            .sqrt();
        let slope = denoiser.slope(&x, sigma, t)?;
        x = x.add(&slope.mul_scalar(sigma_down - sigma)?)?;
        let z = step_noise.draw(step, &x)?;
        x = x.add(&z.mul_scalar(sigma_up)?)?;
    }
    Ok(x)
}
