//! The improved consistency-training recipe of Song & Dhariwal (2023, "Improved Techniques for Training Consistency
//! Models"): how many noise levels each step uses, which pair of adjacent levels it draws, and how it weighs them.
//!
//! - **Discretisation curriculum.** Step `k` of `K` uses `N(k) = min(s0·2^⌊k/K′⌋, s1) + 1` Karras levels with
//!   `K′ = ⌊K/(log₂⌊s1/s0⌋ + 1)⌋` (`s0 = 10`, `s1 = 1280`): coarse levels early, when the loss is noisy, doubling
//!   in equal stages up to `s1 + 1`.
//! - **Log-normal noise.** The pair `(σ_n, σ_{n+1})` is drawn with probability proportional to
//!   `erf((ln σ_{n+1} − P_mean)/(√2·P_std)) − erf((ln σ_n − P_mean)/(√2·P_std))` (`P_mean = −1.1`, `P_std = 2`): the
//!   mass a log-normal puts between the two levels, which favours the middle noise levels where the loss is informative.
//! - **Weighting.** `λ(σ_n) = 1/(σ_{n+1} − σ_n)`, so that fine and coarse gaps contribute alike.

use crate::error::{Error, Result};
use crate::eval::normal::erfc;
use crate::rng::SplitMix64;
use serde::{Deserialize, Serialize};

/// The curriculum's settings.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Curriculum {
    /// Levels at the start (`s0`).
    pub initial: usize,
    /// Levels at the end (`s1`).
    pub last: usize,
    /// Mean of `ln σ`.
    pub p_mean: f64,
    /// Standard deviation of `ln σ`.
    pub p_std: f64,
}

impl Default for Curriculum {
    /// Song & Dhariwal's: 10 → 1280 levels, `ln σ ~ N(−1.1, 2²)`.
    fn default() -> Self {
        Self {
            initial: 10,
            last: 1280,
            p_mean: -1.1,
            p_std: 2.0,
        }
    }
}

impl Curriculum {
    pub fn validate(&self) -> Result<()> {
        if self.initial < 1 || self.last < self.initial {
            return Err(Error::train(
                "curriculum",
                format!("levels {} → {}: need 1 ≤ s0 ≤ s1", self.initial, self.last),
            ));
        }
        if !(self.p_std > 0.0 && self.p_std.is_finite() && self.p_mean.is_finite()) {
            return Err(Error::train(
                "curriculum",
                format!(
                    "log-normal N({}, {}²) is not a distribution",
                    self.p_mean, self.p_std
                ),
            ));
        }
        Ok(())
    }

    /// `N(k)`, the number of levels at step `step` of a run of `total` steps.
    pub fn levels(&self, step: u64, total: u64) -> usize {
        let stages = (self.last / self.initial).ilog2() as u64 + 1;
        let per_stage = (total / stages).max(1);
        let doublings = (step / per_stage).min(63) as u32;
        let n = self
            .initial
            .saturating_mul(1usize << doublings.min(usize::BITS - 1));
        n.min(self.last) + 1
    }

    /// The probability of each adjacent pair `(σ_n, σ_{n+1})` of the ascending `levels`.
    pub fn pair_probabilities(&self, levels: &[f64]) -> Vec<f64> {
        // erf(a) − erf(b) = erfc(b) − erfc(a), accurate in both tails.
        let z = |s: f64| (s.ln() - self.p_mean) / (std::f64::consts::SQRT_2 * self.p_std);
        let mass: Vec<f64> = levels
            .windows(2)
            .map(|w| (erfc(z(w[0])) - erfc(z(w[1]))).max(0.0))
            .collect();
        let total: f64 = mass.iter().sum();
        mass.iter().map(|m| m / total).collect()
    }

    /// Draws a pair index `n` (the pair `(σ_n, σ_{n+1})`) from `probabilities`.
    pub fn draw(probabilities: &[f64], rng: &mut SplitMix64) -> usize {
        let u = rng.next_f64();
        let mut cumulative = 0.0;
        for (n, p) in probabilities.iter().enumerate() {
            cumulative += p;
            if u < cumulative {
                return n;
            }
        }
        probabilities.len() - 1
    }
}

/// `λ(σ_n) = 1/(σ_{n+1} − σ_n)`.
pub fn gap_weight(sigma: f64, sigma_next: f64) -> f64 {
    1.0 / (sigma_next - sigma)
}
