//! Negative log-likelihood in bits per dimension from the variational bound of Ho et al. (2020), eq. 5:
//!
//! ```text
//! −ln p_θ(x₀) ≤ L = L_T + Σ_{t=2}^{T} L_{t−1} + L₀
//!   L_T     = KL(q(x_T | x₀) ‖ N(0, I))                   = Σ_d ½(ᾱ_T x₀² − ᾱ_T − ln(1 − ᾱ_T))
//!   L_{t−1} = KL(q(x_{t−1} | x_t, x₀) ‖ p_θ(x_{t−1} | x_t)),  x_t ~ q(x_t | x₀)
//!   L₀      = −ln p_θ(x₀ | x₁),                             x₁ ~ q(x₁ | x₀)
//! bits/dim = L / (D·ln 2)
//! ```
//!
//! with (paper indexing, t = 1..T, ᾱ₀ = 1)
//!
//! ```text
//! q(x_{t−1} | x_t, x₀) = N(μ̃, β̃_t),  μ̃(x_t, x₀) = (√ᾱ_{t−1} β_t x₀ + √α_t (1 − ᾱ_{t−1}) x_t)/(1 − ᾱ_t),
//!                                     β̃_t = β_t (1 − ᾱ_{t−1})/(1 − ᾱ_t)
//! p_θ(x_{t−1} | x_t)   = N(μ̃(x_t, x̂₀), σ_t²),   σ_t² = β̃_t (fixed small) or β_t (fixed large)
//! ```
//!
//! so `L_{t−1} = Σ_d KL(N(μ̃(x_t, x₀), β̃_t) ‖ N(μ̃(x_t, x̂₀), σ_t²))`, where the μ̃ differ by
//! `√ᾱ_{t−1} β_t (x₀ − x̂₀)/(1 − ᾱ_t)`. The decoder L₀ is the discretised Gaussian of [`super::normal`] with mean
//! μ̃(x₁, x̂₀) = x̂₀ and variance β̃₂ for both variance choices (the convention of Ho et al.'s released code; β̃₁ = 0).
//! x̂₀ comes from the model's ε, x₀ or v prediction. Each L_{t−1} is estimated with one draw of x_t, so the bound of
//! an image is an unbiased estimate of its expectation; the mean over images comes with its standard error.
//!
//! All T terms of an image are computed: the (image, timestep) pairs are laid out image-major and sent to the model
//! `batch` pairs at a time. Pair `p = image·T + t` takes its noise from elements `p·D .. (p+1)·D` of the Philox stream
//! `seed`, so the estimate does not depend on `batch`.

use super::invalid;
use super::normal::{discretised_gaussian_log_likelihood, gaussian_kl};
use crate::error::Result;
use crate::sampler::{Condition, Denoiser, Prediction};
use crate::schedule::NoiseSchedule;
pub use diffuse_cpu_kernels::noise::DdpmVariance;
use diffuse_tensor::Tensor;
use serde::{Deserialize, Serialize};
use std::f64::consts::LN_2;

/// How the bound is evaluated.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BoundOptions {
    /// The reverse-process variance σ_t² the model was trained (or is sampled) with.
    pub variance: DdpmVariance,
    /// Clip x̂₀ to [−1, 1] before forming the reverse mean (as Ho et al. do when they report NLL).
    pub clip_denoised: bool,
    /// The Philox stream of the x_t draws.
    pub seed: u64,
    /// (image, timestep) pairs per model call.
    pub batch: usize,
}

impl Default for BoundOptions {
    fn default() -> Self {
        BoundOptions {
            variance: DdpmVariance::FixedLarge,
            clip_denoised: true,
            seed: 0,
            batch: 256,
        }
    }
}

/// The three parts of one image's bound, each in bits per dimension.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct BoundTerms {
    /// L_T.
    pub prior: f64,
    /// Σ_{t=2}^{T} L_{t−1}.
    pub diffusion: f64,
    /// L₀.
    pub decoder: f64,
}

impl BoundTerms {
    pub fn total(&self) -> f64 {
        self.prior + self.diffusion + self.decoder
    }
}

/// The bound over a set of images.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BitsPerDim {
    /// Mean over images of the total bound, bits/dim.
    pub mean: f64,
    /// Standard error of that mean, s/√N with the sample standard deviation s (NaN for one image).
    pub std_error: f64,
    /// Every image's terms, in input order.
    pub per_image: Vec<BoundTerms>,
}

/// x̂₀ from the model output at a timestep with cumulative ᾱ.
fn predicted_x0(prediction: Prediction, alpha_bar: f64, x_t: f64, output: f64) -> f64 {
    let (a, s) = (alpha_bar.sqrt(), (1.0 - alpha_bar).sqrt());
    match prediction {
        Prediction::Epsilon => (x_t - s * output) / a,
        Prediction::Sample => output,
        Prediction::VPrediction => a * x_t - s * output,
    }
}

/// The schedule as the terms of the bound use it (array index t is the paper's step t + 1).
struct Terms<'a> {
    betas: &'a [f64],
    alpha_bars: &'a [f64],
    variance: DdpmVariance,
}

impl Terms<'_> {
    /// β̃ at index t ≥ 1.
    fn posterior_variance(&self, t: usize) -> f64 {
        self.betas[t] * (1.0 - self.alpha_bars[t - 1]) / (1.0 - self.alpha_bars[t])
    }

    /// L_T of one image, in nats: Σ_d KL(N(√ᾱ_T x₀, 1 − ᾱ_T) ‖ N(0, 1)).
    fn prior_nats(&self, x0: &[f64]) -> f64 {
        let a = self.alpha_bars[self.alpha_bars.len() - 1];
        x0.iter()
            .map(|&v| 0.5 * (a * v * v - a - (1.0 - a).ln()))
            .sum()
    }

    /// The term of index t of one image, in nats, given its x₀ and the model's x̂₀: the decoder L₀ at t = 0, the
    /// KL L_t (paper numbering) otherwise. The μ̃ of q and p_θ share the x_t part, which cancels in the difference.
    fn step_nats(&self, t: usize, x0: &[f64], x0_hat: impl Iterator<Item = f64>) -> f64 {
        if t == 0 {
            let std = self.posterior_variance(1).sqrt();
            return x0
                .iter()
                .zip(x0_hat)
                .map(|(&v, m)| -discretised_gaussian_log_likelihood(v, m, std))
                .sum();
        }
        let q_var = self.posterior_variance(t);
        let p_var = match self.variance {
            DdpmVariance::FixedSmall => q_var,
            DdpmVariance::FixedLarge => self.betas[t],
        };
        let coef = self.alpha_bars[t - 1].sqrt() * self.betas[t] / (1.0 - self.alpha_bars[t]);
        x0.iter()
            .zip(x0_hat)
            .map(|(&v, m)| gaussian_kl(coef * v, q_var, coef * m, p_var))
            .sum()
    }
}

/// Snaps a value in [−1, 1] to the nearest of the 256 pixel levels k/127.5 − 1.
fn quantise(x: f32) -> f64 {
    ((f64::from(x) + 1.0) * 127.5).round().clamp(0.0, 255.0) / 127.5 - 1.0
}

/// The variational bound of `model` on `images` (N, …) with values in [−1, 1] (snapped to the 256 levels), each with
/// its class label when the model is conditional.
pub fn variational_bound(
    model: &dyn Denoiser,
    schedule: &NoiseSchedule,
    images: &Tensor,
    class: Option<&[u32]>,
    options: &BoundOptions,
) -> Result<BitsPerDim> {
    const OP: &str = "variational_bound";
    let steps = schedule.len();
    let n = images.shape().first().copied().unwrap_or(0);
    if n == 0 || images.numel() == 0 {
        return Err(invalid(
            OP,
            format!("images of shape {:?} hold no image", images.shape()),
        ));
    }
    if steps < 2 || options.batch == 0 {
        return Err(invalid(
            OP,
            format!("needs a schedule of at least 2 steps (got {steps}) and a batch of at least 1 (got {})", options.batch),
        ));
    }
    if class.is_some_and(|c| c.len() != n) {
        return Err(invalid(
            OP,
            format!(
                "{} class labels for {n} images",
                class.map_or(0, <[u32]>::len)
            ),
        ));
    }
    let alpha_bars = &schedule.alphas_cumprod;
    if alpha_bars.iter().any(|&a| !(a > 0.0 && a < 1.0)) {
        return Err(invalid(
            OP,
            "every ᾱ_t must lie strictly between 0 and 1 (x̂₀ and the prior need it)",
        ));
    }
    let dim = images.numel() / n;
    let x0: Vec<f64> = images.to_vec()?.into_iter().map(quantise).collect();
    let terms_of = Terms {
        betas: &schedule.betas,
        alpha_bars,
        variance: options.variance,
    };
    let nats_to_bits = 1.0 / (dim as f64 * LN_2);
    let mut terms: Vec<BoundTerms> = x0
        .chunks_exact(dim)
        .map(|x| BoundTerms {
            prior: terms_of.prior_nats(x) * nats_to_bits,
            ..BoundTerms::default()
        })
        .collect();

    // Pair p = image·T + t, in chunks of `batch` pairs: one noise draw and one model call per chunk.
    let (image_of, t_of) = (|p: usize| p / steps, |p: usize| p % steps);
    let pairs = n * steps;
    let mut shape = images.shape().to_vec();
    for start in (0..pairs).step_by(options.batch) {
        let len = options.batch.min(pairs - start);
        shape[0] = len;
        let offset = (start as u64)
            .checked_mul(dim as u64)
            .ok_or_else(|| invalid(OP, "noise offset overflows u64"))?;
        let noise = Tensor::randn(&[len * dim], options.seed, offset, images.device())?.to_vec()?;
        // x_t = √ᾱ_t·x₀ + √(1 − ᾱ_t)·ε.
        let mut x_t = Vec::with_capacity(len * dim);
        for (k, eps) in noise.chunks_exact(dim).enumerate() {
            let (i, t) = (image_of(start + k), t_of(start + k));
            let (a, s) = (alpha_bars[t].sqrt(), (1.0 - alpha_bars[t]).sqrt());
            let x = &x0[i * dim..(i + 1) * dim];
            x_t.extend(
                x.iter()
                    .zip(eps)
                    .map(|(&v, &e)| (a * v + s * f64::from(e)) as f32),
            );
        }
        let timesteps: Vec<f64> = (start..start + len).map(|p| t_of(p) as f64).collect();
        let labels: Option<Vec<u32>> =
            class.map(|c| (start..start + len).map(|p| c[image_of(p)]).collect());
        let input = Tensor::from_vec(x_t.clone(), &shape, images.device())?;
        let output = model.predict(&input, &timesteps, Condition::class_opt(labels.as_deref()))?;
        if output.numel() != len * dim {
            return Err(invalid(
                OP,
                format!(
                    "the model returned shape {:?} for an input of shape {shape:?}",
                    output.shape()
                ),
            ));
        }
        let output = output.to_vec()?;
        for k in 0..len {
            let (i, t) = (image_of(start + k), t_of(start + k));
            let range = k * dim..(k + 1) * dim;
            let x0_hat = x_t[range.clone()]
                .iter()
                .zip(&output[range])
                .map(|(&xt, &out)| {
                    let x = predicted_x0(
                        model.prediction(),
                        alpha_bars[t],
                        f64::from(xt),
                        f64::from(out),
                    );
                    if options.clip_denoised {
                        x.clamp(-1.0, 1.0)
                    } else {
                        x
                    }
                });
            let bits = terms_of.step_nats(t, &x0[i * dim..(i + 1) * dim], x0_hat) * nats_to_bits;
            if t == 0 {
                terms[i].decoder = bits;
            } else {
                terms[i].diffusion += bits;
            }
        }
    }

    let totals: Vec<f64> = terms.iter().map(BoundTerms::total).collect();
    let mean = totals.iter().sum::<f64>() / n as f64;
    let variance = totals.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / (n as f64 - 1.0);
    Ok(BitsPerDim {
        mean,
        std_error: (variance / n as f64).sqrt(),
        per_image: terms,
    })
}
