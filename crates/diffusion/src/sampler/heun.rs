//! Heun's method (the explicit trapezoidal rule) on `dx/dσ = (x − D(x, σ))/σ` (Karras et al. 2022, Algorithm 1;
//! diffusers' `HeunDiscreteScheduler`): an Euler predictor `x̃ = x + (σ_next − σ)·d` with `d = (x − D(x, σ))/σ`, then
//! the slope there, `d' = (x̃ − D(x̃, σ_next))/σ_next`, and the corrected step `x ← x + (σ_next − σ)·(d + d')/2`.
//! Second order, two model calls per step; the last step, to σ = 0 where `d'` is undefined, stays an Euler step.

use super::sigmas::{initial_x, sampling_sigmas, SigmaDenoiser};
use super::{Condition, Denoiser, SamplerOptions};
use crate::error::Result;
use crate::schedule::NoiseSchedule;
use diffuse_tensor::Tensor;

/// Deterministic Heun sampling from the variance-preserving noise `noise` (= `x_T`).
pub fn heun(
    model: &dyn Denoiser,
    schedule: &NoiseSchedule,
    options: &SamplerOptions,
    noise: &Tensor,
    cond: Condition<'_>,
) -> Result<Tensor> {
    let denoiser = SigmaDenoiser::new(model, schedule, options, noise, cond)?;
    let sigmas = sampling_sigmas(schedule, options)?;
    let mut x = initial_x(noise, sigmas[0])?;
    for pair in sigmas.windows(2) {
        let (sigma, sigma_next) = (pair[0], pair[1]);
        let dt = (sigma_next - sigma) as f32;
        let slope = denoiser.slope(&x, sigma)?;
        let predictor = x.add(&slope.mul_scalar(dt)?)?;
        if sigma_next == 0.0 {
            x = predictor;
            continue;
        }
        let slope_next = denoiser.slope(&predictor, sigma_next)?;
        let mean_slope = slope.add(&slope_next)?.mul_scalar(0.5)?;
        x = x.add(&mean_slope.mul_scalar(dt)?)?;
    }
    Ok(x)
}
