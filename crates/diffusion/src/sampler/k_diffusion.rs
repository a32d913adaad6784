//! The σ-space view of diffusers' k-diffusion-style schedulers (Euler, Euler ancestral, Heun, LMS).
//!
//! Their state is `x = x_vp·√(1+σ²) = x0 + σ·ε` (Karras et al. 2022); the network is called on
//! `x/√(σ²+1)`, the variance-preserving sample it was trained on, and its output turned into the denoised
//! `D(x, σ) = x̂0` by diffusers' formulas: ε → `x − σ·ε`, v → `x/(σ²+1) − σ/√(σ²+1)·v`, x0 as is. The probability
//! flow ODE is then `dx/dσ = (x − D(x, σ))/σ`.
//!
//! The run starts from the unit normal latents times diffusers' `init_noise_sigma`: `σ_max` for the `linspace` and
//! `trailing` spacings, `√(σ_max² + 1)` for `leading`.

use super::grid::SigmaGrid;
use super::prediction::{div_scalar, predict, X0Limit};
use super::{Condition, Denoiser, Prediction};
use crate::error::Result;
use crate::schedule::TimestepSpacing;
use diffuse_tensor::Tensor;

/// diffusers' `init_noise_sigma` of the k-diffusion-style schedulers (float32).
pub fn init_noise_sigma(grid: &SigmaGrid, spacing: TimestepSpacing) -> f32 {
    let max = grid.sigmas.iter().copied().fold(0.0, f64::max) as f32;
    match spacing {
        TimestepSpacing::Linspace | TimestepSpacing::Trailing => max,
        TimestepSpacing::Leading => (max * max + 1.0).sqrt(),
    }
}

/// A [`Denoiser`] seen as the σ-space denoiser `D(x, σ)`, with x̂0 clipped or thresholded if asked. Every formula
/// follows diffusers' float32 order of operations: at σ ≈ 10⁴ (the first level of a `trailing` cosine schedule)
/// `x − σ·ε` cancels four digits, and only the same roundings give the same result.
pub struct SigmaDenoiser<'a> {
    pub model: &'a dyn Denoiser,
    pub cond: Condition<'a>,
    pub limit: X0Limit,
}

impl SigmaDenoiser<'_> {
    /// `D(x, σ)`: the network at timestep `t` on `x/√(σ²+1)`, as x̂0.
    pub fn x0(&self, x: &Tensor, sigma: f32, t: f64) -> Result<Tensor> {
        let input = div_scalar(x, (sigma * sigma + 1.0).sqrt())?;
        let out = predict(self.model, &input, t, self.cond)?.prediction;
        let x0 = match self.model.prediction() {
            Prediction::Epsilon => x.sub(&out.mul_scalar(sigma)?)?,
            Prediction::VPrediction => out
                .mul_scalar(-sigma / (sigma * sigma + 1.0).sqrt())?
                .add(&div_scalar(x, sigma * sigma + 1.0)?)?,
            Prediction::Sample => out,
        };
        self.limit.apply(x0)
    }

    /// The ODE slope `dx/dσ = (x − D(x, σ))/σ`.
    pub fn slope(&self, x: &Tensor, sigma: f32, t: f64) -> Result<Tensor> {
        let x0 = self.x0(x, sigma, t)?;
        div_scalar(&x.sub(&x0)?, sigma)
    }
}
