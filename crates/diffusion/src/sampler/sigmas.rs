//! The σ-parameterisation and its bridge to a model trained on discrete variance-preserving timesteps.
//!
//! Dividing `x_t = √ᾱ_t·x0 + √(1−ᾱ_t)·ε` by `√ᾱ_t` gives `x = x0 + σ·ε` with `σ_t = √((1−ᾱ_t)/ᾱ_t)`; back again,
//! `x_vp = x/√(1+σ²)` and `ᾱ = 1/(1+σ²)`. The training σ increase with `t`, so a noise level between two of them is
//! mapped to a fractional timestep by linear interpolation in `log σ` ([`sigma_to_timestep`], as diffusers'
//! `_sigma_to_t`); [`timestep_to_sigma`] is its exact inverse, for models defined in continuous time. The noise levels
//! a sampler visits are in [`super::grid`].

use crate::error::{Error, Result};
use crate::schedule::NoiseSchedule;

/// The `ᾱ` diffusers' σ-schedulers (Euler, Euler ancestral, DPM-Solver, UniPC) put in place of the `ᾱ_{T−1} = 0` of
/// a zero-terminal-SNR schedule, so that `σ_{T−1} = √((1 − 2⁻²⁴)/2⁻²⁴) ≈ 4096` is finite.
pub const ZERO_SNR_ALPHA_BAR: f64 = 1.0 / (1u32 << 24) as f64;

/// `σ_t = √((1−ᾱ_t)/ᾱ_t)` for every training timestep, with a last `ᾱ_{T−1} = 0` (zero terminal SNR) replaced by
/// [`ZERO_SNR_ALPHA_BAR`] as diffusers does; refuses schedules whose σ are then not finite and positive. (They
/// increase with `t`, except possibly for that last one: diffusers does not check, and neither does this.)
pub fn training_sigmas(schedule: &NoiseSchedule) -> Result<Vec<f64>> {
    let last = schedule.len() - 1;
    let sigmas: Vec<f64> = schedule
        .alphas_cumprod
        .iter()
        .enumerate()
        .map(|(t, &ab)| {
            let ab = if t == last && ab == 0.0 {
                ZERO_SNR_ALPHA_BAR
            } else {
                ab
            };
            ((1.0 - ab) / ab).sqrt()
        })
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
