//! Deterministic epochs: a Fisher–Yates shuffle of `0..len` driven by [`SplitMix64`], cut into batches.
//!
//! The permutation of epoch `e` under seed `s` depends on nothing but `(s, e, len)`, so a run can be resumed mid-training
//! and replayed bit for bit on any machine.

use crate::rng::SplitMix64;

use super::error::{DataError, Result};

/// A large odd constant: multiplying by it is a bijection modulo 2^64, so distinct epochs start from distinct states,
/// and consecutive epochs land far apart before SplitMix64's own mixing.
const EPOCH_STRIDE: u64 = 0xD1B5_4A32_D192_ED03;

/// The batches of one epoch: each item is the dataset indices of one batch, in shuffled order.
#[derive(Debug, Clone)]
pub struct EpochBatches {
    order: Vec<usize>,
    batch_size: usize,
    drop_last: bool,
    next: usize,
}

impl EpochBatches {
    /// Shuffles `0..len` for epoch `epoch` under `seed` and yields batches of `batch_size` indices. The last batch is
    /// shorter when `batch_size` does not divide `len`, unless `drop_last` leaves it out.
    pub fn new(
        len: usize,
        batch_size: usize,
        seed: u64,
        epoch: u64,
        drop_last: bool,
    ) -> Result<Self> {
        if batch_size == 0 {
            return Err(DataError::new("batch size must be at least 1"));
        }
        let mut rng = SplitMix64::new(seed.wrapping_add(epoch.wrapping_mul(EPOCH_STRIDE)));
        let mut order: Vec<usize> = (0..len).collect();
        for i in (1..len).rev() {
            // `below(i + 1) <= i`, which came from a usize, so the cast back is lossless.
            let j = rng.below(i as u64 + 1) as usize;
            order.swap(i, j);
        }
        Ok(Self {
            order,
            batch_size,
            drop_last,
            next: 0,
        })
    }

    /// The whole permutation of this epoch.
    pub fn order(&self) -> &[usize] {
        &self.order
    }
}

impl Iterator for EpochBatches {
    type Item = Vec<usize>;

    fn next(&mut self) -> Option<Vec<usize>> {
        let remaining = self.order.len() - self.next;
        let take = remaining.min(self.batch_size);
        if take == 0 || (self.drop_last && take < self.batch_size) {
            return None;
        }
        let batch = self.order[self.next..self.next + take].to_vec();
        self.next += take;
        Some(batch)
    }
}
