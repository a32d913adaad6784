//! The learned-range variance of Nichol & Dhariwal (2021, "Improved DDPM", §3.1): a network that predicts its own
//! reverse-process variance outputs, per element, a value `v` (nominally in [−1, 1]) that interpolates in log space
//! between the two natural choices, the posterior variance `β̃_t` and `β_t`:
//!
//! ```text
//! frac = (v + 1)/2,     log σ_t² = frac·log β_t + (1 − frac)·log β̃_t
//! ```
//!
//! diffusers' `DDPMScheduler` with `variance_type = "learned_range"` uses the same interpolation at sampling time
//! (with `β̃_t` clamped at 1e-20); training, as improved DDPM and DiT do it, replaces the `β̃_0 = 0` of the first step
//! by `β̃_1` ([`training_log_variance_bounds`]). This file holds the interpolation once, for both.

use crate::error::{Error, Result};
use crate::schedule::NoiseSchedule;
use diffuse_autograd::Var;
use diffuse_tensor::Tensor;

/// `log σ² = ((v + 1)/2)·max_log + (1 − (v + 1)/2)·min_log` for a batch `v` (N, …), with one bound pair per sample
/// (`min_log[n]` = log of the small variance, `max_log[n]` = log of the large one), differentiable in `v`.
pub fn learned_range_log_variance(v: &Var, min_log: &[f64], max_log: &[f64]) -> Result<Var> {
    let n = v.shape().first().copied().unwrap_or(0);
    if min_log.len() != n || max_log.len() != n {
        return Err(Error::model(
            "learned_range",
            format!(
                "{} lower and {} upper bounds for a batch of {n}",
                min_log.len(),
                max_log.len()
            ),
        ));
    }
    // frac·max + (1 − frac)·min = min + frac·(max − min), frac = v/2 + 1/2.
    let spread: Vec<f64> = max_log
        .iter()
        .zip(min_log)
        .map(|(hi, lo)| hi - lo)
        .collect();
    let frac = v.affine(0.5, 0.5)?;
    let device = v.tensor().device();
    Ok(frac
        .mul(&Var::constant(per_sample(&spread, v.shape(), device)?))?
        .add(&Var::constant(per_sample(min_log, v.shape(), device)?))?)
}

/// `values` (one per sample) as an (N, 1, …, 1) tensor that broadcasts against a batch of `shape`.
pub fn per_sample(
    values: &[f64],
    shape: &[usize],
    device: diffuse_tensor::Device,
) -> Result<Tensor> {
    let mut dims = vec![1; shape.len().max(1)];
    dims[0] = values.len();
    let data = values.iter().map(|&v| v as f32).collect();
    Ok(Tensor::from_vec(data, &dims, device)?)
}

/// The bounds `(log β̃_t, log β_t)` of training timestep `t` (0-based) as improved DDPM trains with them: the
/// posterior variance `β̃_t = β_t·(1 − ᾱ_{t−1})/(1 − ᾱ_t)` (ᾱ_{−1} = 1), with `β̃_0 = 0` replaced by `β̃_1` so that its
/// logarithm is finite. An error when `t` is out of range, the schedule has a single step, or a bound is not finite.
pub fn training_log_variance_bounds(schedule: &NoiseSchedule, t: usize) -> Result<(f64, f64)> {
    let steps = schedule.len();
    if steps < 2 || t >= steps {
        return Err(Error::train(
            "learned variance",
            format!("timestep {t} of a {steps}-step schedule: the learned-range variance needs t < T and T ≥ 2"),
        ));
    }
    let posterior = |t: usize| {
        let ab = schedule.alphas_cumprod[t];
        let ab_prev = if t == 0 {
            1.0
        } else {
            schedule.alphas_cumprod[t - 1]
        };
        schedule.betas[t] * (1.0 - ab_prev) / (1.0 - ab)
    };
    let small = posterior(t.max(1));
    let (lo, hi) = (small.ln(), schedule.betas[t].ln());
    if !(lo.is_finite() && hi.is_finite()) {
        return Err(Error::train(
            "learned variance",
            format!(
                "at timestep {t} the variance bounds β̃ = {small:e}, β = {:e} have no finite logarithm",
                schedule.betas[t]
            ),
        ));
    }
    Ok((lo, hi))
}
