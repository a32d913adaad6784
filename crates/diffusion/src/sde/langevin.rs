//! Annealed Langevin dynamics (Song & Ermon 2019, Algorithm 1), and the one-step Tweedie denoiser that ends it.
//!
//! Langevin dynamics `x ← x + (δ/2)·∇ ln p(x) + √δ·z` samples `p` as `δ → 0` and the number of steps grows. Run on
//! the data density itself it mixes badly (the score is unreliable where there is no data, and separated modes are
//! never crossed), so NCSN runs it on a sequence of smoothed densities `p_{σ_1}, …, p_{σ_L}` from the largest noise
//! level down, each started where the previous one ended, with `K` steps per level and the step size scaled with
//! the level, `δ_i = ε·σ_i²/σ_L²` (which keeps the signal-to-noise ratio of the updates the same at every level).
//!
//! Here the levels are the SDE's marginals at `t_i = 1 − i(1 − t_min)/(L − 1)`, `σ_i = s(t_i)`: for the VE SDE these
//! are NCSN's geometric `σ_max … σ_min`. The start is a prior sample. With `denoise`, the last sample is replaced by
//! Tweedie's estimate of the clean sample, `E[x_0 | x_t] = (x_t + s(t)²·∇ ln p_t(x_t))/m(t)` at the last level
//! (Jolicoeur-Martineau et al. 2021; Song & Ermon 2020 found it removes the last level's noise that FID punishes).

use super::noise::NoiseSource;
use super::pc::{check_eps, check_finite};
use super::process::time_grid;
use super::score::ScoreModel;
use crate::error::{Error, Result};
use crate::sampler::Condition;
use diffuse_tensor::{Device, Tensor};

/// Settings of [`annealed_langevin`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LangevinOptions {
    /// Number of noise levels `L`.
    pub levels: usize,
    /// Langevin steps per level `K`.
    pub steps_per_level: usize,
    /// The step size at the smallest level, `ε` (Song & Ermon use 2·10⁻⁵ with `L = 10`, `K = 100`).
    pub step_size: f64,
    /// The time of the smallest level (with one level, that level is `t = 1`).
    pub t_min: f64,
    /// End with the Tweedie denoising step.
    pub denoise: bool,
}

impl LangevinOptions {
    /// Refuses settings that cannot sample.
    pub fn validate(&self) -> Result<()> {
        if self.levels == 0 || self.steps_per_level == 0 {
            return Err(Error::sampler(
                "levels",
                format!(
                    "needs at least one level and one step per level, got {} levels × {} steps",
                    self.levels, self.steps_per_level
                ),
            ));
        }
        if !(self.step_size > 0.0 && self.step_size.is_finite()) {
            return Err(Error::sampler(
                "step_size",
                format!("ε = {} must be positive and finite", self.step_size),
            ));
        }
        check_eps(self.t_min)
    }

    /// Score evaluations of one run: `L·K`, plus one for the denoising step.
    pub fn model_evaluations(&self) -> usize {
        self.levels * self.steps_per_level + usize::from(self.denoise)
    }
}

/// Tweedie's estimate of the clean samples from `x` at the shared time `t`: `(x + s(t)²·s_θ(x, t))/m(t)`.
pub fn tweedie_denoise(
    model: &dyn ScoreModel,
    x: &Tensor,
    t: f64,
    cond: Condition<'_>,
) -> Result<Tensor> {
    let sde = model.sde();
    let (m, s) = (sde.mean_scale(t), sde.std(t));
    let score = model.score(x, &vec![t; x.shape()[0]], cond)?;
    Ok(x.add(&score.mul_scalar((s * s) as f32)?)?
        .mul_scalar((1.0 / m) as f32)?)
}

/// Langevin dynamics at the shared time `t`: `steps` updates `x ← x + (δ/2)·s_θ(x, t) + √δ·z`, each `z` drawn
/// from `noise`.
pub fn langevin_at(
    model: &dyn ScoreModel,
    mut x: Tensor,
    t: f64,
    step_size: f64,
    steps: usize,
    noise: &mut dyn NoiseSource,
    cond: Condition<'_>,
) -> Result<Tensor> {
    let times = vec![t; x.shape()[0]];
    for _ in 0..steps {
        let score = model.score(&x, &times, cond)?;
        let z = noise.next(x.shape(), x.device())?;
        x = x
            .add(&score.mul_scalar((0.5 * step_size) as f32)?)?
            .add(&z.mul_scalar(step_size.sqrt() as f32)?)?;
    }
    Ok(x)
}

/// Annealed Langevin sampling of `model` for a batch of `shape` on `device`: the prior sample is the first draw of
/// `noise`, then every Langevin step draws one more.
pub fn annealed_langevin(
    model: &dyn ScoreModel,
    options: &LangevinOptions,
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
    let times = time_grid(options.levels, options.t_min);
    let t_last = times[times.len() - 1];
    let sigma_last = sde.std(t_last);
    let mut x = sde.prior_sample(shape, noise, device)?;
    for &t in &times {
        let sigma = sde.std(t);
        let step = options.step_size * (sigma / sigma_last).powi(2);
        x = langevin_at(model, x, t, step, options.steps_per_level, noise, cond)?;
    }
    if options.denoise {
        x = tweedie_denoise(model, &x, t_last, cond)?;
    }
    check_finite(&x, "annealed Langevin sampling")?;
    Ok(x)
}
