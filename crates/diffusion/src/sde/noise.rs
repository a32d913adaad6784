//! Where the score samplers' Gaussian noise comes from. The samplers draw every tensor of noise, the prior sample
//! first, from a [`NoiseSource`] in the order they use them, so a run is reproduced by replaying the same draws:
//! [`PhiloxNoise`] for the seeded streams of the command line, or a recorded list of tensors (how the diffusers
//! parity test feeds in the noise diffusers drew).

use crate::error::{Error, Result};
use diffuse_tensor::{Device, Tensor};

/// A sequence of standard normal tensors.
pub trait NoiseSource {
    /// The next standard normal tensor of `shape` on `device`.
    fn next(&mut self, shape: &[usize], device: Device) -> Result<Tensor>;
}

/// Successive, non-overlapping pieces of one Philox stream: the draw of `n` elements at position `p` of the
/// sequence is elements `p .. p + n` of stream `seed`, and `p` advances by `n`. For draws of one shape this is the
/// convention of the discrete samplers: `x_T` is elements `0 .. n`, the `k`-th later draw `k·n .. (k+1)·n`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PhiloxNoise {
    seed: u64,
    position: u64,
}

impl PhiloxNoise {
    /// The stream `seed` from its first element.
    pub fn new(seed: u64) -> PhiloxNoise {
        PhiloxNoise { seed, position: 0 }
    }

    /// The stream `seed` from element `position` on (as if `position` elements had been drawn).
    pub fn at(seed: u64, position: u64) -> PhiloxNoise {
        PhiloxNoise { seed, position }
    }

    /// Elements drawn so far.
    pub fn position(&self) -> u64 {
        self.position
    }
}

impl NoiseSource for PhiloxNoise {
    fn next(&mut self, shape: &[usize], device: Device) -> Result<Tensor> {
        let n: usize = shape.iter().product();
        let z = Tensor::randn(shape, self.seed, self.position, device)?;
        self.position = self
            .position
            .checked_add(n as u64)
            .ok_or_else(|| Error::sampler("seed", "the noise stream's position overflows u64"))?;
        Ok(z)
    }
}
