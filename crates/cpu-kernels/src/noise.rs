//! Fused noise updates of diffusion models: one pass that draws the Gaussian noise (Philox stream element
//! `offset + i` for element `i`, see [`crate::philox`]) and applies a per-sample affine update.
//!
//! - [`q_sample`], the forward process: `x_t = sqrt(ᾱ_b)·x0 + sqrt(1 − ᾱ_b)·ε`.
//! - [`sampler_step`], one reverse step: `x̂0 = clip(a·x_t + b·model_out)`, `x_prev = c·x̂0 + d·x_t + σ·z`, with the
//!   per-sample coefficients of [`StepCoefficients`]; `docs/kernels/noise-update.md` derives them for DDPM and DDIM
//!   under ε-, x0- and v-prediction.
//!
//! A batch of `B` samples is a slice of `B·E` elements, sample `b` owning elements `b·E..(b+1)·E`. Rayon splits the
//! slice into fixed chunks; each chunk generates its own noise right before using it, so the noise never makes a
//! round trip through memory and the result does not depend on the thread count.

use rayon::prelude::*;

use crate::error::{check_len, KernelError, Result};
use crate::philox::fill_normal_serial;

/// Elements per parallel task; a chunk's noise lives in a stack buffer of this size.
const CHUNK: usize = 8192;

/// The elements per sample of a `len`-element batch with `batch` per-sample coefficients.
fn per_sample_len(op: &'static str, len: usize, batch: usize, offset: u64) -> Result<usize> {
    if offset.checked_add(len as u64).is_none() {
        return Err(KernelError::new(
            op,
            format!("stream offset {offset} + length {len} overflows u64"),
        ));
    }
    if batch == 0 {
        return if len == 0 {
            Ok(0)
        } else {
            Err(KernelError::new(
                op,
                format!("{len} elements but no per-sample coefficients"),
            ))
        };
    }
    if !len.is_multiple_of(batch) {
        return Err(KernelError::new(
            op,
            format!("{len} elements do not split into {batch} equal samples"),
        ));
    }
    Ok(len / batch)
}

/// Calls `f(sample, local_range)` for each run of a chunk (starting at global element `start`, `len` long) that
/// belongs to one sample, so the inner loops see constant coefficients.
fn for_each_sample_run(
    start: usize,
    len: usize,
    per_sample: usize,
    mut f: impl FnMut(usize, std::ops::Range<usize>),
) {
    let mut i = 0;
    while i < len {
        let sample = (start + i) / per_sample;
        let end = ((sample + 1) * per_sample - start).min(len);
        f(sample, i..end);
        i = end;
    }
}

/// Forward process: for sample `b` (each sample has `len/batch` elements): `ε = N(0,1)` from `(seed, offset + i)`;
/// `x_t = sqrt_alpha_bar[b]·x0 + sqrt_one_minus_alpha_bar[b]·ε`. Writes `x_t` and `ε`.
pub fn q_sample(
    x0: &[f32],
    sqrt_alpha_bar: &[f32],
    sqrt_one_minus_alpha_bar: &[f32],
    seed: u64,
    offset: u64,
    x_t: &mut [f32],
    eps: &mut [f32],
) -> Result<()> {
    const OP: &str = "q_sample";
    let per_sample = per_sample_len(OP, x0.len(), sqrt_alpha_bar.len(), offset)?;
    check_len(
        OP,
        "sqrt_one_minus_alpha_bar",
        sqrt_one_minus_alpha_bar.len(),
        sqrt_alpha_bar.len(),
    )?;
    check_len(OP, "x_t", x_t.len(), x0.len())?;
    check_len(OP, "eps", eps.len(), x0.len())?;

    x_t.par_chunks_mut(CHUNK)
        .zip(eps.par_chunks_mut(CHUNK))
        .zip(x0.par_chunks(CHUNK))
        .enumerate()
        .for_each(|(chunk, ((x_t, eps), x0))| {
            let start = chunk * CHUNK;
            fill_normal_serial(seed, offset + start as u64, eps);
            for_each_sample_run(start, x0.len(), per_sample, |b, run| {
                let (a, s) = (sqrt_alpha_bar[b], sqrt_one_minus_alpha_bar[b]);
                for ((x_t, &x0), &e) in x_t[run.clone()]
                    .iter_mut()
                    .zip(&x0[run.clone()])
                    .zip(&eps[run])
                {
                    *x_t = a * x0 + s * e;
                }
            });
        });
    Ok(())
}

/// Per-sample coefficients of the general sampler step (see [`sampler_step`]).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct StepCoefficients {
    pub x0_from_xt: f32,
    pub x0_from_model: f32,
    pub mean_from_x0: f32,
    pub mean_from_xt: f32,
    pub sigma: f32,
}

/// What the network predicts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prediction {
    /// The added noise ε.
    Epsilon,
    /// The clean sample x0.
    Sample,
    /// The velocity `v = sqrt(ᾱ)·ε − sqrt(1 − ᾱ)·x0` (Salimans & Ho, 2022).
    VPrediction,
}

/// The variance of DDPM's reverse step (Ho et al., 2020, §3.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DdpmVariance {
    /// `σ² = β̃_t = β_t·(1 − ᾱ_prev)/(1 − ᾱ_t)`, the posterior variance.
    FixedSmall,
    /// `σ² = β_t`.
    FixedLarge,
}

/// `(x0_from_xt, x0_from_model)`: x̂0 as a linear function of `x_t` and the model output, from
/// `x_t = sqrt(ᾱ)·x0 + sqrt(1 − ᾱ)·ε`.
fn x0_terms(alpha_bar_t: f64, target: Prediction) -> (f64, f64) {
    let (a, s) = (alpha_bar_t.sqrt(), (1.0 - alpha_bar_t).sqrt());
    match target {
        Prediction::Epsilon => (1.0 / a, -s / a),
        Prediction::Sample => (0.0, 1.0),
        Prediction::VPrediction => (a, -s),
    }
}

fn check_alpha_bars(op: &'static str, alpha_bar_t: f64, alpha_bar_prev: f64) -> Result<()> {
    if alpha_bar_t > 0.0
        && alpha_bar_t < 1.0
        && alpha_bar_t <= alpha_bar_prev
        && alpha_bar_prev <= 1.0
    {
        Ok(())
    } else {
        Err(KernelError::new(
            op,
            format!("need 0 < alpha_bar_t ({alpha_bar_t}) < 1 and alpha_bar_t ≤ alpha_bar_prev ({alpha_bar_prev}) ≤ 1"),
        ))
    }
}

impl StepCoefficients {
    /// DDPM ancestral step `t → t−1` from the cumulative products `ᾱ_t` and `ᾱ_{t−1}` (pass `ᾱ_prev = 1` for the
    /// last step, which then adds no noise): mean = posterior mean `μ̃ = c0·x̂0 + ct·x_t` with
    /// `c0 = sqrt(ᾱ_prev)·β_t/(1 − ᾱ_t)`, `ct = sqrt(α_t)·(1 − ᾱ_prev)/(1 − ᾱ_t)`, `α_t = ᾱ_t/ᾱ_prev`,
    /// `β_t = 1 − α_t`.
    pub fn ddpm(
        alpha_bar_t: f64,
        alpha_bar_prev: f64,
        target: Prediction,
        variance: DdpmVariance,
    ) -> Result<Self> {
        check_alpha_bars("StepCoefficients::ddpm", alpha_bar_t, alpha_bar_prev)?;
        let alpha_t = alpha_bar_t / alpha_bar_prev;
        let beta_t = 1.0 - alpha_t;
        let (x0_from_xt, x0_from_model) = x0_terms(alpha_bar_t, target);
        let variance = match variance {
            _ if alpha_bar_prev == 1.0 => 0.0,
            DdpmVariance::FixedSmall => beta_t * (1.0 - alpha_bar_prev) / (1.0 - alpha_bar_t),
            DdpmVariance::FixedLarge => beta_t,
        };
        Ok(Self {
            x0_from_xt: x0_from_xt as f32,
            x0_from_model: x0_from_model as f32,
            mean_from_x0: (alpha_bar_prev.sqrt() * beta_t / (1.0 - alpha_bar_t)) as f32,
            mean_from_xt: (alpha_t.sqrt() * (1.0 - alpha_bar_prev) / (1.0 - alpha_bar_t)) as f32,
            sigma: variance.sqrt() as f32,
        })
    }

    /// DDIM step (Song et al., 2021, eq. 12) with stochasticity `η ≥ 0` (0: deterministic DDIM, 1: DDPM's
    /// posterior variance): `σ = η·sqrt((1 − ᾱ_prev)/(1 − ᾱ_t))·sqrt(1 − ᾱ_t/ᾱ_prev)`,
    /// mean `= sqrt(ᾱ_prev)·x̂0 + sqrt(1 − ᾱ_prev − σ²)·ε̂` with `ε̂ = (x_t − sqrt(ᾱ_t)·x̂0)/sqrt(1 − ᾱ_t)`, i.e.
    /// `mean_from_xt = k = sqrt(1 − ᾱ_prev − σ²)/sqrt(1 − ᾱ_t)` and `mean_from_x0 = sqrt(ᾱ_prev) − k·sqrt(ᾱ_t)`.
    pub fn ddim(
        alpha_bar_t: f64,
        alpha_bar_prev: f64,
        eta: f64,
        target: Prediction,
    ) -> Result<Self> {
        const OP: &str = "StepCoefficients::ddim";
        check_alpha_bars(OP, alpha_bar_t, alpha_bar_prev)?;
        if !(eta >= 0.0 && eta.is_finite()) {
            return Err(KernelError::new(
                OP,
                format!("eta {eta} must be finite and ≥ 0"),
            ));
        }
        let sigma = eta
            * ((1.0 - alpha_bar_prev) / (1.0 - alpha_bar_t) * (1.0 - alpha_bar_t / alpha_bar_prev))
                .sqrt();
        // 1 − ᾱ_prev − σ² = (1 − ᾱ_prev)·(1 − η²·β/(1 − ᾱ_t)) with β = 1 − ᾱ_t/ᾱ_prev: negative only for
        // η² > (1 − ᾱ_t)/β (≥ 1, so never for η ≤ 1, where it may still round to −1e-17). Past that threshold the step
        // has no deterministic part left, and the clamp keeps the square root real.
        let k = (1.0 - alpha_bar_prev - sigma * sigma).max(0.0).sqrt() / (1.0 - alpha_bar_t).sqrt();
        let (x0_from_xt, x0_from_model) = x0_terms(alpha_bar_t, target);
        Ok(Self {
            x0_from_xt: x0_from_xt as f32,
            x0_from_model: x0_from_model as f32,
            mean_from_x0: (alpha_bar_prev.sqrt() - k * alpha_bar_t.sqrt()) as f32,
            mean_from_xt: k as f32,
            sigma: sigma as f32,
        })
    }
}

/// `x0_hat = clip(x0_from_xt·x_t + x0_from_model·model_out, ±clip)` (clip `None` = no clip);
/// `x_prev = mean_from_x0·x0_hat + mean_from_xt·x_t + sigma·z`, `z` from `(seed, offset + i)` (not drawn if
/// `sigma == 0` for all samples). Writes `x_prev` and `x0_hat`. This covers DDPM ancestral (posterior mean) and DDIM
/// with η ≥ 0 for ε, x0 and v prediction.
#[allow(clippy::too_many_arguments)] // the fixed kernel signature shared with the CUDA crate
pub fn sampler_step(
    x_t: &[f32],
    model_out: &[f32],
    coef: &[StepCoefficients],
    clip: Option<f32>,
    seed: u64,
    offset: u64,
    x_prev: &mut [f32],
    x0_hat: &mut [f32],
) -> Result<()> {
    const OP: &str = "sampler_step";
    let per_sample = per_sample_len(OP, x_t.len(), coef.len(), offset)?;
    check_len(OP, "model_out", model_out.len(), x_t.len())?;
    check_len(OP, "x_prev", x_prev.len(), x_t.len())?;
    check_len(OP, "x0_hat", x0_hat.len(), x_t.len())?;
    let bound = match clip {
        Some(c) if c.is_nan() || c < 0.0 => {
            return Err(KernelError::new(OP, format!("clip bound {c} must be ≥ 0")))
        }
        Some(c) => c,
        None => f32::INFINITY,
    };
    let noisy = coef.iter().any(|c| c.sigma != 0.0);

    x_prev
        .par_chunks_mut(CHUNK)
        .zip(x0_hat.par_chunks_mut(CHUNK))
        .zip(x_t.par_chunks(CHUNK).zip(model_out.par_chunks(CHUNK)))
        .enumerate()
        .for_each(|(chunk, ((x_prev, x0_hat), (x_t, model_out)))| {
            let start = chunk * CHUNK;
            let mut z = [0.0f32; CHUNK];
            let z = &mut z[..x_t.len()];
            if noisy {
                fill_normal_serial(seed, offset + start as u64, z);
            }
            for_each_sample_run(start, x_t.len(), per_sample, |b, run| {
                let c = coef[b];
                let outputs = x_prev[run.clone()]
                    .iter_mut()
                    .zip(x0_hat[run.clone()].iter_mut());
                let inputs = x_t[run.clone()]
                    .iter()
                    .zip(&model_out[run.clone()])
                    .zip(&z[run]);
                for ((x_prev, x0_hat), ((&x_t, &model), &z)) in outputs.zip(inputs) {
                    let x0 = (c.x0_from_xt * x_t + c.x0_from_model * model).clamp(-bound, bound);
                    *x0_hat = x0;
                    *x_prev = c.mean_from_x0 * x0 + c.mean_from_xt * x_t + c.sigma * z;
                }
            });
        });
    Ok(())
}
