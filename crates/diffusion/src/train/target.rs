//! What the network is trained to predict, and the conversions between the three parameterisations, in one place.
//!
//! With `a = √ᾱ_t`, `s = √(1−ᾱ_t)` (so `a² + s² = 1`) a noisy sample is `x_t = a·x0 + s·ε`, and the velocity of
//! Salimans & Ho (2022) is `v = a·ε − s·x0`. Given `x_t`, each of ε, x0, v determines the other two linearly:
//!
//! | from \ to | x0                   | ε                    | v                    |
//! |-----------|----------------------|----------------------|----------------------|
//! | ε         | `(x_t − s·ε)/a`      | `ε`                  | `(ε − s·x_t)/a`      |
//! | x0        | `x0`                 | `(x_t − a·x0)/s`     | `(a·x_t − x0)/s`     |
//! | v         | `a·x_t − s·v`        | `s·x_t + a·v`        | `v`                  |
//!
//! ([`convert`] gives each entry as a pair of coefficients on `(x_t, output)`.) The training target, as a
//! function of the clean image and the drawn noise, is ε: `(0, 1)`, x0: `(1, 0)`, v: `(−s, a)` on `(x0, ε)`
//! ([`target_coefficients`]).

use crate::error::{Error, Result};
use crate::schedule::PredictionType;
use diffuse_tensor::Tensor;

pub use diffuse_cpu_kernels::noise::Prediction;

/// The kernel-level [`Prediction`] a scheduler config's `prediction_type` names.
pub fn prediction_of(kind: PredictionType) -> Prediction {
    match kind {
        PredictionType::Epsilon => Prediction::Epsilon,
        PredictionType::Sample => Prediction::Sample,
        PredictionType::VPrediction => Prediction::VPrediction,
    }
}

/// The scheduler-config name of a [`Prediction`].
pub fn prediction_type(prediction: Prediction) -> PredictionType {
    match prediction {
        Prediction::Epsilon => PredictionType::Epsilon,
        Prediction::Sample => PredictionType::Sample,
        Prediction::VPrediction => PredictionType::VPrediction,
    }
}

/// `(c_x0, c_ε)` with `target = c_x0·x0 + c_ε·ε` at `ᾱ = alpha_bar`.
pub fn target_coefficients(prediction: Prediction, alpha_bar: f64) -> (f64, f64) {
    let (a, s) = (alpha_bar.sqrt(), (1.0 - alpha_bar).sqrt());
    match prediction {
        Prediction::Epsilon => (0.0, 1.0),
        Prediction::Sample => (1.0, 0.0),
        Prediction::VPrediction => (-s, a),
    }
}

/// `(c_xt, c_out)` such that `to = c_xt·x_t + c_out·output` when the network output is a `from`-prediction at
/// `ᾱ = alpha_bar` (the table of the module documentation).
pub fn convert(from: Prediction, to: Prediction, alpha_bar: f64) -> (f64, f64) {
    use Prediction::{Epsilon as E, Sample as X, VPrediction as V};
    let (a, s) = (alpha_bar.sqrt(), (1.0 - alpha_bar).sqrt());
    match (from, to) {
        (E, E) | (X, X) | (V, V) => (0.0, 1.0),
        (E, X) => (1.0 / a, -s / a),
        (E, V) => (-s / a, 1.0 / a),
        (X, E) => (1.0 / s, -a / s),
        (X, V) => (a / s, -1.0 / s),
        (V, X) => (a, -s),
        (V, E) => (s, a),
    }
}

/// `x` (dimension 0 = samples) with sample `b` multiplied by `coefficients[b]`.
pub fn scale_samples(x: &Tensor, coefficients: &[f32]) -> Result<Tensor> {
    let batch = x.shape().first().copied().unwrap_or(0);
    if coefficients.len() != batch {
        return Err(Error::sampler(
            "coefficients",
            format!("{} for a batch of {batch} samples", coefficients.len()),
        ));
    }
    let mut shape = vec![1; x.rank()];
    shape[0] = batch;
    let c = Tensor::from_slice(coefficients, &shape, x.device())?;
    Ok(x.mul(&c)?)
}

/// The per-sample training target for `x0` noised with `eps` at the per-sample `alpha_bars`.
pub fn training_target(
    prediction: Prediction,
    x0: &Tensor,
    eps: &Tensor,
    alpha_bars: &[f64],
) -> Result<Tensor> {
    match prediction {
        Prediction::Epsilon => Ok(eps.clone()),
        Prediction::Sample => Ok(x0.clone()),
        Prediction::VPrediction => {
            let (cx, ce): (Vec<f32>, Vec<f32>) = alpha_bars
                .iter()
                .map(|&ab| {
                    let (cx, ce) = target_coefficients(prediction, ab);
                    (cx as f32, ce as f32)
                })
                .unzip();
            Ok(scale_samples(x0, &cx)?.add(&scale_samples(eps, &ce)?)?)
        }
    }
}
