//! DDIM sampling (Song et al. 2021, eq. 12), as diffusers' `DDIMScheduler`.
//!
//! From `x_t`: predict `x̂0` and the noise it implies, `ε̂ = (x_t − √ᾱ_t·x̂0)/√(1−ᾱ_t)`; then
//! `x_prev = √ᾱ_prev·x̂0 + √(1−ᾱ_prev−σ²)·ε̂ + σ·z` with `σ = η·√((1−ᾱ_prev)/(1−ᾱ_t))·√(1−ᾱ_t/ᾱ_prev)`.
//! η = 0 is the deterministic DDIM ODE solver; η = 1 has DDPM's posterior variance.
//!
//! With `clip_sample_range`, ε̂ is recomputed from the clipped x̂0 (the fused step works on x_t and x̂0 only), so the
//! pair stays consistent with x_t; diffusers' `DDIMScheduler` keeps the unclipped ε̂ instead.

use super::{discrete, Condition, Denoiser, SamplerOptions, StepCoefficients};
use crate::error::Result;
use crate::schedule::NoiseSchedule;
use diffuse_tensor::Tensor;

/// DDIM sampling with stochasticity `eta ≥ 0` from the variance-preserving noise `noise` (= `x_T`).
pub fn ddim(
    model: &dyn Denoiser,
    schedule: &NoiseSchedule,
    options: &SamplerOptions,
    eta: f64,
    noise: &Tensor,
    cond: Condition<'_>,
) -> Result<Tensor> {
    let target = model.prediction();
    discrete::run(model, schedule, options, noise, cond, |ab, ab_prev| {
        Ok(StepCoefficients::ddim(ab, ab_prev, eta, target)?)
    })
}
