//! Predictor–corrector sampling of the reverse SDE (Song et al. 2021, §4.2 and Algorithms 2–3; the update rules and
//! their order are those of the paper's code, which diffusers' `ScoreSdeVeScheduler` pipeline follows).
//!
//! On the times `t_i = 1 − i(1 − ε)/(N − 1)`, `i = 0 … N−1`, starting from a prior sample, each step runs the
//! corrector at `t_i` and then the predictor from `t_i` towards `t_{i+1}`:
//!
//! ```text
//! Langevin corrector (K times):  s = s_θ(x, t_i), z ~ N(0, I)
//!                                δ = 2α·(r·mean_b‖z_b‖ / mean_b‖s_b‖)²        (r: signal-to-noise ratio)
//!                                x̄ = x + δ·s,   x = x̄ + √(2δ)·z
//! reverse-diffusion predictor:   (keep, G²) = the SDE's N-level discretisation at level k = N−1−i
//!                                x̄ = (2 − keep)·x + G²·s_θ(x, t_i),   x = x̄ + G·z
//! Euler–Maruyama predictor:      x̄ = x − (f(t_i)·x − g(t_i)²·s_θ(x, t_i))/N,   x = x̄ + g(t_i)/√N·z
//! ```
//!
//! The reverse-diffusion predictor discretises the reverse SDE the way the forward one is discretised
//! ([`Sde::discretize`](super::Sde::discretize)): for VE, `G² = σ_k² − σ_{k−1}²` between geometric levels (down to
//! σ = 0 at the last step), for VP DDPM's ancestral step with `β_k = β(k/(N−1))/N`. The corrector's step size is set
//! so that the noise it adds is `r` times the size of the score step; the norms are averaged over the batch (as in
//! the paper's code), so every sample of a batch takes the same step. With `denoise` the result is the last `x̄`,
//! the predictor's mean, without its final noise.

use super::noise::NoiseSource;
use super::process::time_grid;
use super::score::ScoreModel;
use crate::error::{Error, Result};
use crate::sampler::Condition;
use diffuse_tensor::{Device, Tensor};

/// The predictor of a predictor–corrector step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Predictor {
    /// Ancestral-style discretisation of the reverse SDE.
    ReverseDiffusion,
    /// Euler–Maruyama on the reverse SDE with `dt = 1/N`.
    EulerMaruyama,
    /// No predictor: corrector-only sampling (the paper's "C2000").
    None,
}

/// The corrector of a predictor–corrector step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Corrector {
    /// `steps` Langevin steps at signal-to-noise ratio `snr`.
    Langevin { snr: f64, steps: usize },
    /// No corrector: predictor-only sampling (the paper's "P1000").
    None,
}

/// Settings of [`predictor_corrector`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PcOptions {
    /// Number of times `N`.
    pub steps: usize,
    pub predictor: Predictor,
    pub corrector: Corrector,
    /// The last time `ε` (the score is not trained at `t = 0`).
    pub eps: f64,
    /// Return the last predictor mean instead of the noisy sample.
    pub denoise: bool,
}

impl PcOptions {
    /// Refuses settings that cannot sample.
    pub fn validate(&self) -> Result<()> {
        if self.steps == 0 {
            return Err(Error::sampler("steps", "must be at least 1"));
        }
        check_eps(self.eps)?;
        if let Corrector::Langevin { snr, steps } = self.corrector {
            if !(snr > 0.0 && snr.is_finite()) {
                return Err(Error::sampler(
                    "snr",
                    format!("{snr} must be positive and finite"),
                ));
            }
            if steps == 0 {
                return Err(Error::sampler(
                    "corrector_steps",
                    "must be at least 1 (or use no corrector)",
                ));
            }
        }
        if self.predictor == Predictor::None && self.corrector == Corrector::None {
            return Err(Error::sampler(
                "predictor",
                "with neither a predictor nor a corrector nothing would be sampled",
            ));
        }
        Ok(())
    }

    /// Score evaluations of one run: `N·(K + 1)`, `N·K` or `N`.
    pub fn model_evaluations(&self) -> usize {
        let corrector = match self.corrector {
            Corrector::Langevin { steps, .. } => steps,
            Corrector::None => 0,
        };
        let predictor = usize::from(self.predictor != Predictor::None);
        self.steps * (corrector + predictor)
    }
}

/// Refuses a final time outside `(0, 1)`.
pub(super) fn check_eps(eps: f64) -> Result<()> {
    if !(eps > 0.0 && eps < 1.0) {
        return Err(Error::sampler(
            "eps",
            format!("the last time ε = {eps} must lie in (0, 1)"),
        ));
    }
    Ok(())
}

/// `‖x_b‖` averaged over the samples `b` of `x`.
pub(super) fn mean_sample_norm(x: &Tensor) -> Result<f64> {
    let dims: Vec<usize> = (1..x.rank()).collect();
    let norms = if dims.is_empty() {
        x.abs()?
    } else {
        x.square()?.sum(&dims, false)?.sqrt()?
    };
    Ok(f64::from(norms.mean_all()?.to_scalar()?))
}

/// Refuses samples that are no longer finite: a sampler that diverged (too few steps for the SDE's β, or a model
/// that returns non-finite values) must not hand back NaN as a sample.
pub(super) fn check_finite(x: &Tensor, sampler: &str) -> Result<()> {
    if mean_sample_norm(x)?.is_finite() {
        return Ok(());
    }
    Err(Error::sampler(
        "steps",
        format!(
            "{sampler} diverged: its samples are not finite (take more steps; a VP step multiplies x by about \
             1 + β(t)/(2N), and a cosine schedule's last β is in the thousands)"
        ),
    ))
}

/// `K` Langevin corrector steps at time `t` with `α = alpha`; returns the sample.
#[allow(clippy::too_many_arguments)]
fn langevin_correct(
    model: &dyn ScoreModel,
    mut x: Tensor,
    t: f64,
    alpha: f64,
    snr: f64,
    steps: usize,
    noise: &mut dyn NoiseSource,
    cond: Condition<'_>,
) -> Result<Tensor> {
    let times = vec![t; x.shape()[0]];
    for _ in 0..steps {
        let score = model.score(&x, &times, cond)?;
        let z = noise.next(x.shape(), x.device())?;
        let score_norm = mean_sample_norm(&score)?;
        if !score_norm.is_finite() {
            return Err(Error::sampler(
                "steps",
                format!(
                    "the samples are no longer finite at t = {t}: the sampler diverged (take more steps; a VP \
                     step multiplies x by about 1 + β(t)/(2N))"
                ),
            ));
        }
        if score_norm == 0.0 {
            return Err(Error::sampler(
                "model",
                format!(
                    "the score is zero for the whole batch at t = {t}, so the Langevin step size 2α(r·‖z‖/‖s‖)² \
                     is undefined"
                ),
            ));
        }
        let step = 2.0 * alpha * (snr * mean_sample_norm(&z)? / score_norm).powi(2);
        let mean = x.add(&score.mul_scalar(step as f32)?)?;
        x = mean.add(&z.mul_scalar((2.0 * step).sqrt() as f32)?)?;
    }
    Ok(x)
}

/// Predictor–corrector sampling of `model`'s reverse SDE for a batch of `shape` on `device`: the prior sample is
/// the first draw of `noise`, then each corrector and predictor step draws its own, in the order they run.
pub fn predictor_corrector(
    model: &dyn ScoreModel,
    options: &PcOptions,
    shape: &[usize],
    device: Device,
    noise: &mut dyn NoiseSource,
    cond: Condition<'_>,
) -> Result<Tensor> {
    options.validate()?;
    let sde = model.sde();
    sde.validate()?;
    let batch = *shape
        .first()
        .ok_or_else(|| Error::sampler("shape", "needs a batch dimension"))?;
    cond.check_batch(batch)?;
    let n = options.steps;
    let mut x = sde.prior_sample(shape, noise, device)?;
    let mut mean = x.clone();
    for (i, &t) in time_grid(n, options.eps).iter().enumerate() {
        let k = n - 1 - i;
        if let Corrector::Langevin { snr, steps } = options.corrector {
            let alpha = sde.langevin_alpha(k, n);
            x = langevin_correct(model, x, t, alpha, snr, steps, noise, cond)?;
            mean = x.clone();
        }
        let times = vec![t; batch];
        let noise_scale = match options.predictor {
            Predictor::None => continue,
            Predictor::ReverseDiffusion => {
                let (keep, g2) = sde.discretize(k, n, t)?;
                let score = model.score(&x, &times, cond)?;
                mean = x
                    .mul_scalar((2.0 - keep) as f32)?
                    .add(&score.mul_scalar(g2 as f32)?)?;
                g2.sqrt()
            }
            Predictor::EulerMaruyama => {
                let dt = 1.0 / n as f64;
                let g = sde.diffusion(t);
                let score = model.score(&x, &times, cond)?;
                mean = x
                    .mul_scalar((1.0 - sde.drift(t) * dt) as f32)?
                    .add(&score.mul_scalar((g * g * dt) as f32)?)?;
                g * dt.sqrt()
            }
        };
        let z = noise.next(shape, device)?;
        x = mean.add(&z.mul_scalar(noise_scale as f32)?)?;
    }
    let x = if options.denoise { mean } else { x };
    check_finite(&x, "predictor–corrector sampling")?;
    Ok(x)
}
