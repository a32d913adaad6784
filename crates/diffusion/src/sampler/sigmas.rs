//! The σ-parameterisation and its bridge to a model trained on discrete variance-preserving timesteps.
//!
//! Dividing `x_t = √ᾱ_t·x0 + √(1−ᾱ_t)·ε` by `√ᾱ_t` gives `x = x0 + σ·ε` with `σ_t = √((1−ᾱ_t)/ᾱ_t)`; back again,
//! `x_vp = x/√(1+σ²)` and `ᾱ = 1/(1+σ²)`. The training σ increase with `t`, so a noise level between two of them is
//! mapped to a fractional timestep by linear interpolation in `log σ` ([`sigma_to_timestep`], as diffusers'
//! `_sigma_to_t`); [`timestep_to_sigma`] is its exact inverse, for models defined in continuous time.

use super::{
    batch_of, clip_bound, Condition, Denoiser, DynamicThreshold, Prediction, SamplerOptions,
};
use crate::error::{Error, Result};
use crate::schedule::karras::KARRAS_RHO;
use crate::schedule::{karras_sigmas, timesteps, NoiseSchedule};
use diffuse_tensor::Tensor;

/// `σ_t = √((1−ᾱ_t)/ᾱ_t)` for every training timestep, refusing schedules whose σ are not finite, positive and
/// increasing (a zero-terminal-SNR schedule has `σ_{T−1} = ∞` and cannot be stepped through in σ).
pub fn training_sigmas(schedule: &NoiseSchedule) -> Result<Vec<f64>> {
    let sigmas: Vec<f64> = schedule
        .alphas_cumprod
        .iter()
        .map(|&ab| ((1.0 - ab) / ab).sqrt())
        .collect();
    if let Some(t) = sigmas.iter().position(|s| !(s.is_finite() && *s > 0.0)) {
        return Err(Error::sampler(
            "schedule",
            format!(
                "σ_{t} = {} must be finite and > 0 for σ-samplers",
                sigmas[t]
            ),
        ));
    }
    if let Some(t) = sigmas.windows(2).position(|w| w[1] <= w[0]) {
        return Err(Error::sampler(
            "schedule",
            format!("σ must increase with t, but σ_{} ≥ σ_{}", t, t + 1),
        ));
    }
    Ok(sigmas)
}

/// The fractional timestep of noise level `sigma`: `t = i + w` where `log σ = (1−w)·log σ_i + w·log σ_{i+1}`,
/// clamped to `[0, T−1]`. `sigmas` are [`training_sigmas`].
pub fn sigma_to_timestep(sigmas: &[f64], sigma: f64) -> f64 {
    let last = sigmas.len().saturating_sub(1);
    if sigmas.len() < 2 || sigma <= sigmas[0] {
        return 0.0;
    }
    if sigma >= sigmas[last] {
        return last as f64;
    }
    // First index whose σ exceeds `sigma`; 1 ≤ upper ≤ last here.
    let upper = sigmas.partition_point(|&s| s <= sigma);
    let lower = upper - 1;
    let (lo, hi) = (sigmas[lower].ln(), sigmas[upper].ln());
    lower as f64 + (sigma.ln() - lo) / (hi - lo)
}

/// The noise level at fractional timestep `t`: `exp((1−w)·log σ_i + w·log σ_{i+1})` for `t = i + w`, the inverse of
/// [`sigma_to_timestep`]. `sigmas` are [`training_sigmas`]; `t` is clamped to `[0, T−1]`.
pub fn timestep_to_sigma(sigmas: &[f64], t: f64) -> f64 {
    let last = sigmas.len() - 1;
    let t = t.clamp(0.0, last as f64);
    let lower = (t.floor() as usize).min(last);
    if lower == last {
        return sigmas[last];
    }
    let w = t - lower as f64;
    ((1.0 - w) * sigmas[lower].ln() + w * sigmas[lower + 1].ln()).exp()
}

/// The `N` noise levels a σ-sampler steps through, largest first, followed by a final 0: the Karras ramp from the
/// largest to the smallest training σ, or the training σ of the spaced timesteps.
pub fn sampling_sigmas(schedule: &NoiseSchedule, options: &SamplerOptions) -> Result<Vec<f64>> {
    let table = training_sigmas(schedule)?;
    let mut sigmas = if options.karras_sigmas {
        karras_sigmas(options.steps, table[0], table[table.len() - 1], KARRAS_RHO)?
    } else {
        timesteps(
            options.spacing,
            schedule.len(),
            options.steps,
            options.steps_offset,
        )?
        .into_iter()
        .map(|t| table[t])
        .collect()
    };
    sigmas.push(0.0);
    Ok(sigmas)
}

/// A [`Denoiser`] seen as the σ-space denoiser `D(x, σ) ≈ E[x0 | x]` of Karras et al.
pub struct SigmaDenoiser<'a> {
    model: &'a dyn Denoiser,
    cond: Condition<'a>,
    batch: usize,
    table: Vec<f64>,
    clip: Option<f32>,
    threshold: Option<DynamicThreshold>,
}

impl<'a> SigmaDenoiser<'a> {
    /// Wraps `model` for batches shaped like `like`, with the options' clipping or dynamic thresholding.
    pub fn new(
        model: &'a dyn Denoiser,
        schedule: &NoiseSchedule,
        options: &SamplerOptions,
        like: &Tensor,
        cond: Condition<'a>,
    ) -> Result<Self> {
        Ok(Self {
            model,
            cond,
            batch: batch_of(like, cond)?,
            table: training_sigmas(schedule)?,
            clip: clip_bound(options)?,
            threshold: options.dynamic_threshold,
        })
    }

    /// `x̂0 = D(x, σ)`: call the model on `x_vp = x/√(1+σ²)` at the timestep of `σ`, and turn its output into x0 with
    /// `ᾱ = 1/(1+σ²)`: ε → `(x_vp − √(1−ᾱ)·ε)/√ᾱ`, v → `√ᾱ·x_vp − √(1−ᾱ)·v`, x0 as is. Then threshold or clip if asked.
    pub fn x0(&self, x: &Tensor, sigma: f64) -> Result<Tensor> {
        let scale = 1.0 / (1.0 + sigma * sigma).sqrt();
        let (sqrt_ab, sqrt_one_minus_ab) = (scale, sigma * scale);
        let x_vp = x.mul_scalar(scale as f32)?;
        let t = sigma_to_timestep(&self.table, sigma);
        let out = self.model.predict(&x_vp, &vec![t; self.batch], self.cond)?;
        let x0 = match self.model.prediction() {
            Prediction::Epsilon => x_vp
                .sub(&out.mul_scalar(sqrt_one_minus_ab as f32)?)?
                .mul_scalar((1.0 / sqrt_ab) as f32)?,
            Prediction::Sample => out,
            Prediction::VPrediction => x_vp
                .mul_scalar(sqrt_ab as f32)?
                .sub(&out.mul_scalar(sqrt_one_minus_ab as f32)?)?,
        };
        match (self.threshold, self.clip) {
            (Some(threshold), _) => threshold.apply(&x0),
            (None, Some(r)) => Ok(x0.clamp(-r, r)?),
            (None, None) => Ok(x0),
        }
    }

    /// The ODE slope `dx/dσ = (x − D(x, σ))/σ`.
    pub fn slope(&self, x: &Tensor, sigma: f64) -> Result<Tensor> {
        let x0 = self.x0(x, sigma)?;
        Ok(x.sub(&x0)?.mul_scalar((1.0 / sigma) as f32)?)
    }
}

/// The σ-space starting point `x = √(1+σ_max²)·z` for standard normal `z`: the variance-preserving `x_T = z` seen in
/// σ-space, the same start the discrete samplers use.
pub fn initial_x(noise: &Tensor, sigma_max: f64) -> Result<Tensor> {
    Ok(noise.mul_scalar((1.0 + sigma_max * sigma_max).sqrt() as f32)?)
}
