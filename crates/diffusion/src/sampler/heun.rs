//! Heun's method (the explicit trapezoidal rule) on `dx/dσ = (x − D(x, σ))/σ` (Karras et al. 2022, Algorithm 1), as
//! diffusers' `HeunDiscreteScheduler`: an Euler predictor `x̃ = x + (σ_next − σ)·d` with `d = (x − D(x, σ))/σ`, then
//! the slope there, `d' = (x̃ − D(x̃, σ_next))/σ_next`, and the corrected step `x ← x + (σ_next − σ)·(d + d')/2`.
//! Second order, two network calls per step (`2N − 1` in all); the last step, to σ = 0 where `d'` is undefined,
//! stays an Euler step.

use super::grid::{k_grid, SigmaInterpolation};
use super::k_diffusion::{init_noise_sigma, SigmaDenoiser};
use super::{Condition, Denoiser, SamplerOptions, Start};
use crate::error::{Error, Result};
use crate::schedule::NoiseSchedule;
use diffuse_tensor::Tensor;

/// Deterministic Heun sampling from the unit normal `noise` (scaled here by `init_noise_sigma`).
pub fn heun(
    model: &dyn Denoiser,
    schedule: &NoiseSchedule,
    options: &SamplerOptions,
    start: Start<'_>,
    cond: Condition<'_>,
) -> Result<Tensor> {
    if options.step_noise.is_some() {
        return Err(Error::sampler(
            "step noise",
            "Heun is deterministic and draws no noise",
        ));
    }
    let grid = k_grid(schedule, options, SigmaInterpolation::Linear, false)?;
    let denoiser = SigmaDenoiser {
        model,
        cond,
        limit: options.x0_limit(),
    };
    let n = grid.timesteps.len();
    let mut x = start.initial(init_noise_sigma(&grid, options.spacing), n)?;
    for i in start.first_step()..n {
        let (sigma, sigma_next) = (grid.sigmas[i] as f32, grid.sigmas[i + 1] as f32);
        let dt = sigma_next - sigma;
        let slope = denoiser.slope(&x, sigma, grid.timesteps[i])?;
        let predictor = x.add(&slope.mul_scalar(dt)?)?;
        if i + 1 == n {
            x = predictor;
            break;
        }
        let slope_next = denoiser.slope(&predictor, sigma_next, grid.timesteps[i + 1])?;
        let mean_slope = slope.add(&slope_next)?.mul_scalar(0.5)?;
        x = x.add(&mean_slope.mul_scalar(dt)?)?;
    }
    Ok(x)
}
