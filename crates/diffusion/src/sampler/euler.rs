//! Euler's method on the probability flow ODE `dx/dσ = (x − D(x, σ))/σ` (Karras et al. 2022, Algorithm 1 without its
//! second-order correction), as diffusers' `EulerDiscreteScheduler`: `x ← x + (σ_next − σ)·(x − D(x, σ))/σ`.
//! First order: halving the step size halves the error. A last step to σ = 0 lands exactly on `D(x, σ)`.
//!
//! diffusers' Euler also offers `interpolation_type = "log_linear"` (noise levels evenly spaced in `log σ`, see
//! [`super::grid::k_grid`]) and `timestep_type = "continuous"` (the network is called at `t = ¼·ln σ`, for models
//! trained in continuous time with v-prediction).

use super::grid::{k_grid, SigmaInterpolation};
use super::k_diffusion::{init_noise_sigma, SigmaDenoiser};
use super::{Condition, Denoiser, SamplerOptions, Start};
use crate::error::{Error, Result};
use crate::schedule::NoiseSchedule;
use diffuse_tensor::Tensor;

/// Euler's own settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Euler {
    pub interpolation: SigmaInterpolation,
    /// Call the network at `t = ¼·ln σ` (diffusers' `timestep_type = "continuous"`, with v-prediction only).
    pub continuous_timesteps: bool,
}

impl Default for Euler {
    fn default() -> Self {
        Self {
            interpolation: SigmaInterpolation::Linear,
            continuous_timesteps: false,
        }
    }
}

/// Deterministic Euler sampling from the unit normal `noise` (the latents, scaled here by `init_noise_sigma`).
pub fn euler(
    model: &dyn Denoiser,
    schedule: &NoiseSchedule,
    options: &SamplerOptions,
    settings: &Euler,
    start: Start<'_>,
    cond: Condition<'_>,
) -> Result<Tensor> {
    if options.step_noise.is_some() {
        return Err(Error::sampler(
            "step noise",
            "Euler is deterministic and draws no noise",
        ));
    }
    let grid = k_grid(
        schedule,
        options,
        settings.interpolation,
        settings.continuous_timesteps,
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
    for (i, &t) in grid.timesteps.iter().enumerate().skip(start.first_step()) {
        let (sigma, sigma_next) = (grid.sigmas[i] as f32, grid.sigmas[i + 1] as f32);
        let slope = denoiser.slope(&x, sigma, t)?;
        x = x.add(&slope.mul_scalar(sigma_next - sigma)?)?;
    }
    Ok(x)
}
