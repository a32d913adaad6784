//! Euler ancestral sampling (k-diffusion's `sample_euler_ancestral`, diffusers' `EulerAncestralDiscreteScheduler`):
//! each step from σ to σ_next is split into a deterministic Euler step down to
//! `σ_down = √(σ_next² − σ_up²)` and fresh noise of standard deviation
//! `σ_up = min(σ_next, √(σ_next²·(σ² − σ_next²)/σ²))`, so the marginal noise level is σ_next again:
//! `x ← x + (σ_down − σ)·(x − D(x, σ))/σ + σ_up·z`. This is the DDPM posterior step written in σ-space.

use super::sigmas::{initial_x, sampling_sigmas, SigmaDenoiser};
use super::{step_offset, Condition, Denoiser, SamplerOptions};
use crate::error::Result;
use crate::schedule::NoiseSchedule;
use diffuse_tensor::Tensor;

/// Stochastic Euler ancestral sampling from the variance-preserving noise `noise` (= `x_T`); the noise of step `k`
/// is stream `(options.seed, (k+1)·numel)`.
pub fn euler_ancestral(
    model: &dyn Denoiser,
    schedule: &NoiseSchedule,
    options: &SamplerOptions,
    noise: &Tensor,
    cond: Condition<'_>,
) -> Result<Tensor> {
    let denoiser = SigmaDenoiser::new(model, schedule, options, noise, cond)?;
    let sigmas = sampling_sigmas(schedule, options)?;
    let mut x = initial_x(noise, sigmas[0])?;
    for (step, pair) in sigmas.windows(2).enumerate() {
        let (sigma, sigma_next) = (pair[0], pair[1]);
        let sigma_up = (sigma_next * sigma_next * (sigma * sigma - sigma_next * sigma_next)
            / (sigma * sigma))
            .sqrt()
            .min(sigma_next);
        let sigma_down = (sigma_next * sigma_next - sigma_up * sigma_up)
            .max(0.0)
            .sqrt();
        let slope = denoiser.slope(&x, sigma)?;
        x = x.add(&slope.mul_scalar((sigma_down - sigma) as f32)?)?;
        if sigma_up > 0.0 {
            let offset = step_offset(step, x.numel())?;
            let z = Tensor::randn(x.shape(), options.seed, offset, x.device())?;
            x = x.add(&z.mul_scalar(sigma_up as f32)?)?;
        }
    }
    Ok(x)
}
