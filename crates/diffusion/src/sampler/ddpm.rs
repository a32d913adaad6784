//! DDPM ancestral sampling (Ho et al. 2020, Algorithm 2, on spaced timesteps), as diffusers' `DDPMScheduler`.
//!
//! At each visited timestep `t`, with `prev` the next visited one (`ᾱ_prev = 1` after the last): predict x̂0 (clipped
//! or thresholded if asked), then draw `x_prev ~ N(μ̃, σ²)` with the posterior mean
//! `μ̃ = √ᾱ_prev·β/(1−ᾱ_t)·x̂0 + √α·(1−ᾱ_prev)/(1−ᾱ_t)·x_t`, where `α = ᾱ_t/ᾱ_prev` and `β = 1 − α` span the whole
//! jump. The variance, by `variance_type`:
//!
//! | variance_type | σ² |
//! |---|---|
//! | `fixed_small`, `fixed_small_log` | `β̃ = β·(1−ᾱ_prev)/(1−ᾱ_t)` (the true posterior variance), at least 1e-20 |
//! | `fixed_large` | `β` |
//! | `learned` | the network's second output half, as is |
//! | `learned_range` | `exp(v·log β + (1−v)·log β̃)`, `v = (out + 1)/2` from the second half ([`crate::learned_range`]) |
//!
//! No noise is added at `t = 0`. (`fixed_large_log`, whose diffusers implementation takes the square root of a
//! logarithm and returns NaN, is refused.)

use super::noise::StepNoise;
use super::prediction::{lin, predict, x0_from};
use super::{Condition, Denoiser, SamplerOptions, Start};
use crate::error::{Error, Result};
use crate::learned_range::learned_range_log_variance;
use crate::schedule::{timesteps, NoiseSchedule, VarianceType};
use diffuse_autograd::Var;
use diffuse_tensor::Tensor;

/// DDPM sampling from the unit normal `noise` (= `x_T`; DDPM's initial noise scale is 1).
pub fn ddpm(
    model: &dyn Denoiser,
    schedule: &NoiseSchedule,
    options: &SamplerOptions,
    variance: VarianceType,
    start: Start<'_>,
    cond: Condition<'_>,
) -> Result<Tensor> {
    if variance == VarianceType::FixedLargeLog {
        return Err(Error::sampler(
            "variance_type",
            "fixed_large_log is not supported (diffusers takes the square root of log β there, which is NaN); \
             use fixed_large",
        ));
    }
    let limit = options.x0_limit();
    let visited = timesteps(
        options.spacing,
        schedule.len(),
        options.steps,
        options.steps_offset,
    )?;
    let step_noise = StepNoise::new(
        options.seed,
        options.step_noise.as_ref(),
        visited.len(),
        start.tensor(),
        true,
    )?;
    let mut x = start.initial(1.0, visited.len())?;
    for (step, &t) in visited.iter().enumerate().skip(start.first_step()) {
        // diffusers' float32 scalars, in its order of operations.
        let alpha_bar = schedule.alpha_bar(t)? as f32;
        let alpha_bar_prev = match visited.get(step + 1) {
            Some(&prev) => schedule.alpha_bar(prev)? as f32,
            None => 1.0,
        };
        let (beta_prod, beta_prod_prev) = (1.0 - alpha_bar, 1.0 - alpha_bar_prev);
        let alpha = alpha_bar / alpha_bar_prev;
        let beta = 1.0 - alpha;
        let out = predict(model, &x, t as f64, cond)?;
        let x0 = limit.apply(x0_from(
            model.prediction(),
            &out.prediction,
            &x,
            alpha_bar.sqrt(),
            beta_prod.sqrt(),
        )?)?;
        let mean = lin(
            alpha_bar_prev.sqrt() * beta / beta_prod,
            &x0,
            alpha.sqrt() * beta_prod_prev / beta_prod,
            &x,
        )?;
        if t == 0 {
            x = mean;
            continue;
        }
        let z = step_noise.draw(step, &x)?;
        let posterior = (beta_prod_prev / beta_prod * beta).max(1e-20);
        let scaled = match variance {
            VarianceType::FixedSmall => z.mul_scalar(posterior.sqrt())?,
            VarianceType::FixedSmallLog => z.mul_scalar((0.5 * posterior.ln()).exp())?,
            VarianceType::FixedLarge => z.mul_scalar(beta.sqrt())?,
            VarianceType::Learned => learned_half(&out.variance, variance)?.sqrt()?.mul(&z)?,
            VarianceType::LearnedRange => {
                let v = learned_half(&out.variance, variance)?;
                let batch = v.shape()[0];
                let log_variance = learned_range_log_variance(
                    &Var::constant(v.clone()),
                    &vec![f64::from(posterior.ln()); batch],
                    &vec![f64::from(beta.ln()); batch],
                )?;
                log_variance.tensor().mul_scalar(0.5)?.exp()?.mul(&z)?
            }
            VarianceType::FixedLargeLog => unreachable!("refused above"),
        };
        x = mean.add(&scaled)?;
    }
    Ok(x)
}

/// The variance half of the output, which `variance_type` needs.
fn learned_half(variance: &Option<Tensor>, kind: VarianceType) -> Result<&Tensor> {
    variance.as_ref().ok_or_else(|| {
        Error::sampler(
            "variance_type",
            format!(
                "{} needs a network that also predicts its variance (out_channels = 2 × in_channels)",
                kind.name()
            ),
        )
    })
}
