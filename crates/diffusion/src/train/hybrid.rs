//! The hybrid objective of a network that predicts its variance (Nichol & Dhariwal 2021, as DiT trains):
//!
//! ```text
//! L_hybrid = L_simple + λ·L_vlb,      λ = 0.001
//! ```
//!
//! The network outputs `2C` channels for a `C`-channel image: the first `C` are the usual prediction (ε, x0 or v),
//! trained by `L_simple`, the mean squared error against the target; the last `C` are `v`, the learned-range
//! interpolation of the variance ([`crate::learned_range`]), trained by the variational bound. With uniform timesteps
//! the bound `L_vlb = L_0 + … + L_{T−1}` is estimated by `T·L_t` at the drawn `t`, where (0-based `t`)
//!
//! ```text
//! L_t = KL(q(x_{t−1} | x_t, x0) ‖ p(x_{t−1} | x_t))            t > 0
//!     = ½·(−1 + log σ² − log β̃_t + β̃_t/σ² + (μ̃ − μ_θ)²/σ²)     per element
//! L_0 = −log p(x0 | x_1): the discretised Gaussian N(μ_θ, σ²) over the 256 pixel bins of width 2/255 (the end bins
//!       open), with the tanh approximation of the normal CDF, Φ(z) ≈ ½(1 + tanh(√(2/π)(z + 0.044715z³)))
//! μ̃   = c₁·x0 + c₂·x_t,   μ_θ = c₁·x̂0 + c₂·x_t,   c₁ = β_t·√ᾱ_{t−1}/(1 − ᾱ_t),  c₂ = √α_t·(1 − ᾱ_{t−1})/(1 − ᾱ_t)
//! ```
//!
//! each averaged over the elements and divided by ln 2 (bits per dimension), exactly as improved DDPM's and DiT's
//! released code compute it (whose `λ·T·L_t` with T = 1000 is their unscaled `vb` term). **Stop-gradient on the
//! mean**: `x̂0` comes from the first `C` channels *detached*, so `L_vlb` trains only the variance and `L_simple`
//! alone shapes the mean (the bound is a noisy objective that would otherwise disturb it).

use super::target::{convert, Prediction};
use crate::error::{Error, Result};
use crate::learned_range::{learned_range_log_variance, per_sample, training_log_variance_bounds};
use crate::schedule::NoiseSchedule;
use diffuse_autograd::Var;
use diffuse_tensor::Tensor;

/// λ of `L_simple + λ·L_vlb` in improved DDPM and DiT.
pub const DEFAULT_VLB_WEIGHT: f64 = 0.001;

/// Half the width of one of the 256 pixel bins over [−1, 1].
const HALF_BIN: f32 = 1.0 / 255.0;

/// The two per-sample terms of the hybrid objective, each (N,).
pub struct HybridTerms {
    /// Mean over elements of `(prediction − target)²`, the first `C` output channels against the target.
    pub mse: Var,
    /// `L_t` in bits per dimension (see the module documentation), a function of the variance channels only.
    pub vlb: Var,
}

/// What the bound needs of a training batch besides the network output.
pub struct Batch<'a> {
    /// The clean images (N, C, …), values on the 256 levels of [−1, 1].
    pub x0: &'a Tensor,
    /// Their noised versions at `timesteps`.
    pub x_t: &'a Tensor,
    /// The training target of the first `C` channels (ε, x0 or v).
    pub target: &'a Tensor,
    /// 0-based training timesteps, one per sample.
    pub timesteps: &'a [usize],
}

/// Splits the `2C`-channel `output` of a variance-predicting network into its prediction and its variance and
/// returns both terms of the hybrid objective. `prediction` says what the first `C` channels predict.
pub fn hybrid_terms(
    schedule: &NoiseSchedule,
    prediction: Prediction,
    output: &Var,
    batch: &Batch<'_>,
) -> Result<HybridTerms> {
    let shape = batch.x0.shape().to_vec();
    let c = shape.get(1).copied().unwrap_or(0);
    let mut doubled = shape.clone();
    if doubled.len() >= 2 {
        doubled[1] *= 2;
    }
    if shape.len() < 2 || output.shape() != doubled.as_slice() {
        return Err(Error::train(
            "learned variance",
            format!(
                "the network output {:?} is not twice the channels of the images {shape:?}",
                output.shape()
            ),
        ));
    }
    let mean = output.narrow(1, 0, c)?;
    let v = output.narrow(1, c, c)?;
    let mse = mean.sample_mse(&Var::constant(batch.target.clone()))?;
    let vlb = vlb_bits_per_dim(schedule, prediction, mean.tensor(), &v, batch)?;
    Ok(HybridTerms { mse, vlb })
}

/// `L_t` of every sample in bits per dimension, from the (constant) prediction `mean` and the variance channels `v`.
pub fn vlb_bits_per_dim(
    schedule: &NoiseSchedule,
    prediction: Prediction,
    mean: &Tensor,
    v: &Var,
    batch: &Batch<'_>,
) -> Result<Var> {
    let (x0, x_t) = (batch.x0, batch.x_t);
    let shape = x0.shape();
    let n = shape[0];
    if batch.timesteps.len() != n {
        return Err(Error::train(
            "learned variance",
            format!("{} timesteps for a batch of {n}", batch.timesteps.len()),
        ));
    }
    let device = x0.device();
    // Per-sample constants: the variance bounds, x̂0 = a·x_t + b·output, and the posterior coefficient c₁.
    let mut bounds = (Vec::with_capacity(n), Vec::with_capacity(n));
    let (mut from_xt, mut from_out, mut c1) = (vec![], vec![], vec![]);
    for &t in batch.timesteps {
        let (lo, hi) = training_log_variance_bounds(schedule, t)?;
        bounds.0.push(lo);
        bounds.1.push(hi);
        let ab = schedule.alpha_bar(t)?;
        if !(ab > 0.0 && ab < 1.0) {
            return Err(Error::train(
                "learned variance",
                format!("ᾱ_{t} = {ab} must lie strictly between 0 and 1 for the bound's x̂0 and posterior"),
            ));
        }
        let ab_prev = if t == 0 {
            1.0
        } else {
            schedule.alpha_bar(t - 1)?
        };
        let (a, b) = convert(prediction, Prediction::Sample, ab);
        from_xt.push(a);
        from_out.push(b);
        c1.push(schedule.betas[t] * ab_prev.sqrt() / (1.0 - ab));
    }
    let constant = |values: &[f64]| per_sample(values, shape, device);
    // x̂0 and its error; the mean of q and p_θ share the x_t part, so μ̃ − μ_θ = c₁·(x0 − x̂0).
    let x0_hat = x_t
        .mul(&constant(&from_xt)?)?
        .add(&mean.mul(&constant(&from_out)?)?)?;
    let log_var = learned_range_log_variance(v, &bounds.0, &bounds.1)?;
    let dims: Vec<usize> = (1..shape.len()).collect();
    let to_bits = 1.0 / std::f32::consts::LN_2;

    // KL, per element: ½·(−1 + (log σ² − log β̃) + e^{log β̃ − log σ²} + (μ̃ − μ_θ)²·e^{−log σ²}).
    let gap2 = x0.sub(&x0_hat)?.mul(&constant(&c1)?)?.square()?;
    let log_ratio = log_var.sub(&Var::constant(constant(&bounds.0)?))?;
    let kl = log_ratio
        .add(&log_ratio.neg()?.exp()?)?
        .add(&log_var.neg()?.exp()?.mul(&Var::constant(gap2))?)?
        .affine(0.5, -0.5)?
        .mean(&dims, false)?
        .mul_scalar(to_bits)?;
    if !batch.timesteps.contains(&0) {
        return Ok(kl);
    }
    // L_0 for the samples at t = 0 (there μ_θ = x̂0), blended in by a per-sample mask.
    let nll = decoder_nll(x0, &x0_hat, &log_var)?
        .mean(&dims, false)?
        .mul_scalar(to_bits)?;
    let at_zero: Vec<f64> = batch
        .timesteps
        .iter()
        .map(|&t| f64::from(u8::from(t == 0)))
        .collect();
    let rest: Vec<f64> = at_zero.iter().map(|m| 1.0 - m).collect();
    let mask = |m: &[f64]| -> Result<Var> {
        Ok(Var::constant(Tensor::from_vec(
            m.iter().map(|&v| v as f32).collect(),
            &[n],
            device,
        )?))
    };
    Ok(nll.mul(&mask(&at_zero)?)?.add(&kl.mul(&mask(&rest)?)?)?)
}

/// `−log P(x0 | N(μ, σ²))` per element over the pixel bins (improved DDPM's `discretized_gaussian_log_likelihood`):
/// the bin `[x − 1/255, x + 1/255]`, open below at x = −1 and above at x = 1, each log-probability floored at 1e-12.
fn decoder_nll(x0: &Tensor, mu: &Tensor, log_var: &Var) -> Result<Var> {
    let centred = x0.sub(mu)?;
    let inv_std = log_var.mul_scalar(-0.5)?.exp()?;
    let cdf = |offset: f32| -> Result<Var> {
        let z = inv_std.mul(&Var::constant(centred.add_scalar(offset)?))?;
        // ½(1 + tanh(√(2/π)(z + 0.044715z³)))
        let inner = z.square()?.mul(&z)?.mul_scalar(0.044715)?.add(&z)?;
        Ok(inner
            .mul_scalar((2.0 / std::f32::consts::PI).sqrt())?
            .tanh()?
            .affine(0.5, 0.5)?)
    };
    let (upper, lower) = (cdf(HALF_BIN)?, cdf(-HALF_BIN)?);
    // log(max(p, 1e-12)), the floor as relu(p − 1e-12) + 1e-12 (no gradient where it binds, as clamp).
    let floored_log =
        |p: &Var| -> Result<Var> { Ok(p.add_scalar(-1e-12)?.relu()?.add_scalar(1e-12)?.log()?) };
    let log_below = floored_log(&upper)?;
    let log_above = floored_log(&lower.affine(-1.0, 1.0)?)?;
    let log_inside = floored_log(&upper.sub(&lower)?)?;
    // Which formula each pixel takes: x < −0.999 the open lower bin, x > 0.999 the open upper bin, else the inside.
    let values = x0.to_vec()?;
    let select = |keep: &dyn Fn(f32) -> bool| -> Result<Var> {
        let m = values
            .iter()
            .map(|&x| f32::from(u8::from(keep(x))))
            .collect();
        Ok(Var::constant(Tensor::from_vec(m, x0.shape(), x0.device())?))
    };
    let log_p = log_below
        .mul(&select(&|x| x < -0.999)?)?
        .add(&log_above.mul(&select(&|x| x > 0.999)?)?)?
        .add(&log_inside.mul(&select(&|x| (-0.999..=0.999).contains(&x))?)?)?;
    Ok(log_p.neg()?)
}
