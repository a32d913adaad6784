//! Euler's method on the probability flow ODE `dx/dσ = (x − D(x, σ))/σ` (Karras et al. 2022, Algorithm 1 without its
//! second-order correction; diffusers' `EulerDiscreteScheduler`): `x ← x + (σ_next − σ)·(x − D(x, σ))/σ`.
//! First order: halving the step size halves the error. The last step, to σ = 0, lands exactly on `D(x, σ)`.

use super::sigmas::{initial_x, sampling_sigmas, SigmaDenoiser};
use super::{Condition, Denoiser, SamplerOptions};
use crate::error::Result;
use crate::schedule::NoiseSchedule;
use diffuse_tensor::Tensor;

/// Deterministic Euler sampling from the variance-preserving noise `noise` (= `x_T`).
pub fn euler(
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
        let slope = denoiser.slope(&x, sigma)?;
        x = x.add(&slope.mul_scalar((sigma_next - sigma) as f32)?)?;
    }
    Ok(x)
}
