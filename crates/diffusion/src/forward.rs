//! The forward (noising) process q(x_t | x_0) = N(√ᾱ_t·x_0, (1−ᾱ_t)·I), sampled in closed form:
//!
//! x_t = √ᾱ_t · x_0 + √(1−ᾱ_t) · ε,   ε ~ N(0, I).
//!
//! One fused pass over memory ([`diffuse_tensor::Tensor::q_sample`]) draws ε from the Philox stream and mixes it in,
//! so a training step never stores the noise twice. Each sample of the batch has its own timestep.

use crate::error::Result;
use crate::schedule::NoiseSchedule;
use diffuse_tensor::Tensor;

/// Noises the batch `x0` (dimension 0 = samples) to the per-sample `timesteps`; returns `(x_t, ε)`.
/// The noise is element `offset + i` of the Philox stream `seed` for element `i` of the batch.
pub fn q_sample(
    schedule: &NoiseSchedule,
    x0: &Tensor,
    timesteps: &[usize],
    seed: u64,
    offset: u64,
) -> Result<(Tensor, Tensor)> {
    let mut sqrt_ab = Vec::with_capacity(timesteps.len());
    let mut sqrt_1mab = Vec::with_capacity(timesteps.len());
    for &t in timesteps {
        let ab = schedule.alpha_bar(t)?;
        sqrt_ab.push(ab.sqrt() as f32);
        sqrt_1mab.push((1.0 - ab).sqrt() as f32);
    }
    Ok(x0.q_sample(&sqrt_ab, &sqrt_1mab, seed, offset)?)
}
