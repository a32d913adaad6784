//! Sampling with the probability-flow ODE (Song et al. 2021, §4.3):
//!
//! ```text
//! dx/dt = f(t)·x − ½ g(t)²·∇ₓ ln p_t(x)
//! ```
//!
//! whose solutions have the same marginals `p_t` as the SDE's, so a prior sample carried from `t = 1` to `t = ε`
//! is a sample of `p_ε`. It is deterministic (one noise draw, the prior sample), so it can be solved to a chosen
//! accuracy with an adaptive solver ([`super::rk45`]) and its cost, the number of score evaluations, adapts to the
//! model. The batch is one ODE (one step size for all samples), as in the paper's code. With `denoise`, a Tweedie
//! step at `ε` ([`super::tweedie_denoise`]) removes the noise left at `s(ε)`.

use super::langevin::tweedie_denoise;
use super::noise::NoiseSource;
use super::pc::check_eps;
use super::rk45::{solve, OdeStats, Tolerances};
use super::score::ScoreModel;
use crate::error::{Error, Result};
use crate::sampler::Condition;
use diffuse_tensor::{Device, Tensor};

/// Settings of [`probability_flow`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OdeOptions {
    pub tolerances: Tolerances,
    /// The time the solve ends at.
    pub eps: f64,
    /// End with a Tweedie denoising step at `eps`.
    pub denoise: bool,
}

/// The probability-flow drift `f(t)·x − ½ g(t)²·s_θ(x, t)` of the batch `x` at the shared time `t`.
pub fn probability_flow_drift(
    model: &dyn ScoreModel,
    x: &Tensor,
    t: f64,
    cond: Condition<'_>,
) -> Result<Tensor> {
    let sde = model.sde();
    let g = sde.diffusion(t);
    let score = model.score(x, &vec![t; x.shape()[0]], cond)?;
    Ok(x.mul_scalar(sde.drift(t) as f32)?
        .add(&score.mul_scalar((-0.5 * g * g) as f32)?)?)
}

/// Samples a batch of `shape` on `device` by carrying a prior sample (the one draw of `noise`) from `t = 1` to
/// `t = ε` along the probability-flow ODE; returns the samples and the solver's cost (plus one evaluation for the
/// denoising step).
pub fn probability_flow(
    model: &dyn ScoreModel,
    options: &OdeOptions,
    shape: &[usize],
    device: Device,
    noise: &mut dyn NoiseSource,
    cond: Condition<'_>,
) -> Result<(Tensor, OdeStats)> {
    options.tolerances.validate()?;
    check_eps(options.eps)?;
    model.sde().validate()?;
    let batch = *shape
        .first()
        .ok_or_else(|| Error::sampler("shape", "needs a batch dimension"))?;
    cond.check_batch(batch)?;
    let x1 = model.sde().prior_sample(shape, noise, device)?;
    let mut drift = |t: f64, x: &Tensor| probability_flow_drift(model, x, t, cond);
    let (mut x, mut stats) = solve(&mut drift, 1.0, options.eps, &x1, options.tolerances)?;
    if options.denoise {
        x = tweedie_denoise(model, &x, options.eps, cond)?;
        stats.nfe += 1;
    }
    Ok((x, stats))
}
