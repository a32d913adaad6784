//! Dynamic thresholding of the predicted clean sample (Saharia et al. 2022, "Imagen", §2.3).
//!
//! Per sample b, with n elements: `s_b` = the `ratio` quantile of `|x̂0_b|` (linear interpolation between order
//! statistics, position `ratio·(n − 1)`, as `torch.quantile`), clamped to `[1, max]`; then
//! `x̂0_b ← clamp(x̂0_b, −s_b, s_b) / s_b`. A prediction that stays inside `[−1, 1]` has `s_b ≤ 1`, so it is only
//! clipped to `[−1, 1]`; one that overshoots (large guidance scales do) is scaled back into range as a whole instead of
//! being flattened at ±1. diffusers' `thresholding = True` with `dynamic_thresholding_ratio` and `sample_max_value`
//! is the same rule.
//!
//! The quantile needs each sample's values sorted, so this runs on the host; a sampler calls it once per step.

use crate::error::{Error, Result};
use diffuse_tensor::Tensor;

/// The two settings of dynamic thresholding.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DynamicThreshold {
    /// Which quantile of `|x̂0|` sets the threshold, in (0, 1] (Imagen and diffusers: 0.995).
    pub ratio: f64,
    /// The largest threshold, ≥ 1 (diffusers' `sample_max_value`).
    pub max: f64,
}

impl DynamicThreshold {
    /// Refuses a ratio outside (0, 1] or a maximum below 1.
    pub fn validate(&self) -> Result<()> {
        if !(self.ratio > 0.0 && self.ratio <= 1.0) {
            return Err(Error::sampler(
                "dynamic_threshold",
                format!("ratio {} must be in (0, 1]", self.ratio),
            ));
        }
        if !(self.max >= 1.0 && self.max.is_finite()) {
            return Err(Error::sampler(
                "dynamic_threshold",
                format!("max {} must be finite and ≥ 1", self.max),
            ));
        }
        Ok(())
    }

    /// Thresholds every sample (dimension 0) of `x0` by its own quantile.
    pub fn apply(&self, x0: &Tensor) -> Result<Tensor> {
        self.validate()?;
        let shape = x0.shape().to_vec();
        let batch = shape.first().copied().unwrap_or(1).max(1);
        let mut values = x0.to_vec()?;
        let per_sample = values.len() / batch;
        if per_sample == 0 {
            return Ok(x0.clone());
        }
        let mut sorted = vec![0.0f64; per_sample];
        for sample in values.chunks_exact_mut(per_sample) {
            for (s, &v) in sorted.iter_mut().zip(sample.iter()) {
                *s = f64::from(v).abs();
            }
            sorted.sort_by(f64::total_cmp);
            let s = quantile_of_sorted(&sorted, self.ratio).clamp(1.0, self.max) as f32;
            for v in sample.iter_mut() {
                *v = v.clamp(-s, s) / s;
            }
        }
        Ok(Tensor::from_vec(values, &shape, x0.device())?)
    }
}

/// The `q` quantile of ascending `sorted` (non-empty): linear interpolation at position `q·(n − 1)`.
fn quantile_of_sorted(sorted: &[f64], q: f64) -> f64 {
    let position = q * (sorted.len() - 1) as f64;
    let below = position.floor() as usize;
    let above = (below + 1).min(sorted.len() - 1);
    let fraction = position - below as f64;
    sorted[below] + fraction * (sorted[above] - sorted[below])
}
