//! Exact likelihood through the probability-flow ODE (Song et al. 2021, §4.3 and Appendix D.2).
//!
//! The ODE `dx/dt = f̃(x, t) = f(t)·x − ½ g(t)²·s_θ(x, t)` is a continuous normalising flow: along a solution the
//! log density changes by the instantaneous change of variables (Chen et al. 2018),
//! `d ln p_t(x(t))/dt = −∇·f̃(x(t), t)`, so
//!
//! ```text
//! ln p_ε(x(ε)) = ln p_1(x(1)) + ∫_ε^1 ∇·f̃(x(t), t) dt,
//! ```
//!
//! solved forward from the data point at `t = ε`, with the prior density at the end. The divergence of a network is
//! a trace of its Jacobian; the Hutchinson–Skilling estimator replaces it by `E_v[vᵀ (∂f̃/∂x) v]` over probes `v` with
//! `E[v vᵀ] = I` (Rademacher `±1`, or standard normal), and `vᵀ(∂f̃/∂x)` is one vector–Jacobian product, one backward
//! pass through the network ([`divergence_estimate`]). The probes are drawn once per solve and held fixed, so the
//! integrand is a smooth function of `t` and the adaptive solver ([`super::rk45`]) applies. `P` probes per image run
//! as `P` copies of the image in one batch; the image's estimate is their mean.
//!
//! **Dequantisation.** Images are discrete: 8-bit levels `k ∈ {0, …, 255}`, stored by diffuse as `k/127.5 − 1`. A
//! density model assigns them probability through uniform dequantisation: with `y = (k + u)/128 − 1`,
//! `u ~ U[0, 1)^D`, Jensen's inequality gives `ln P(k) ≥ E_u[ln p(y)] − D·ln 128`, so
//!
//! ```text
//! bits/dim = −ln p(y)/(D ln 2) + 7,
//! ```
//!
//! the `+7 = log₂ 256 − log₂ 2` accounting for the bin width 1/128 in `[−1, 1]`, as in the paper's code (which scales
//! `[0, 1]` data, dequantised as `(k + u)/256`, to `[−1, 1]`). Without dequantisation the data are taken as
//! continuous and the result is `−ln p(y)/(D ln 2)` of the values as given. The same images' variational bound
//! ([`crate::eval::variational_bound`]) bounds the same discrete `−log₂ P(k)/D` from above by another route.

use super::pc::check_eps;
use super::rk45::{solve, OdeStats, Tolerances};
use super::score::DifferentiableScore;
use crate::error::{Error, Result};
use crate::sampler::Condition;
use diffuse_autograd::{is_grad_enabled, Var};
use diffuse_tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};
use std::f64::consts::LN_2;

/// "dequant" in ASCII, xor-ed into the seed for the dequantisation noise's Philox key.
const DEQUANTIZE_KEY: u64 = 0x64_6571_7561_6E74;
/// "probes" in ASCII, for the Hutchinson probes' key.
const PROBE_KEY: u64 = 0x7072_6F62_6573;

/// The distribution of the Hutchinson probes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Probe {
    /// Independent `±1` with probability ½ each (the smallest variance among probes with `E[v vᵀ] = I`).
    Rademacher,
    /// Independent standard normals.
    Gaussian,
}

impl Probe {
    /// `shape` probes from Philox stream `seed` at `offset`, on `device`.
    pub fn draw(self, shape: &[usize], seed: u64, offset: u64, device: Device) -> Result<Tensor> {
        match self {
            Probe::Gaussian => Ok(Tensor::randn(shape, seed, offset, device)?),
            Probe::Rademacher => {
                let u = Tensor::rand(shape, seed, offset, Device::Cpu)?.to_vec()?;
                let signs = u
                    .into_iter()
                    .map(|u| if u < 0.5 { -1.0 } else { 1.0 })
                    .collect();
                Ok(Tensor::from_vec(signs, shape, device)?)
            }
        }
    }
}

/// `f(x)` and the Hutchinson estimate `v_bᵀ (∂f_b/∂x_b) v_b` of each sample's divergence, for a function `f` that
/// maps each sample of the batch `x` (dimension 0 = samples) on its own (no coupling across the batch). One forward
/// and one backward pass: the gradient of `Σ_b v_b·f_b(x_b)` with respect to `x` is every `v_bᵀ ∂f_b/∂x_b` at once.
pub fn divergence_estimate(
    f: &dyn Fn(&Var) -> Result<Var>,
    x: &Tensor,
    probes: &Tensor,
) -> Result<(Tensor, Tensor)> {
    if !is_grad_enabled() {
        return Err(Error::sampler(
            "divergence",
            "needs gradient recording, which is off (called inside no_grad)",
        ));
    }
    if probes.shape() != x.shape() {
        return Err(Error::sampler(
            "probes",
            format!(
                "shape {:?} differs from the input's {:?}",
                probes.shape(),
                x.shape()
            ),
        ));
    }
    let x_var = Var::leaf(x.clone());
    let y = f(&x_var)?;
    if y.shape() != x.shape() {
        return Err(Error::sampler(
            "model",
            format!(
                "returned shape {:?} for an input of shape {:?}",
                y.shape(),
                x.shape()
            ),
        ));
    }
    let dims: Vec<usize> = (1..x.rank()).collect();
    let grads = y
        .mul(&Var::constant(probes.clone()))?
        .sum_all()?
        .backward()?;
    let vjp = match grads.get(&x_var) {
        Some(g) => g.clone(),
        None => x.zeros_like()?,
    };
    let products = vjp.mul(probes)?;
    let divergence = if dims.is_empty() {
        products
    } else {
        products.sum(&dims, false)?
    };
    Ok((y.tensor().clone(), divergence))
}

/// Settings of [`ode_likelihood`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LikelihoodOptions {
    pub probe: Probe,
    /// Probes per image `P`.
    pub probes: usize,
    pub tolerances: Tolerances,
    /// The time the data sit at.
    pub eps: f64,
    /// Uniformly dequantise 8-bit images and report bits/dim of the discrete data (see the module documentation).
    pub dequantize: bool,
    /// The Philox streams of the dequantisation noise and the probes.
    pub seed: u64,
    /// Images per ODE solve.
    pub batch: usize,
}

impl Default for LikelihoodOptions {
    /// The paper's settings (`rtol = atol = 10⁻⁵`, `ε = 10⁻⁵`, dequantised data) with one Rademacher probe per
    /// image.
    fn default() -> Self {
        LikelihoodOptions {
            probe: Probe::Rademacher,
            probes: 1,
            tolerances: Tolerances {
                rtol: 1e-5,
                atol: 1e-5,
            },
            eps: 1e-5,
            dequantize: true,
            seed: 0,
            batch: 16,
        }
    }
}

/// The likelihood of a set of images.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OdeLikelihood {
    /// Mean over images of the bits/dim.
    pub mean: f64,
    /// Standard error of that mean, s/√N (NaN for one image).
    pub std_error: f64,
    /// Every image's bits/dim, in input order.
    pub per_image: Vec<f64>,
    /// Score evaluations (each a forward and a backward pass over `batch·P` samples), summed over the solves.
    pub nfe: usize,
    /// ODE solves (one per batch of images).
    pub solves: usize,
}

/// `y = (k + u)/128 − 1` for each value `x` of `[−1, 1]` snapped to its level `k = round((x + 1)·127.5)`.
fn dequantize(x: &[f32], u: &[f32]) -> Vec<f32> {
    x.iter()
        .zip(u)
        .map(|(&x, &u)| {
            let k = ((f64::from(x) + 1.0) * 127.5).round().clamp(0.0, 255.0);
            ((k + f64::from(u)) / 128.0 - 1.0) as f32
        })
        .collect()
}

/// `(bits/dim of each image, score evaluations)` of the images `y` (already dequantised when asked), the images
/// being numbers `first .. first + n` of the whole set (their probes' stream position).
fn solve_batch(
    model: &dyn DifferentiableScore,
    y: &Tensor,
    first: usize,
    cond: Condition<'_>,
    options: &LikelihoodOptions,
) -> Result<(Vec<f64>, OdeStats)> {
    let (n, p) = (y.shape()[0], options.probes);
    let dim = y.numel() / n;
    let device = y.device();
    let replicas: Vec<usize> = (0..n).flat_map(|i| std::iter::repeat_n(i, p)).collect();
    let mut shape = y.shape().to_vec();
    shape[0] = n * p;
    let x0 = y.index_select(0, &replicas)?;
    let probes = options.probe.draw(
        &shape,
        options.seed ^ PROBE_KEY,
        (first * p * dim) as u64,
        device,
    )?;
    let class: Option<Vec<u32>> = cond.class.map(|c| replicas.iter().map(|&i| c[i]).collect());
    let context = cond
        .context
        .map(|c| c.index_select(0, &replicas))
        .transpose()?;
    let cond = Condition {
        class: class.as_deref(),
        context: context.as_ref(),
    };
    let (nx, np) = (n * p * dim, n * p);
    let sde = model.sde().clone();
    let mut rhs = |t: f64, state: &Tensor| -> Result<Tensor> {
        let x = state.narrow(0, 0, nx)?.reshape(&shape)?;
        let g = sde.diffusion(t);
        let times = vec![t; np];
        let drift = |x: &Var| -> Result<Var> {
            let score = model.score_var(x, &times, cond)?;
            Ok(x.mul_scalar(sde.drift(t) as f32)?
                .add(&score.mul_scalar((-0.5 * g * g) as f32)?)?)
        };
        let (dx, divergence) = divergence_estimate(&drift, &x, &probes)?;
        Ok(Tensor::concat(&[&dx.reshape(&[nx])?, &divergence], 0)?)
    };
    let start = Tensor::concat(
        &[
            &x0.reshape(&[nx])?,
            &Tensor::zeros(&[np], x0.dtype(), device)?,
        ],
        0,
    )?;
    let (end, stats) = solve(&mut rhs, options.eps, 1.0, &start, options.tolerances)?;
    let x1 = end.narrow(0, 0, nx)?.reshape(&shape)?;
    let prior = sde.prior_log_density(&x1)?;
    let delta = end.narrow(0, nx, np)?.to_vec()?;
    let offset = if options.dequantize { 7.0 } else { 0.0 };
    let bits = (0..n)
        .map(|i| {
            let log_p = (i * p..(i + 1) * p)
                .map(|r| prior[r] + f64::from(delta[r]))
                .sum::<f64>()
                / p as f64;
            -log_p / (dim as f64 * LN_2) + offset
        })
        .collect();
    Ok((bits, stats))
}

/// The negative log-likelihood in bits/dim of each of `images` (N, …) under the probability-flow ODE of `model`,
/// with the class labels or context of `cond` per image when the model is conditional. With
/// `options.dequantize` the images are 8-bit values in `[−1, 1]`; the result then bounds `−log₂ P(image)/D`
/// (see the module documentation). Freeze the model's parameters first, or each backward pass also computes
/// their gradients, unused.
pub fn ode_likelihood(
    model: &dyn DifferentiableScore,
    images: &Tensor,
    cond: Condition<'_>,
    options: &LikelihoodOptions,
) -> Result<OdeLikelihood> {
    options.tolerances.validate()?;
    check_eps(options.eps)?;
    model.sde().validate()?;
    if options.probes == 0 || options.batch == 0 {
        return Err(Error::sampler(
            "probes",
            format!(
                "needs at least one probe per image (got {}) and one image per solve (got {})",
                options.probes, options.batch
            ),
        ));
    }
    let n = images.shape().first().copied().unwrap_or(0);
    if n == 0 || images.numel() == 0 {
        return Err(Error::sampler(
            "images",
            format!("shape {:?} holds no image", images.shape()),
        ));
    }
    cond.check_batch(n)?;
    let device = images.device();
    let y = if options.dequantize {
        let u = Tensor::rand(
            &[images.numel()],
            options.seed ^ DEQUANTIZE_KEY,
            0,
            Device::Cpu,
        )?;
        Tensor::from_vec(
            dequantize(&images.to_vec()?, &u.to_vec()?),
            images.shape(),
            device,
        )?
    } else {
        images.clone()
    };
    let mut per_image = Vec::with_capacity(n);
    let (mut nfe, mut solves) = (0, 0);
    for first in (0..n).step_by(options.batch) {
        let len = options.batch.min(n - first);
        let part = Condition {
            class: cond.class.map(|c| &c[first..first + len]),
            context: None,
        };
        let context = cond.context.map(|c| c.narrow(0, first, len)).transpose()?;
        let part = Condition {
            context: context.as_ref(),
            ..part
        };
        let (bits, stats) = solve_batch(model, &y.narrow(0, first, len)?, first, part, options)?;
        per_image.extend(bits);
        nfe += stats.nfe;
        solves += 1;
    }
    let mean = per_image.iter().sum::<f64>() / n as f64;
    let variance = per_image.iter().map(|b| (b - mean).powi(2)).sum::<f64>() / (n as f64 - 1.0);
    Ok(OdeLikelihood {
        mean,
        std_error: (variance / n as f64).sqrt(),
        per_image,
        nfe,
        solves,
    })
}
