//! The learned variance of Nichol & Dhariwal (2021, "Improved Denoising Diffusion Probabilistic Models", eq. 15),
//! as diffusers' `variance_type = "learned_range"`: the network outputs, per element, `out ∈ [−1, 1]`, and the
//! reverse-step variance interpolates in log space between the two natural choices,
//!
//! `log σ² = v·log β_t + (1 − v)·log β̃_t`,   `v = (out + 1)/2`,
//!
//! where `β_t = 1 − ᾱ_t/ᾱ_prev` (the forward variance of the jump, the upper bound) and
//! `β̃_t = β_t·(1 − ᾱ_prev)/(1 − ᾱ_t)` (the posterior variance, the lower bound; floored at 1e-20 so that its
//! logarithm is finite at `t = 0`, as diffusers does). The same interpolation serves the DDPM sampler and the
//! variational term of the hybrid training loss, which is why it is public: `log σ² = scale·out + offset` with the
//! per-timestep [`LearnedRange::affine`] coefficients works on tensors and on autograd variables alike.

use crate::error::Result;
use diffuse_tensor::Tensor;

/// The smallest posterior variance whose logarithm is taken.
pub const MIN_POSTERIOR_VARIANCE: f64 = 1e-20;

/// The two ends of the log-variance interval of one reverse step `t → prev`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LearnedRange {
    /// `log β̃_t`, the posterior variance (floored at [`MIN_POSTERIOR_VARIANCE`]).
    pub log_min: f64,
    /// `log β_t`.
    pub log_max: f64,
}

impl LearnedRange {
    /// The range of the step from `ᾱ_t = alpha_bar` to `ᾱ_prev = alpha_bar_prev` (1 after the last step; training
    /// uses the consecutive `ᾱ_{t−1}`).
    pub fn new(alpha_bar: f64, alpha_bar_prev: f64) -> Self {
        let beta = 1.0 - alpha_bar / alpha_bar_prev;
        let posterior = beta * (1.0 - alpha_bar_prev) / (1.0 - alpha_bar);
        Self {
            log_min: posterior.max(MIN_POSTERIOR_VARIANCE).ln(),
            log_max: beta.ln(),
        }
    }

    /// `(scale, offset)` with `log σ² = scale·out + offset`: `v = (out + 1)/2` substituted into the interpolation.
    pub fn affine(&self) -> (f64, f64) {
        (
            0.5 * (self.log_max - self.log_min),
            0.5 * (self.log_max + self.log_min),
        )
    }

    /// `log σ²` for the network output `out` (any shape), computed as diffusers does:
    /// `frac·log β + (1 − frac)·log β̃` with `frac = (out + 1)/2`.
    pub fn log_variance(&self, out: &Tensor) -> Result<Tensor> {
        let frac = out.add_scalar(1.0)?.mul_scalar(0.5)?;
        let rest = frac.affine(-1.0, 1.0)?;
        Ok(frac
            .mul_scalar(self.log_max as f32)?
            .add(&rest.mul_scalar(self.log_min as f32)?)?)
    }
}
