//! The encoder's output read as a diagonal Gaussian over latents, diffusers' `DiagonalGaussianDistribution`:
//!
//! ```text
//! h            = (N, 2L, h, w)          the encoder's moments
//! μ            = h[:, :L]
//! log σ²       = clamp(h[:, L:], −30, 20)         so that σ² stays within f32 (e²⁰ ≈ 4.9e8, e⁻³⁰ ≈ 9.4e-14)
//! sample       = μ + σ·ε,  ε ~ N(0, I)            the reparameterisation: differentiable in μ and log σ²
//! mode         = μ
//! KL(q ‖ N(0, I)) = ½ Σ_{c,y,x} (μ² + σ² − 1 − log σ²)      one value per image
//! ```
//!
//! The clamp passes no gradient outside its bounds (as PyTorch's), so a log-variance pinned there stops moving.

use diffuse_autograd::Var;
use diffuse_tensor::{Error, Result, Tensor};

/// The bounds diffusers clamps the log-variance to.
pub const LOGVAR_MIN: f32 = -30.0;
pub const LOGVAR_MAX: f32 = 20.0;

/// A Gaussian with diagonal covariance for each latent of a batch.
#[derive(Clone)]
pub struct DiagonalGaussian {
    /// μ, (N, L, h, w).
    pub mean: Var,
    /// log σ² after the clamp, (N, L, h, w).
    pub logvar: Var,
}

impl DiagonalGaussian {
    /// Splits the encoder's moments (N, 2L, h, w) into μ and the clamped log σ².
    pub fn from_moments(moments: &Var) -> Result<DiagonalGaussian> {
        let shape = moments.shape();
        if shape.len() != 4 || !shape[1].is_multiple_of(2) {
            return Err(Error::shape(
                "DiagonalGaussian",
                format!("moments must be (N, 2L, h, w), got {shape:?}"),
            ));
        }
        let latent = shape[1] / 2;
        Ok(DiagonalGaussian {
            mean: moments.narrow(1, 0, latent)?,
            logvar: moments
                .narrow(1, latent, latent)?
                .clamp(LOGVAR_MIN, LOGVAR_MAX)?,
        })
    }

    /// σ = exp(½ log σ²).
    pub fn std(&self) -> Result<Var> {
        self.logvar.mul_scalar(0.5)?.exp()
    }

    /// μ + σ·ε for the given standard normal `noise` of the latents' shape.
    pub fn sample_with(&self, noise: &Tensor) -> Result<Var> {
        if noise.shape() != self.mean.shape() {
            return Err(Error::shape(
                "DiagonalGaussian::sample_with",
                format!(
                    "noise of shape {:?} for latents of shape {:?}",
                    noise.shape(),
                    self.mean.shape()
                ),
            ));
        }
        self.mean
            .add(&self.std()?.mul(&Var::constant(noise.clone()))?)
    }

    /// μ + σ·ε with ε from Philox stream `seed` at `offset` (element `i` of the latents takes draw `offset + i`).
    pub fn sample(&self, seed: u64, offset: u64) -> Result<Var> {
        let t = self.mean.tensor();
        self.sample_with(&Tensor::randn(t.shape(), seed, offset, t.device())?)
    }

    /// The most likely latent, μ.
    pub fn mode(&self) -> &Var {
        &self.mean
    }

    /// KL(q ‖ N(0, I)) of each image, summed over its latent: (N,).
    pub fn kl(&self) -> Result<Var> {
        let terms = self
            .mean
            .square()?
            .add(&self.logvar.exp()?)?
            .sub(&self.logvar)?
            .add_scalar(-1.0)?;
        terms.sum(&[1, 2, 3], false)?.mul_scalar(0.5)
    }
}
