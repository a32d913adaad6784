//! Where a stochastic sampler's fresh noise comes from: the seed's Philox stream, or tensors given by the caller (one
//! per step, e.g. the draws diffusers made, so that the two trajectories can be compared exactly).
//!
//! With a seed, the noise of step `k` (counting from 0) is elements `(k+1)·n .. (k+2)·n` of stream `seed`, `n` being
//! the elements of the batch (elements `0 .. n` are the starting noise). Given noise is one tensor of shape
//! `[steps, …sample shape]`; step `k` uses slice `k`, and a step that draws nothing ignores its slice.

use crate::error::{Error, Result};
use diffuse_tensor::Tensor;

/// The fresh noise of one sampling run.
pub struct StepNoise<'a> {
    seed: u64,
    given: Option<&'a Tensor>,
}

impl<'a> StepNoise<'a> {
    /// Noise for a run of `steps` steps on samples shaped like `like`: from `given` (checked to hold one slice per
    /// step) or else from `seed`. `stochastic` says whether the sampler draws noise at all; given noise for one that
    /// does not is refused, since it could only be a mistake.
    pub fn new(
        seed: u64,
        given: Option<&'a Tensor>,
        steps: usize,
        like: &Tensor,
        stochastic: bool,
    ) -> Result<Self> {
        if let Some(noise) = given {
            if !stochastic {
                return Err(Error::sampler(
                    "step noise",
                    "this sampler is deterministic and draws no noise; give step noise to a stochastic one only",
                ));
            }
            let want: Vec<usize> = std::iter::once(steps)
                .chain(like.shape().iter().copied())
                .collect();
            if noise.shape() != want.as_slice() {
                return Err(Error::sampler(
                    "step noise",
                    format!(
                        "shape {:?}, but {steps} steps on samples of shape {:?} need {want:?} (one slice per step)",
                        noise.shape(),
                        like.shape()
                    ),
                ));
            }
        }
        Ok(Self { seed, given })
    }

    /// The standard normal noise of step `step`, shaped and placed like `like`.
    pub fn draw(&self, step: usize, like: &Tensor) -> Result<Tensor> {
        match self.given {
            Some(noise) => Ok(noise
                .narrow(0, step, 1)?
                .reshape(like.shape())?
                .to_device(like.device())?),
            None => {
                let offset = (step as u64 + 1)
                    .checked_mul(like.numel() as u64)
                    .ok_or_else(|| {
                        Error::sampler("steps", format!("step {step} noise offset overflows u64"))
                    })?;
                Ok(Tensor::randn(
                    like.shape(),
                    self.seed,
                    offset,
                    like.device(),
                )?)
            }
        }
    }
}
