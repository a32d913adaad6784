//! What every sampler does with a network output: split off a learned variance, turn the prediction into the clean
//! sample x̂0 or the noise ε̂ at the current noise level, and clip or threshold x̂0.
//!
//! In the variance-preserving view a noisy sample is `x = a·x0 + s·ε` with `a = √ᾱ`, `s = √(1−ᾱ)`, and the
//! velocity is `v = a·ε − s·x0`; each prediction determines the other quantities linearly (see
//! [`crate::train::target`]):
//!
//! | output | x̂0              | ε̂               |
//! |--------|-----------------|-----------------|
//! | ε      | `(x − s·ε)/a`   | `ε`             |
//! | x0     | `x0`            | `(x − a·x0)/s`  |
//! | v      | `a·x − s·v`     | `a·v + s·x`     |
//!
//! A network with a learned variance (Nichol & Dhariwal 2021) outputs `2C` channels for a `C`-channel sample: the
//! prediction, then the variance interpolation. Every sampler uses the first half; DDPM with `learned` or
//! `learned_range` variance also reads the second.

use super::{Denoiser, DynamicThreshold, Prediction};
use crate::error::{Error, Result};
use diffuse_tensor::Tensor;

/// `a·x + b·y`: two products, then their sum, each rounded to f32 (the order of torch's `a * x + b * y`).
pub fn lin(a: f32, x: &Tensor, b: f32, y: &Tensor) -> Result<Tensor> {
    Ok(x.mul_scalar(a)?.add(&y.mul_scalar(b)?)?)
}

/// `c₀·t₀ + c₁·t₁ + …`, each product rounded to f32 and the sum taken left to right (torch's order for a written-out
/// sum of scaled tensors).
pub fn weighted_sum(terms: &[(f32, &Tensor)]) -> Result<Tensor> {
    let mut terms = terms.iter();
    let Some(&(c, first)) = terms.next() else {
        return Err(Error::sampler("weighted_sum", "needs at least one term"));
    };
    let mut sum = first.mul_scalar(c)?;
    for &(c, t) in terms {
        sum = sum.add(&t.mul_scalar(c)?)?;
    }
    Ok(sum)
}

/// `x / d` element by element, correctly rounded (torch's tensor-by-scalar division; multiplying by `1/d` would
/// round twice, which matters where `d` is small and the result large).
pub fn div_scalar(x: &Tensor, d: f32) -> Result<Tensor> {
    Ok(x.div(&Tensor::scalar(d, x.device())?)?)
}

/// A network output split into its prediction (shaped like the sample) and, for a learned-variance network, the
/// variance channels.
pub struct ModelOutput {
    pub prediction: Tensor,
    pub variance: Option<Tensor>,
}

impl ModelOutput {
    /// Splits `out` along dimension 1 when it has twice the channels of `sample`; refuses any other shape.
    pub fn split(out: Tensor, sample: &Tensor) -> Result<Self> {
        if out.shape() == sample.shape() {
            return Ok(Self {
                prediction: out,
                variance: None,
            });
        }
        let doubled = out.rank() == sample.rank()
            && sample.rank() >= 2
            && out.shape()[1] == 2 * sample.shape()[1]
            && out.shape()[0] == sample.shape()[0]
            && out.shape()[2..] == sample.shape()[2..];
        if !doubled {
            return Err(Error::sampler(
                "model output",
                format!(
                    "shape {:?} is neither the sample's {:?} nor that with twice the channels (a learned variance)",
                    out.shape(),
                    sample.shape()
                ),
            ));
        }
        let channels = sample.shape()[1];
        Ok(Self {
            prediction: out.narrow(1, 0, channels)?.contiguous()?,
            variance: Some(out.narrow(1, channels, channels)?.contiguous()?),
        })
    }
}

/// Calls `model` on `input` at timestep `t` (the same for every sample) and keeps the prediction half of a
/// learned-variance output.
pub fn predict(
    model: &dyn Denoiser,
    input: &Tensor,
    t: f64,
    cond: super::Condition<'_>,
) -> Result<ModelOutput> {
    let batch = input.shape().first().copied().unwrap_or(1);
    let out = model.predict(input, &vec![t; batch], cond)?;
    ModelOutput::split(out, input)
}

/// x̂0 from the prediction at `x = a·x0 + s·ε`, in diffusers' order of float32 operations: ε → `(x − s·ε)/a`,
/// v → `a·x − s·v`. (Where `a` is tiny the subtraction cancels and the division magnifies its rounding; computing
/// it as diffusers does keeps the two in step.)
pub fn x0_from(prediction: Prediction, out: &Tensor, x: &Tensor, a: f32, s: f32) -> Result<Tensor> {
    match prediction {
        Prediction::Epsilon => {
            if a == 0.0 {
                return Err(Error::sampler(
                    "prediction_type",
                    "an ε-prediction at ᾱ = 0 (zero terminal SNR) determines no x̂0; such models predict v or x0",
                ));
            }
            div_scalar(&x.sub(&out.mul_scalar(s)?)?, a)
        }
        Prediction::Sample => Ok(out.clone()),
        Prediction::VPrediction => lin(a, x, -s, out),
    }
}

/// ε̂ from the prediction at `x = a·x0 + s·ε`: x0 → `(x − a·x0)/s`, v → `a·v + s·x`.
pub fn eps_from(
    prediction: Prediction,
    out: &Tensor,
    x: &Tensor,
    a: f32,
    s: f32,
) -> Result<Tensor> {
    match prediction {
        Prediction::Epsilon => Ok(out.clone()),
        Prediction::Sample => eps_of_x0(out, x, a, s),
        Prediction::VPrediction => lin(a, out, s, x),
    }
}

/// `ε = (x − a·x0)/s`.
pub fn eps_of_x0(x0: &Tensor, x: &Tensor, a: f32, s: f32) -> Result<Tensor> {
    if s == 0.0 {
        return Err(Error::sampler(
            "prediction_type",
            "an x0-prediction at ᾱ = 1 determines no ε̂",
        ));
    }
    div_scalar(&x.sub(&x0.mul_scalar(a)?)?, s)
}

/// `(α, σ_t, λ)` of the noise level σ in the variance-preserving view, in float32 as diffusers'
/// `_sigma_to_alpha_sigma_t`: `α = 1/√(σ² + 1)`, `σ_t = σ·α`, `λ = log α − log σ_t` (+∞ at σ = 0).
pub fn vp_level(sigma: f32) -> (f32, f32, f32) {
    let alpha = 1.0 / (sigma * sigma + 1.0).sqrt();
    let sigma_t = sigma * alpha;
    (alpha, sigma_t, alpha.ln() - sigma_t.ln())
}

/// How the predicted clean sample is kept in range: not at all, clipped to `[−r, r]`, or dynamically thresholded
/// (which takes precedence when both are set, as in diffusers).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct X0Limit {
    pub clip: Option<f64>,
    pub threshold: Option<DynamicThreshold>,
}

impl X0Limit {
    /// Refuses a negative or NaN clip range and bad thresholding settings.
    pub fn validate(&self) -> Result<()> {
        if let Some(r) = self.clip {
            if r.is_nan() || r < 0.0 {
                return Err(Error::sampler(
                    "clip_sample_range",
                    format!("{r} must be ≥ 0"),
                ));
            }
        }
        if let Some(threshold) = &self.threshold {
            threshold.validate()?;
        }
        Ok(())
    }

    /// Whether x̂0 is changed at all.
    pub fn is_active(&self) -> bool {
        self.clip.is_some() || self.threshold.is_some()
    }

    /// `x0` thresholded, clipped, or as it is.
    pub fn apply(&self, x0: Tensor) -> Result<Tensor> {
        match (&self.threshold, self.clip) {
            (Some(threshold), _) => threshold.apply(&x0),
            (None, Some(r)) => Ok(x0.clamp(-r as f32, r as f32)?),
            (None, None) => Ok(x0),
        }
    }
}
