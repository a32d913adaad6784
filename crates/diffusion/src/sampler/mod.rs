//! Reverse-process samplers: turn Gaussian noise into data with a trained [`Denoiser`].
//!
//! Two families, both device-agnostic on [`Tensor`]:
//!
//! - Discrete-time samplers on the training timesteps, one fused kernel pass per step
//!   ([`Tensor::sampler_step`] with [`StepCoefficients`]): [`ddpm()`] (ancestral, fixed small or fixed large variance)
//!   and [`ddim()`] (with stochasticity η).
//! - Noise-level samplers in the σ-parameterisation `x = x0 + σ·ε` (Karras et al. 2022), integrating the probability
//!   flow ODE `dx/dσ = (x − D(x, σ))/σ` or its ancestral SDE: [`euler()`], [`euler_ancestral()`], [`heun()`],
//!   [`dpm_solver_pp_2m()`]. The model is trained on the variance-preserving `x_vp = x/√(1+σ²)` at discrete
//!   timesteps, so [`sigmas::SigmaDenoiser`] rescales its input and maps σ to a fractional timestep by log-σ
//!   interpolation (see [`sigmas`]).
//!
//! [`Sampler`] names any of them and runs it from a seed. All randomness comes from one Philox stream: the starting
//! noise is stream elements `0 .. n` (`n` = elements of the batch), the noise of step `k` (counting from 0) is
//! elements `(k+1)·n .. (k+2)·n`. `docs/samplers.md` states each update rule.

pub mod condition;
pub mod ddim;
pub mod ddpm;
mod discrete;
pub mod dpm_solver;
pub mod euler;
pub mod euler_ancestral;
pub mod guidance;
pub mod heun;
pub mod sigmas;
pub mod threshold;

pub use condition::Condition;
pub use ddim::ddim;
pub use ddpm::ddpm;
pub use diffuse_cpu_kernels::noise::{DdpmVariance, Prediction, StepCoefficients};
pub use dpm_solver::dpm_solver_pp_2m;
pub use euler::euler;
pub use euler_ancestral::euler_ancestral;
pub use guidance::ClassifierFreeGuidance;
pub use heun::heun;
pub use threshold::DynamicThreshold;

use crate::error::{Error, Result};
use crate::schedule::{NoiseSchedule, TimestepSpacing};
use diffuse_tensor::{Device, Tensor};

/// A trained denoising network, as the samplers see it.
pub trait Denoiser {
    /// The network output for the variance-preserving noisy batch `x_t` (dimension 0 = samples) at per-sample
    /// timesteps `t` (training timestep indices as `f64`; the σ-samplers pass fractional ones), under the
    /// conditioning `cond` (class labels, a cross-attention context, or nothing).
    fn predict(&self, x_t: &Tensor, t: &[f64], cond: Condition<'_>) -> Result<Tensor>;

    /// What [`Denoiser::predict`] returns: ε, x0 or v.
    fn prediction(&self) -> Prediction;
}

/// Settings shared by every sampler.
#[derive(Clone, Debug, PartialEq)]
pub struct SamplerOptions {
    /// Number of denoising steps `N` (Heun calls the model about twice per step).
    pub steps: usize,
    /// Which training timesteps the discrete samplers visit, and the σ-samplers too unless `karras_sigmas`.
    pub spacing: TimestepSpacing,
    /// Shift of `leading` spacing (diffusers' `steps_offset`).
    pub steps_offset: usize,
    /// σ-samplers only: step through the Karras ramp (ρ = 7) between the schedule's smallest and largest σ
    /// instead of the σ of the spaced timesteps.
    pub karras_sigmas: bool,
    /// Clip every predicted x0 to `[−r, r]` (diffusers' `clip_sample_range` when `clip_sample`).
    pub clip_sample_range: Option<f64>,
    /// Dynamic thresholding of every predicted x0 (see [`threshold`]); when set, it is used instead of
    /// `clip_sample_range`.
    pub dynamic_threshold: Option<DynamicThreshold>,
    /// The Philox stream of all noise the sampler draws.
    pub seed: u64,
}

impl Default for SamplerOptions {
    fn default() -> Self {
        Self {
            steps: 50,
            spacing: TimestepSpacing::Trailing,
            steps_offset: 0,
            karras_sigmas: true,
            clip_sample_range: None,
            dynamic_threshold: None,
            seed: 0,
        }
    }
}

/// One of the samplers of this module.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Sampler {
    Ddpm(DdpmVariance),
    Ddim { eta: f64 },
    Euler,
    EulerAncestral,
    Heun,
    DpmSolverPp2m,
}

impl Sampler {
    /// Draws the starting noise of `shape` from stream `(options.seed, 0)` on `device` and samples from it.
    pub fn sample(
        self,
        model: &dyn Denoiser,
        schedule: &NoiseSchedule,
        options: &SamplerOptions,
        shape: &[usize],
        device: Device,
        cond: Condition<'_>,
    ) -> Result<Tensor> {
        let noise = Tensor::randn(shape, options.seed, 0, device)?;
        self.sample_from(model, schedule, options, &noise, cond)
    }

    /// Samples starting from the given standard normal `noise` (the variance-preserving `x_T`).
    pub fn sample_from(
        self,
        model: &dyn Denoiser,
        schedule: &NoiseSchedule,
        options: &SamplerOptions,
        noise: &Tensor,
        cond: Condition<'_>,
    ) -> Result<Tensor> {
        match self {
            Sampler::Ddpm(variance) => ddpm(model, schedule, options, variance, noise, cond),
            Sampler::Ddim { eta } => ddim(model, schedule, options, eta, noise, cond),
            Sampler::Euler => euler(model, schedule, options, noise, cond),
            Sampler::EulerAncestral => euler_ancestral(model, schedule, options, noise, cond),
            Sampler::Heun => heun(model, schedule, options, noise, cond),
            Sampler::DpmSolverPp2m => dpm_solver_pp_2m(model, schedule, options, noise, cond),
        }
    }
}

/// The batch size of `x`, and a check that the conditioning has one entry per sample.
fn batch_of(x: &Tensor, cond: Condition<'_>) -> Result<usize> {
    let batch = match x.shape().first() {
        Some(&b) => b,
        None => {
            return Err(Error::sampler(
                "noise",
                "must be a batch tensor (dimension 0 = samples), got a scalar",
            ))
        }
    };
    cond.check_batch(batch)?;
    Ok(batch)
}

/// The stream offset of the noise drawn at step `step` for a batch of `numel` elements.
fn step_offset(step: usize, numel: usize) -> Result<u64> {
    (step as u64 + 1)
        .checked_mul(numel as u64)
        .ok_or_else(|| Error::sampler("steps", format!("step {step} noise offset overflows u64")))
}

/// The clip bound as the kernels take it, refusing a negative or NaN range.
fn clip_bound(options: &SamplerOptions) -> Result<Option<f32>> {
    match options.clip_sample_range {
        Some(r) if r.is_nan() || r < 0.0 => Err(Error::sampler(
            "clip_sample_range",
            format!("{r} must be ≥ 0"),
        )),
        Some(r) => Ok(Some(r as f32)),
        None => Ok(None),
    }
}
