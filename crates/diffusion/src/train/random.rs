//! Where every random number of a training step comes from, so that a run resumed from a checkpoint replays exactly
//! (nothing depends on how many steps this process has run):
//!
//! - the order of the data: epoch `e = ⌊s/K⌋` of [`crate::data::EpochBatches`] under the run's seed (`K` = full batches
//!   per epoch; the last partial batch is dropped), batch `s mod K` of it;
//! - timesteps, label-dropout coins and the flip seed: a [`SplitMix64`] seeded with
//!   `seed ⊕ (s + 1)·0xA24BAED4963EE407` (an odd multiplier, so distinct steps give distinct states), drawn in that
//!   order: the batch's timesteps, then one coin per sample, then one `u64` for the horizontal flips, then (only
//!   with a random crop) one `u64` for the crop offsets;
//! - an image-conditioned run's per-sample draws (augmentation levels, masks): one `u64` each from the same generator,
//!   after those;
//! - the Gaussian noise of `q_sample`: Philox with key `seed ⊕ NOISE_KEY` at offset `s·B·C·H·W`, so the noise of
//!   successive steps never overlaps, and never overlaps the parameters' initialisation, which draws from key `seed`.

use crate::error::{Error, Result};
use crate::rng::SplitMix64;

const STEP_STRIDE: u64 = 0xA24B_AED4_963E_E407;
/// "noise" in ASCII, xor-ed into the seed to give the noise its own Philox key.
pub const NOISE_KEY: u64 = 0x6E_6F69_7365;

/// The generator of step `step`'s timesteps, dropout coins and flip seed.
pub fn step_rng(seed: u64, step: u64) -> SplitMix64 {
    SplitMix64::new(seed ^ step.wrapping_add(1).wrapping_mul(STEP_STRIDE))
}

/// "augment" in ASCII, xor-ed into the seed to give the noise-conditioning augmentation its own Philox key.
pub const AUGMENT_KEY: u64 = 0x61_7567_6D65_6E74;

/// `(key, offset)` of the noise-conditioning augmentation of step `step` for batches of `numel` low-resolution
/// elements: key `seed ⊕ AUGMENT_KEY` at offset `step·numel`.
pub fn augment_stream(seed: u64, step: u64, numel: usize) -> Result<(u64, u64)> {
    let (_, offset) = noise_stream(seed, step, numel)?;
    Ok((seed ^ AUGMENT_KEY, offset))
}

/// `(key, offset)` of the Philox noise of step `step` for batches of `numel` elements.
pub fn noise_stream(seed: u64, step: u64, numel: usize) -> Result<(u64, u64)> {
    let offset = step.checked_mul(numel as u64).ok_or_else(|| {
        Error::train(
            "step",
            format!("noise offset of step {step} × {numel} elements overflows u64"),
        )
    })?;
    Ok((seed ^ NOISE_KEY, offset))
}
