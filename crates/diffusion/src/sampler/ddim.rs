//! DDIM sampling (Song et al. 2021, eq. 12), as diffusers' `DDIMScheduler`.
//!
//! At each visited timestep `t` the network gives x̂0 and the noise ε̂ (one of them directly, the other through
//! `x_t = √ᾱ_t·x̂0 + √(1−ᾱ_t)·ε̂`); x̂0 alone is then clipped or thresholded if asked. The step re-noises x̂0 to the
//! previous level along ε̂:
//!
//! `x_prev = √ᾱ_prev·x̂0 + √(1 − ᾱ_prev − σ²)·ε̂ + σ·z`,   `σ = η·√((1−ᾱ_prev)/(1−ᾱ_t))·√(1 − ᾱ_t/ᾱ_prev)`.
//!
//! η = 0 is the deterministic DDIM ODE solver, η = 1 has DDPM's posterior variance. As in diffusers, the previous
//! level is `prev = t − ⌊T/N⌋` (for `trailing` and `linspace` spacings this need not be the next visited timestep), and
//! below 0 it is `ᾱ_prev = 1` (`set_alpha_to_one`) or `ᾱ_0`. ε̂ is the network's, before clipping; with
//! `use_clipped_model_output` it is recomputed from the clipped x̂0 instead, so the pair stays consistent with x_t.

use super::noise::StepNoise;
use super::prediction::{eps_from, eps_of_x0, lin, predict, x0_from};
use super::{Condition, Denoiser, SamplerOptions, Start};
use crate::error::{Error, Result};
use crate::schedule::{timesteps, NoiseSchedule};
use diffuse_tensor::Tensor;

/// DDIM's own settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Ddim {
    /// Stochasticity η ≥ 0 (a call argument of diffusers' `step`, 0 in its pipelines).
    pub eta: f64,
    /// `ᾱ_prev` below timestep 0: 1 when true, else `ᾱ_0`.
    pub set_alpha_to_one: bool,
    /// Recompute ε̂ from the clipped x̂0 (diffusers' `use_clipped_model_output`).
    pub use_clipped_model_output: bool,
}

impl Default for Ddim {
    fn default() -> Self {
        Self {
            eta: 0.0,
            set_alpha_to_one: true,
            use_clipped_model_output: false,
        }
    }
}

/// DDIM sampling from the unit normal `noise` (= `x_T`; DDIM's initial noise scale is 1).
pub fn ddim(
    model: &dyn Denoiser,
    schedule: &NoiseSchedule,
    options: &SamplerOptions,
    settings: &Ddim,
    start: Start<'_>,
    cond: Condition<'_>,
) -> Result<Tensor> {
    let eta = settings.eta;
    if !(eta >= 0.0 && eta.is_finite()) {
        return Err(Error::sampler(
            "eta",
            format!("{eta} must be finite and ≥ 0"),
        ));
    }
    let limit = options.x0_limit();
    let total = schedule.len();
    let visited = timesteps(options.spacing, total, options.steps, options.steps_offset)?;
    let step_noise = StepNoise::new(
        options.seed,
        options.step_noise.as_ref(),
        visited.len(),
        start.tensor(),
        eta > 0.0,
    )?;
    let stride = total / options.steps;
    let final_alpha_bar = if settings.set_alpha_to_one {
        1.0
    } else {
        schedule.alpha_bar(0)? as f32
    };
    let eta = eta as f32;
    let mut x = start.initial(1.0, visited.len())?;
    for (step, &t) in visited.iter().enumerate().skip(start.first_step()) {
        // diffusers' float32 scalars, in its order of operations.
        let alpha_bar = schedule.alpha_bar(t)? as f32;
        let alpha_bar_prev = match t.checked_sub(stride) {
            Some(prev) => schedule.alpha_bar(prev)? as f32,
            None => final_alpha_bar,
        };
        let (a, s) = (alpha_bar.sqrt(), (1.0 - alpha_bar).sqrt());
        let out = predict(model, &x, t as f64, cond)?;
        let prediction = model.prediction();
        let x0 = x0_from(prediction, &out.prediction, &x, a, s)?;
        let mut eps = eps_from(prediction, &out.prediction, &x, a, s)?;
        let x0 = limit.apply(x0)?;
        if settings.use_clipped_model_output {
            eps = eps_of_x0(&x0, &x, a, s)?;
        }
        let variance =
            (1.0 - alpha_bar_prev) / (1.0 - alpha_bar) * (1.0 - alpha_bar / alpha_bar_prev);
        let sigma = eta * variance.sqrt();
        // 1 − ᾱ_prev − σ² ≥ 0 for η ≤ 1 up to rounding; larger η leaves no deterministic part (diffusers: NaN).
        let direction = (1.0 - alpha_bar_prev - sigma * sigma).max(0.0).sqrt();
        x = lin(alpha_bar_prev.sqrt(), &x0, direction, &eps)?;
        if eta > 0.0 {
            let z = step_noise.draw(step, &x)?;
            x = x.add(&z.mul_scalar(sigma)?)?;
        }
    }
    Ok(x)
}
