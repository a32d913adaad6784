//! The fused noise updates of diffusion on a batch tensor (dimension 0 indexes samples): the forward process
//! `q_sample` and the general reverse step `sampler_step`. The noise is drawn inside the kernel from the Philox stream
//! `(seed, offset + i)` for element `i`, so it never exists as a separate tensor unless asked for.

use crate::error::{Error, Result};
use crate::Tensor;
pub use diffuse_cpu_kernels::noise::StepCoefficients;

impl Tensor {
    fn batch_size(&self, op: &'static str) -> Result<usize> {
        match self.shape().first() {
            Some(&b) => Ok(b),
            None => Err(Error::shape(
                op,
                "expects a batch tensor (dimension 0 = samples), got a scalar",
            )),
        }
    }

    /// Forward process: `x_t = √ᾱ_b·x0 + √(1−ᾱ_b)·ε` for each sample `b` of the batch `self` (= x0), with `ε` drawn
    /// from the stream `(seed, offset)`. Returns `(x_t, ε)`.
    pub fn q_sample(
        &self,
        sqrt_alpha_bar: &[f32],
        sqrt_one_minus_alpha_bar: &[f32],
        seed: u64,
        offset: u64,
    ) -> Result<(Tensor, Tensor)> {
        let b = self.batch_size("q_sample")?;
        if sqrt_alpha_bar.len() != b || sqrt_one_minus_alpha_bar.len() != b {
            return Err(Error::shape(
                "q_sample",
                format!(
                    "batch of {b} samples needs {b} coefficients each, got {} and {}",
                    sqrt_alpha_bar.len(),
                    sqrt_one_minus_alpha_bar.len()
                ),
            ));
        }
        let x0 = self.contiguous()?;
        let (x_t, eps) =
            x0.storage()
                .q_sample(sqrt_alpha_bar, sqrt_one_minus_alpha_bar, seed, offset)?;
        Ok((
            Tensor::from_contiguous(x_t, self.shape())?,
            Tensor::from_contiguous(eps, self.shape())?,
        ))
    }

    /// One reverse step from `self` (= x_t): `x̂0 = clip(a·x_t + b·model_out)`, `x_prev = c·x̂0 + d·x_t + σ·z`, with
    /// per-sample coefficients (see `docs/kernels/noise-update.md`). Returns `(x_prev, x̂0)`.
    pub fn sampler_step(
        &self,
        model_out: &Tensor,
        coef: &[StepCoefficients],
        clip: Option<f32>,
        seed: u64,
        offset: u64,
    ) -> Result<(Tensor, Tensor)> {
        self.check_compatible("sampler_step", model_out)?;
        if model_out.shape() != self.shape() {
            return Err(Error::shape(
                "sampler_step",
                format!(
                    "model output {:?} differs from x_t {:?}",
                    model_out.shape(),
                    self.shape()
                ),
            ));
        }
        let b = self.batch_size("sampler_step")?;
        if coef.len() != b {
            return Err(Error::shape(
                "sampler_step",
                format!(
                    "batch of {b} samples needs {b} coefficient sets, got {}",
                    coef.len()
                ),
            ));
        }
        let (x_t, out) = (self.contiguous()?, model_out.contiguous()?);
        let (x_prev, x0) = {
            let (sx, so) = (x_t.storage(), out.storage());
            sx.sampler_step(&so, coef, clip, seed, offset)?
        };
        Ok((
            Tensor::from_contiguous(x_prev, self.shape())?,
            Tensor::from_contiguous(x0, self.shape())?,
        ))
    }
}
