//! Reverse-process samplers: turn Gaussian noise into data with a trained [`Denoiser`], each as the diffusers
//! scheduler of the same name computes it (same timesteps, noise levels, updates and quirks; `docs/samplers.md`
//! states every update rule and where diffuse offers another choice).
//!
//! - On the training timesteps, in the variance-preserving view `x_t = √ᾱ_t·x0 + √(1−ᾱ_t)·ε`: [`ddpm()`] (ancestral,
//!   with fixed or learned variance), [`ddim()`] (with stochasticity η), [`pndm()`] (pseudo Runge–Kutta and linear
//!   multistep).
//! - In the σ-parameterisation `x = x0 + σ·ε` (Karras et al. 2022), integrating the probability flow ODE
//!   `dx/dσ = (x − D(x, σ))/σ` or its ancestral SDE: [`euler()`], [`euler_ancestral()`], [`heun()`], [`lms()`].
//! - Exponential integrators in log-SNR: [`dpm_solver()`] (DPM-Solver and DPM-Solver++, orders 1–3, and their SDE
//!   forms) and [`unipc()`] (UniPC's predictor–corrector, bh1 and bh2, orders 1–3).
//!
//! [`Sampler`] names any of them with its own settings, [`SamplerOptions`] holds what they share, and
//! [`scheduler::Scheduler`] builds both from a diffusers `scheduler_config.json`. Every sampler is written in tensor
//! operations, so it runs on any device, and calls the model through [`Denoiser`], so it runs guided
//! ([`ClassifierFreeGuidance`]) as well. Randomness comes from one Philox stream per seed: the starting noise is
//! stream elements `0 .. n` (`n` = elements of the batch), the noise of step `k` (counting from 0) elements
//! `(k+1)·n .. (k+2)·n`, unless the caller gives the step noise ([`noise`]).

pub mod condition;
pub mod ddim;
pub mod ddpm;
pub mod dpm_solver;
pub mod euler;
pub mod euler_ancestral;
pub mod grid;
pub mod guidance;
pub mod heun;
pub mod k_diffusion;
pub mod lms;
pub mod named;
pub mod noise;
pub mod pndm;
pub mod prediction;
pub mod scheduler;
pub mod sigmas;
pub mod start;
pub mod threshold;
pub mod unipc;

pub use condition::Condition;
pub use ddim::{ddim, Ddim};
pub use ddpm::ddpm;
pub use diffuse_cpu_kernels::noise::Prediction;
pub use dpm_solver::{dpm_solver, DpmAlgorithm, DpmSolver, DpmSolverType};
pub use euler::{euler, Euler};
pub use euler_ancestral::euler_ancestral;
pub use grid::{FinalSigma, SigmaInterpolation, SigmaRange, SigmaSchedule, SigmaSpacing};
pub use guidance::ClassifierFreeGuidance;
pub use heun::heun;
pub use lms::lms;
pub use pndm::{pndm, Pndm};
pub use prediction::X0Limit;
pub use scheduler::Scheduler;
pub use start::{NoiseLevel, Start, StateSpace};
pub use threshold::DynamicThreshold;
pub use unipc::{unipc, UniPc, UniPcVariant};

use crate::error::{Error, Result};
use crate::schedule::{NoiseSchedule, TimestepSpacing, VarianceType};
use diffuse_tensor::{Device, Tensor};

/// A trained denoising network, as the samplers see it.
pub trait Denoiser {
    /// The network output for the variance-preserving noisy batch `x_t` (dimension 0 = samples) at per-sample
    /// timesteps `t` (training timestep indices as `f64`; the σ-samplers pass fractional ones), under the
    /// conditioning `cond` (class labels, a cross-attention context, or nothing). A network with a learned
    /// variance returns twice the channels of `x_t` (dimension 1): the prediction, then the variance.
    fn predict(&self, x_t: &Tensor, t: &[f64], cond: Condition<'_>) -> Result<Tensor>;

    /// What [`Denoiser::predict`] returns: ε, x0 or v.
    fn prediction(&self) -> Prediction;
}

/// Settings shared by every sampler (each reads those that apply to it).
#[derive(Clone, Debug)]
pub struct SamplerOptions {
    /// Number of denoising steps `N` (Heun calls the model `2N − 1` times, PNDM with PRK steps `N + 9`).
    pub steps: usize,
    /// Which training timesteps are visited (diffusers' `timestep_spacing`).
    pub spacing: TimestepSpacing,
    /// Shift of `leading` spacing (diffusers' `steps_offset`).
    pub steps_offset: usize,
    /// How the σ-samplers (Euler, Euler ancestral, Heun, LMS, DPM-Solver, UniPC) choose their noise levels.
    pub sigmas: SigmaSchedule,
    /// Clip every predicted x0 to `[−r, r]` (diffusers' `clip_sample_range` when `clip_sample`).
    pub clip_sample_range: Option<f64>,
    /// Dynamic thresholding of every predicted x0 (see [`threshold`]); when set, it is used instead of
    /// `clip_sample_range`.
    pub dynamic_threshold: Option<DynamicThreshold>,
    /// The Philox stream of all noise the sampler draws.
    pub seed: u64,
    /// The stochastic samplers' fresh noise, one slice per step (`[steps, …sample shape]`), instead of the seed's
    /// (see [`noise`]).
    pub step_noise: Option<Tensor>,
}

impl Default for SamplerOptions {
    /// 50 steps with diffusers' `DDPMScheduler` defaults: `leading` spacing, no offset, the σ of the spaced
    /// timesteps, no clipping or thresholding.
    fn default() -> Self {
        Self {
            steps: 50,
            spacing: TimestepSpacing::Leading,
            steps_offset: 0,
            sigmas: SigmaSchedule::default(),
            clip_sample_range: None,
            dynamic_threshold: None,
            seed: 0,
            step_noise: None,
        }
    }
}

impl SamplerOptions {
    /// How x̂0 is kept in range.
    pub fn x0_limit(&self) -> X0Limit {
        X0Limit {
            clip: self.clip_sample_range,
            threshold: self.dynamic_threshold,
        }
    }
}

/// One of the samplers of this module, with its own settings. Each is the diffusers scheduler class
/// [`Sampler::class_name`] names.
#[derive(Clone, Debug, PartialEq)]
pub enum Sampler {
    /// DDPM ancestral sampling with its reverse-step variance.
    Ddpm {
        variance: VarianceType,
    },
    Ddim(Ddim),
    Pndm(Pndm),
    Euler(Euler),
    EulerAncestral,
    Heun,
    /// Linear multistep of the given order (diffusers: 4).
    Lms {
        order: usize,
    },
    DpmSolver(DpmSolver),
    UniPc(UniPc),
}

impl Sampler {
    /// The diffusers scheduler class this sampler is.
    pub fn class_name(&self) -> &'static str {
        match self {
            Sampler::Ddpm { .. } => "DDPMScheduler",
            Sampler::Ddim(_) => "DDIMScheduler",
            Sampler::Pndm(_) => "PNDMScheduler",
            Sampler::Euler(_) => "EulerDiscreteScheduler",
            Sampler::EulerAncestral => "EulerAncestralDiscreteScheduler",
            Sampler::Heun => "HeunDiscreteScheduler",
            Sampler::Lms { .. } => "LMSDiscreteScheduler",
            Sampler::DpmSolver(_) => "DPMSolverMultistepScheduler",
            Sampler::UniPc(_) => "UniPCMultistepScheduler",
        }
    }

    /// Whether it draws fresh noise during the run (and so takes step noise).
    pub fn is_stochastic(&self) -> bool {
        match self {
            Sampler::Ddpm { .. } | Sampler::EulerAncestral => true,
            Sampler::Ddim(ddim) => ddim.eta > 0.0,
            Sampler::DpmSolver(dpm) => dpm.algorithm.is_sde(),
            _ => false,
        }
    }

    /// Whether it steps through noise levels σ (and so reads [`SamplerOptions::sigmas`]).
    pub fn uses_sigmas(&self) -> bool {
        !matches!(
            self,
            Sampler::Ddpm { .. } | Sampler::Ddim(_) | Sampler::Pndm(_)
        )
    }

    /// The timesteps at which a run calls the network, in order (fractional for the k-diffusion-style samplers;
    /// Heun's inner timesteps twice, PNDM's PRK steps four times).
    pub fn model_timesteps(
        &self,
        schedule: &NoiseSchedule,
        options: &SamplerOptions,
    ) -> Result<Vec<f64>> {
        let whole = |ts: Vec<usize>| ts.into_iter().map(|t| t as f64).collect::<Vec<f64>>();
        Ok(match self {
            Sampler::Ddpm { .. } | Sampler::Ddim(_) => whole(crate::schedule::timesteps(
                options.spacing,
                schedule.len(),
                options.steps,
                options.steps_offset,
            )?),
            Sampler::Pndm(settings) => pndm::model_timesteps(schedule, options, settings)?,
            Sampler::Euler(settings) => {
                grid::k_grid(
                    schedule,
                    options,
                    settings.interpolation,
                    settings.continuous_timesteps,
                )?
                .timesteps
            }
            Sampler::EulerAncestral | Sampler::Lms { .. } => {
                grid::k_grid(schedule, options, SigmaInterpolation::Linear, false)?.timesteps
            }
            Sampler::Heun => {
                let t =
                    grid::k_grid(schedule, options, SigmaInterpolation::Linear, false)?.timesteps;
                let mut calls = vec![t[0]];
                calls.extend(t[1..].iter().flat_map(|&t| [t, t]));
                calls
            }
            Sampler::DpmSolver(settings) => {
                grid::multistep_grid(
                    schedule,
                    options,
                    grid::Multistep::DpmSolver {
                        lambda_min_clipped: settings.lambda_min_clipped,
                        truncate_ramp_timesteps: settings.truncate_ramp_timesteps,
                    },
                )?
                .timesteps
            }
            Sampler::UniPc(_) => {
                grid::multistep_grid(schedule, options, grid::Multistep::UniPc)?.timesteps
            }
        })
    }

    /// Draws the starting noise of `shape` from stream `(options.seed, 0)` on `device` and samples from it.
    pub fn sample(
        &self,
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

    /// Samples starting from the given unit normal `noise` (the latents of a diffusers pipeline; the σ-samplers
    /// scale it by their initial noise level, as diffusers' `init_noise_sigma`).
    pub fn sample_from(
        &self,
        model: &dyn Denoiser,
        schedule: &NoiseSchedule,
        options: &SamplerOptions,
        noise: &Tensor,
        cond: Condition<'_>,
    ) -> Result<Tensor> {
        self.run(model, schedule, options, Start::Noise(noise), cond)
    }

    /// Runs from `start`: unit normal latents, or the sampler's state at one of its steps (see [`start`]).
    pub fn run(
        &self,
        model: &dyn Denoiser,
        schedule: &NoiseSchedule,
        options: &SamplerOptions,
        start: Start<'_>,
        cond: Condition<'_>,
    ) -> Result<Tensor> {
        batch_of(start.tensor(), cond)?;
        options.x0_limit().validate()?;
        match self {
            Sampler::Ddpm { variance } => ddpm(model, schedule, options, *variance, start, cond),
            Sampler::Ddim(settings) => ddim(model, schedule, options, settings, start, cond),
            Sampler::Pndm(settings) => pndm(model, schedule, options, settings, start, cond),
            Sampler::Euler(settings) => euler(model, schedule, options, settings, start, cond),
            Sampler::EulerAncestral => euler_ancestral(model, schedule, options, start, cond),
            Sampler::Heun => heun(model, schedule, options, start, cond),
            Sampler::Lms { order } => lms(model, schedule, options, *order, start, cond),
            Sampler::DpmSolver(settings) => {
                dpm_solver(model, schedule, options, settings, start, cond)
            }
            Sampler::UniPc(settings) => unipc(model, schedule, options, settings, start, cond),
        }
    }

    /// The noise level at which each step of a run begins (one per step, in order), in the sampler's own state
    /// space: the state a run started at step `k` with [`Start::State`] holds.
    pub fn step_levels(
        &self,
        schedule: &NoiseSchedule,
        options: &SamplerOptions,
    ) -> Result<Vec<NoiseLevel>> {
        let vp = |ts: Vec<usize>| -> Result<Vec<NoiseLevel>> {
            ts.into_iter()
                .map(|t| {
                    Ok(NoiseLevel::of_alpha_bar(
                        t as f64,
                        schedule.alpha_bar(t)?,
                        StateSpace::VariancePreserving,
                    ))
                })
                .collect()
        };
        let of_grid = |grid: grid::SigmaGrid, space: StateSpace| {
            grid.timesteps
                .iter()
                .zip(&grid.sigmas)
                .map(|(&t, &sigma)| NoiseLevel::of_sigma(t, sigma, space))
                .collect()
        };
        let visited = || {
            crate::schedule::timesteps(
                options.spacing,
                schedule.len(),
                options.steps,
                options.steps_offset,
            )
        };
        Ok(match self {
            Sampler::Ddpm { .. } | Sampler::Ddim(_) | Sampler::Pndm(_) => vp(visited()?)?,
            Sampler::Euler(settings) => of_grid(
                grid::k_grid(
                    schedule,
                    options,
                    settings.interpolation,
                    settings.continuous_timesteps,
                )?,
                StateSpace::Sigma,
            ),
            Sampler::EulerAncestral | Sampler::Heun | Sampler::Lms { .. } => of_grid(
                grid::k_grid(schedule, options, SigmaInterpolation::Linear, false)?,
                StateSpace::Sigma,
            ),
            Sampler::DpmSolver(settings) => of_grid(
                grid::multistep_grid(
                    schedule,
                    options,
                    grid::Multistep::DpmSolver {
                        lambda_min_clipped: settings.lambda_min_clipped,
                        truncate_ramp_timesteps: settings.truncate_ramp_timesteps,
                    },
                )?,
                StateSpace::VariancePreserving,
            ),
            Sampler::UniPc(_) => of_grid(
                grid::multistep_grid(schedule, options, grid::Multistep::UniPc)?,
                StateSpace::VariancePreserving,
            ),
        })
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
