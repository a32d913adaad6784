//! DDPM ancestral sampling (Ho et al. 2020, Algorithm 2, on spaced timesteps as diffusers' `DDPMScheduler`).
//!
//! From `x_t`: predict `x̂0`, then draw `x_prev ~ N(μ̃, σ²)` with the posterior mean
//! `μ̃ = √ᾱ_prev·β_t/(1−ᾱ_t)·x̂0 + √α_t·(1−ᾱ_prev)/(1−ᾱ_t)·x_t`, where `α_t = ᾱ_t/ᾱ_prev` and `β_t = 1 − α_t` span
//! the whole jump between visited timesteps. `σ² = β̃_t = β_t·(1−ᾱ_prev)/(1−ᾱ_t)` (fixed small, the true posterior
//! variance) or `σ² = β_t` (fixed large). The last step adds no noise.

use super::{discrete, Condition, DdpmVariance, Denoiser, SamplerOptions, StepCoefficients};
use crate::error::Result;
use crate::schedule::NoiseSchedule;
use diffuse_tensor::Tensor;

/// DDPM ancestral sampling from the variance-preserving noise `noise` (= `x_T`).
pub fn ddpm(
    model: &dyn Denoiser,
    schedule: &NoiseSchedule,
    options: &SamplerOptions,
    variance: DdpmVariance,
    noise: &Tensor,
    cond: Condition<'_>,
) -> Result<Tensor> {
    let target = model.prediction();
    discrete::run(model, schedule, options, noise, cond, |ab, ab_prev| {
        Ok(StepCoefficients::ddpm(ab, ab_prev, target, variance)?)
    })
}
