//! Per-timestep weights of the regression loss.
//!
//! Min-SNR-γ (Hang et al. 2023, "Efficient Diffusion Training via Min-SNR Weighting Strategy") clamps the
//! signal-to-noise ratio `SNR_t = ᾱ_t/(1−ᾱ_t)` at `γ` so that low-noise timesteps, which are easy and whose gradients
//! conflict with the rest, stop dominating. Expressed as the weight of the loss on each target (paper §3.4):
//!
//! - x0-prediction: `w_t = min(SNR_t, γ)`;
//! - ε-prediction: `‖ε − ε̂‖² = SNR_t·‖x0 − x̂0‖²`, so `w_t = min(SNR_t, γ)/SNR_t`;
//! - v-prediction: `‖v − v̂‖² = (SNR_t + 1)·‖x0 − x̂0‖²`, so `w_t = min(SNR_t, γ)/(SNR_t + 1)`.
//!
//! γ = 5 is the paper's recommendation.

use super::target::Prediction;
use serde::{Deserialize, Serialize};

/// How the per-sample losses are weighted by timestep.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LossWeighting {
    /// Every timestep weighs 1 (the "simple" loss of Ho et al. 2020 for ε).
    Uniform,
    /// Min-SNR-γ.
    MinSnr { gamma: f64 },
}

impl LossWeighting {
    /// The weight of a sample at signal-to-noise ratio `snr` whose network predicts `prediction`.
    pub fn weight(self, snr: f64, prediction: Prediction) -> f64 {
        match self {
            LossWeighting::Uniform => 1.0,
            LossWeighting::MinSnr { gamma } => {
                let clamped = snr.min(gamma);
                match prediction {
                    Prediction::Sample => clamped,
                    // At SNR 0 (a zero-terminal-SNR schedule's last step) the ratio's limit is 1.
                    Prediction::Epsilon if snr > 0.0 => clamped / snr,
                    Prediction::Epsilon => 1.0,
                    Prediction::VPrediction => clamped / (snr + 1.0),
                }
            }
        }
    }
}
