//! The timestep embedding: a sinusoidal code of the (possibly fractional) timestep, then a two-layer MLP.
//!
//! ```text
//! freq_i = exp(−ln(10000)·i / (half − freq_shift))      i = 0 .. half−1, half = dim/2
//! code   = [sin(t·freq), cos(t·freq)]   (or [cos, sin] when flip_sin_to_cos; a zero column when dim is odd)
//! emb    = linear_2(SiLU(linear_1(code)))                diffusers' `time_embedding.linear_{1,2}`
//! ```
//!
//! With `time_embedding_type = "fourier"` (the score-SDE models) the "timestep" is a noise level σ and the code is
//! diffusers' `GaussianFourierProjection` of `ln σ`, random frequencies `W_i ~ N(0, 16²)` fixed at initialisation
//! (Tancik et al. 2020's Fourier features; Song et al. 2021 use them so that σ over five decades is resolved):
//!
//! ```text
//! code = [sin(2π·W·ln σ), cos(2π·W·ln σ)]                 W: `time_proj.weight`, dim entries, never trained
//! ```
//!
//! diffusers evaluates the code in f32 from `t` rounded to f32; so does this module, step by step in the same order,
//! so that the argument `t·freq` (up to ~10³ for t = 999) carries the same rounding as diffusers' own.

use diffuse_autograd::Var;
use diffuse_nn::{Init, Linear, Module, Path};
use diffuse_tensor::{Device, Result, Tensor};

/// The sinusoidal code of each timestep, as a (t.len(), dim) tensor.
pub fn timestep_code(
    t: &[f64],
    dim: usize,
    flip_sin_to_cos: bool,
    freq_shift: f64,
    device: Device,
) -> Result<Tensor> {
    let half = dim / 2;
    let neg_log_period = -(10000f64.ln() as f32);
    let denominator = (half as f64 - freq_shift) as f32;
    let freqs: Vec<f32> = (0..half)
        .map(|i| (neg_log_period * i as f32 / denominator).exp())
        .collect();
    let mut code = Vec::with_capacity(t.len() * dim);
    for &step in t {
        let args = freqs.iter().map(|&f| step as f32 * f);
        let sin = args.clone().map(|a| (a as f64).sin() as f32);
        let cos = args.map(|a| (a as f64).cos() as f32);
        if flip_sin_to_cos {
            code.extend(cos.chain(sin));
        } else {
            code.extend(sin.chain(cos));
        }
        code.extend(std::iter::repeat_n(0.0, dim - 2 * half));
    }
    Tensor::from_vec(code, &[t.len(), dim], device)
}

/// The standard deviation diffusers' `UNet2DModel` draws the Fourier frequencies with (`scale=16`).
pub const FOURIER_SCALE: f32 = 16.0;

/// diffusers' `GaussianFourierProjection(embedding_size, scale=16)` with `log=True` and `[sin, cos]` order: the
/// code of a noise level σ. Its frequencies are a parameter (saved and loaded as `time_proj.weight`) that is frozen
/// from the start, as diffusers creates it with `requires_grad=False`.
pub struct GaussianFourierProjection {
    pub weight: Var,
}

impl GaussianFourierProjection {
    /// `embedding_size` frequencies drawn from `N(0, 16²)`, frozen; the code has twice as many entries.
    pub fn new(path: &Path, embedding_size: usize) -> Result<GaussianFourierProjection> {
        let weight = path.param(
            "weight",
            &[embedding_size],
            Init::Normal { std: FOURIER_SCALE },
        )?;
        weight.set_requires_grad(false)?;
        Ok(GaussianFourierProjection { weight })
    }

    /// The (sigma.len(), 2·embedding_size) code of each noise level (which must be positive), on `device`.
    pub fn code(&self, sigma: &[f64], device: Device) -> Result<Tensor> {
        let w = self.weight.tensor().to_vec()?;
        let mut code = Vec::with_capacity(sigma.len() * 2 * w.len());
        for &s in sigma {
            // torch: log(x) in f32, then x[:, None] * W[None, :] * 2 * π, left to right in f32.
            let log_sigma = (f64::from(s as f32)).ln() as f32;
            let args: Vec<f32> = w
                .iter()
                .map(|&w| log_sigma * w * 2.0 * std::f32::consts::PI)
                .collect();
            code.extend(args.iter().map(|&a| (a as f64).sin() as f32));
            code.extend(args.iter().map(|&a| (a as f64).cos() as f32));
        }
        Tensor::from_vec(code, &[sigma.len(), 2 * w.len()], device)
    }
}

/// diffusers' `TimestepEmbedding`: `linear_2(SiLU(linear_1(x)))`.
pub struct TimestepEmbedding {
    pub linear_1: Linear,
    pub linear_2: Linear,
}

impl TimestepEmbedding {
    pub fn new(path: &Path, in_dim: usize, embed_dim: usize) -> Result<TimestepEmbedding> {
        Ok(TimestepEmbedding {
            linear_1: Linear::new(&path.sub("linear_1"), in_dim, embed_dim, true)?,
            linear_2: Linear::new(&path.sub("linear_2"), embed_dim, embed_dim, true)?,
        })
    }

    pub fn forward(&self, code: &Var) -> Result<Var> {
        self.linear_2.forward(&self.linear_1.forward(code)?.silu()?)
    }
}
