//! Pseudo numerical methods for diffusion models (Liu et al. 2022, "PNDM"), as diffusers' `PNDMScheduler`.
//!
//! PNDM treats the DDIM step as the "transfer" part `φ(x, ε, t → t')` of an ODE solver and feeds it a better noise
//! estimate than the one of the current point. In the stable form diffusers uses,
//!
//! `φ(x, ε, t → t') = √(ᾱ_t'/ᾱ_t)·x − (ᾱ_t' − ᾱ_t)·ε / (ᾱ_t·√(1−ᾱ_t') + √(ᾱ_t·(1−ᾱ_t)·ᾱ_t'))`,
//!
//! which is algebraically DDIM's `√ᾱ_t'·x̂0 + √(1−ᾱ_t')·ε` (η = 0). Two ways to estimate ε over a step of `r = ⌊T/N⌋`
//! training timesteps:
//!
//! - **PRK** (pseudo Runge–Kutta, the classical RK4 tableau on φ): from `x` at `t`, evaluate `e1` at `(x, t)`, `e2` at
//!   `(φ(x, e1, t → t−r/2), t−r/2)`, `e3` at `(φ(x, e2, t → t−r/2), t−r/2)`, `e4` at `(φ(x, e3, t → t−r), t−r)`, and step
//!   `φ(x, (e1 + 2e2 + 2e3 + e4)/6, t → t−r)`. Four network calls per step.
//! - **PLMS** (pseudo linear multistep, the 4th-order Adams–Bashforth weights on the stored noise estimates):
//!   `ε' = (55e_i − 59e_{i−1} + 37e_{i−2} − 9e_{i−3})/24`, lower orders (`(3e_i − e_{i−1})/2`,
//!   `(23e_i − 16e_{i−1} + 5e_{i−2})/12`) while fewer are stored. One network call per step.
//!
//! diffusers' default (`skip_prk_steps = false`) takes three PRK steps to fill PLMS's history, then PLMS (`N + 9`
//! network calls for `N ≥ 4` steps). With `skip_prk_steps` it starts PLMS at once, its first step made second order
//! by a Heun-like repeat: an Euler step with `e0`, a network call at the new point, and the step again from the
//! start with the mean of both (`N + 1` calls). Below timestep 0 the level is `ᾱ_0`, or 1 with `set_alpha_to_one`.
//!
//! The combination is formed from the raw network outputs and turned into ε by the point and timestep of the
//! transfer (for v-prediction `ε = √ᾱ·v + √(1−ᾱ)·x` there), exactly as diffusers does. diffusers refuses
//! x0-prediction; diffuse turns each x̂0 into ε̂ at the point where it was predicted.

use super::prediction::{div_scalar, eps_from, eps_of_x0, predict, x0_from, X0Limit};
use super::{Condition, Denoiser, Prediction, SamplerOptions, Start};
use crate::error::{Error, Result};
use crate::schedule::{timesteps, NoiseSchedule};
use diffuse_tensor::Tensor;

/// PNDM's own settings (both false by default, as in diffusers).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Pndm {
    /// Start with PLMS right away instead of three PRK steps (diffusers' `skip_prk_steps`).
    pub skip_prk_steps: bool,
    /// `ᾱ_prev` below timestep 0: 1 when true, else `ᾱ_0` (diffusers' default for PNDM is false).
    pub set_alpha_to_one: bool,
}

/// The network calls of a run, as diffusers lists them: the PRK timesteps (four per PRK step), then the PLMS ones.
fn schedule_of(
    settings: &Pndm,
    ascending: &[usize],
    half: usize,
) -> Result<(Vec<usize>, Vec<usize>)> {
    let n = ascending.len();
    if settings.skip_prk_steps {
        // [t_{N−1}, t_{N−2}, t_{N−2}, t_{N−3}, …, t_0]: the second call at t_{N−2} completes the first step.
        let mut plms: Vec<usize> = ascending[..n - 1].to_vec();
        if n >= 2 {
            plms.push(ascending[n - 2]);
        }
        plms.push(ascending[n - 1]);
        plms.reverse();
        return Ok((Vec::new(), plms));
    }
    if n < 4 {
        return Err(Error::sampler(
            "steps",
            format!("PNDM with PRK steps needs at least 4 steps, got {n}; use more steps or skip_prk_steps (plms)"),
        ));
    }
    // Each of the top four timesteps a, then a + r/2; drop the last midpoint; every value twice; drop both ends.
    let mut points = Vec::with_capacity(8);
    for &t in &ascending[n - 4..] {
        points.push(t);
        points.push(t + half);
    }
    points.pop();
    let doubled: Vec<usize> = points.iter().flat_map(|&t| [t, t]).collect();
    let mut prk = doubled[1..doubled.len() - 1].to_vec();
    prk.reverse();
    let plms = ascending[..n - 3].iter().rev().copied().collect();
    Ok((prk, plms))
}

/// The PNDM transfer `φ(x, ε, t → prev)` with ε from the raw network combination `out`, formed at `(x, t)`, in
/// diffusers' float32 order of operations.
struct Transfer<'a> {
    schedule: &'a NoiseSchedule,
    prediction: Prediction,
    limit: X0Limit,
    final_alpha_bar: f32,
}

impl Transfer<'_> {
    fn step(&self, x: &Tensor, t: usize, prev: Option<usize>, out: &Tensor) -> Result<Tensor> {
        let alpha_bar = self.schedule.alpha_bar(t)? as f32;
        let alpha_bar_prev = match prev {
            Some(prev) => self.schedule.alpha_bar(prev)? as f32,
            None => self.final_alpha_bar,
        };
        let (beta_prod, beta_prod_prev) = (1.0 - alpha_bar, 1.0 - alpha_bar_prev);
        let (a, s) = (alpha_bar.sqrt(), beta_prod.sqrt());
        let eps = if self.limit.is_active() {
            let x0 = self.limit.apply(x0_from(self.prediction, out, x, a, s)?)?;
            eps_of_x0(&x0, x, a, s)?
        } else {
            eps_from(self.prediction, out, x, a, s)?
        };
        let sample_coefficient = (alpha_bar_prev / alpha_bar).sqrt();
        let denominator =
            alpha_bar * beta_prod_prev.sqrt() + (alpha_bar * beta_prod * alpha_bar_prev).sqrt();
        let correction = div_scalar(&eps.mul_scalar(alpha_bar_prev - alpha_bar)?, denominator)?;
        Ok(x.mul_scalar(sample_coefficient)?.sub(&correction)?)
    }
}

/// The timesteps at which a PNDM run calls the network, in order.
pub fn model_timesteps(
    schedule: &NoiseSchedule,
    options: &SamplerOptions,
    settings: &Pndm,
) -> Result<Vec<f64>> {
    let mut ascending = timesteps(
        options.spacing,
        schedule.len(),
        options.steps,
        options.steps_offset,
    )?;
    ascending.reverse();
    let half = schedule.len() / options.steps / 2;
    let (prk, plms) = schedule_of(settings, &ascending, half)?;
    Ok(prk.iter().chain(&plms).map(|&t| t as f64).collect())
}

/// `t − d`, or `None` below timestep 0.
fn back(t: usize, d: usize) -> Option<usize> {
    t.checked_sub(d)
}

/// PNDM sampling from the unit normal `noise` (= `x_T`; PNDM's initial noise scale is 1).
pub fn pndm(
    model: &dyn Denoiser,
    schedule: &NoiseSchedule,
    options: &SamplerOptions,
    settings: &Pndm,
    start: Start<'_>,
    cond: Condition<'_>,
) -> Result<Tensor> {
    if options.step_noise.is_some() {
        return Err(Error::sampler(
            "step noise",
            "PNDM is deterministic and draws no noise",
        ));
    }
    let total = schedule.len();
    let mut ascending = timesteps(options.spacing, total, options.steps, options.steps_offset)?;
    ascending.reverse();
    // A run from a later step is a run on the visited timesteps from there down, its warm-up included.
    let mut x = start.initial(1.0, ascending.len())?;
    ascending.truncate(ascending.len() - start.first_step());
    let stride = total / options.steps;
    let half = stride / 2;
    let (prk, plms) = schedule_of(settings, &ascending, half)?;
    let transfer = Transfer {
        schedule,
        prediction: match model.prediction() {
            Prediction::Sample => Prediction::Epsilon,
            other => other,
        },
        limit: options.x0_limit(),
        final_alpha_bar: if settings.set_alpha_to_one {
            1.0
        } else {
            schedule.alpha_bar(0)? as f32
        },
    };
    // The raw outputs PLMS combines, the running RK4 sum, and the point a PRK step (or PLMS's first) starts from.
    let mut history: Vec<Tensor> = Vec::new();
    let mut rk_sum: Option<Tensor> = None;
    let mut start: Option<Tensor> = None;
    for (counter, &t) in prk.iter().chain(&plms).enumerate() {
        let mut out = predict(model, &x, t as f64, cond)?.prediction;
        if model.prediction() == Prediction::Sample {
            // diffusers has no x0-prediction here; diffuse turns each x̂0 into ε̂ where it was predicted.
            let alpha_bar = schedule.alpha_bar(t)? as f32;
            out = eps_of_x0(&out, &x, alpha_bar.sqrt(), (1.0 - alpha_bar).sqrt())?;
        }
        if counter < prk.len() {
            // Even calls step to the midpoint, odd ones to the end of the group's step (from its first timestep).
            let prev = back(t, if counter % 2 == 1 { 0 } else { half });
            let first = prk[counter / 4 * 4];
            let combined = match counter % 4 {
                0 => {
                    rk_sum = Some(out.mul_scalar((1.0f64 / 6.0) as f32)?);
                    history.push(out.clone());
                    start = Some(x.clone());
                    out
                }
                1 | 2 => {
                    let sum = rk_sum.take().expect("set at the group's first call");
                    rk_sum = Some(sum.add(&out.mul_scalar((1.0f64 / 3.0) as f32)?)?);
                    out
                }
                _ => {
                    let sum = rk_sum.take().expect("set at the group's first call");
                    sum.add(&out.mul_scalar((1.0f64 / 6.0) as f32)?)?
                }
            };
            let from = start.as_ref().expect("set at the group's first call");
            x = transfer.step(from, first, prev, &combined)?;
            continue;
        }
        let (mut from_t, mut prev) = (t, back(t, stride));
        if counter == 1 {
            // skip_prk_steps only: the repeat of the first step, from its start, with the mean of both outputs.
            (from_t, prev) = (t + stride, Some(t));
        } else {
            if history.len() > 3 {
                history.drain(..history.len() - 3);
            }
            history.push(out.clone());
        }
        // The Adams–Bashforth combinations, as diffusers writes them: `(3e₁ − e₂)/2`, `(23e₁ − 16e₂ + 5e₃)/12`,
        // `1/24·(55e₁ − 59e₂ + 37e₃ − 9e₄)` (e₁ the newest).
        let weighted = |weights: &[f32]| -> Result<Tensor> {
            let mut sum = history[history.len() - 1].mul_scalar(weights[0])?;
            for (k, &w) in weights.iter().enumerate().skip(1) {
                sum = sum.add(&history[history.len() - 1 - k].mul_scalar(w)?)?;
            }
            Ok(sum)
        };
        let mut from = x.clone();
        let combined = match (history.len(), counter) {
            (1, 0) => {
                start = Some(x.clone());
                out
            }
            (1, 1) => {
                from = start.take().expect("set at the first call");
                out.add(&history[0])?.mul_scalar(0.5)?
            }
            (2, _) => weighted(&[3.0, -1.0])?.mul_scalar(0.5)?,
            (3, _) => div_scalar(&weighted(&[23.0, -16.0, 5.0])?, 12.0)?,
            _ => weighted(&[55.0, -59.0, 37.0, -9.0])?.mul_scalar((1.0f64 / 24.0) as f32)?,
        };
        x = transfer.step(&from, from_t, prev, &combined)?;
    }
    Ok(x)
}
