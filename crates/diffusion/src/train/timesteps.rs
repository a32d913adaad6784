//! Which training timesteps a batch is noised to.
//!
//! - [`TimestepSampler::Uniform`]: `t ~ U{0, …, T−1}`, each sample weighing 1.
//! - [`TimestepSampler::Importance`]: loss-aware importance sampling (Nichol & Dhariwal 2021, "Improved Denoising
//!   Diffusion Probabilistic Models", §3.3). The sampler keeps the last 10 losses seen at each timestep; until every
//!   timestep has 10 it samples uniformly. Then it draws `t` with probability `p_t ∝ √E[L_t²]` (the mean over the
//!   history), mixed with a uniform floor as the authors' code does, `p_t ← (1 − 0.001)·p_t + 0.001/T`, so that no
//!   timestep starves. Each sample's loss is multiplied by `1/(T·p_t)`, which keeps the expected loss equal to the
//!   uniform one: `E_p[L_t/(T·p_t)] = Σ_t L_t/T`.

use crate::rng::SplitMix64;
use serde::{Deserialize, Serialize};

/// Losses remembered per timestep.
pub const HISTORY: usize = 10;
/// The uniform share mixed into the importance distribution.
pub const UNIFORM_FLOOR: f64 = 0.001;

/// The loss history of loss-aware sampling.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LossHistory {
    /// For each timestep, its last (at most [`HISTORY`]) losses, oldest first.
    pub losses: Vec<Vec<f64>>,
}

impl LossHistory {
    /// An empty history over `num_timesteps` timesteps.
    pub fn new(num_timesteps: usize) -> Self {
        Self {
            losses: vec![Vec::new(); num_timesteps],
        }
    }

    /// Whether every timestep has a full history (importance sampling is on).
    pub fn is_warm(&self) -> bool {
        self.losses.iter().all(|h| h.len() == HISTORY)
    }

    /// Appends `loss` to the history of `t`, dropping its oldest once full. Non-finite losses are not recorded.
    pub fn record(&mut self, t: usize, loss: f64) {
        if let Some(h) = self.losses.get_mut(t) {
            if loss.is_finite() {
                if h.len() == HISTORY {
                    h.remove(0);
                }
                h.push(loss);
            }
        }
    }

    /// `p_t`: uniform until warm, then `(1 − floor)·√E[L_t²]/Σ_s √E[L_s²] + floor/T`.
    pub fn probabilities(&self) -> Vec<f64> {
        let n = self.losses.len() as f64;
        if !self.is_warm() {
            return vec![1.0 / n; self.losses.len()];
        }
        let w: Vec<f64> = self
            .losses
            .iter()
            .map(|h| (h.iter().map(|l| l * l).sum::<f64>() / h.len() as f64).sqrt())
            .collect();
        let total: f64 = w.iter().sum();
        if !(total > 0.0 && total.is_finite()) {
            return vec![1.0 / n; self.losses.len()];
        }
        w.iter()
            .map(|w| (1.0 - UNIFORM_FLOOR) * w / total + UNIFORM_FLOOR / n)
            .collect()
    }
}

/// How timesteps are drawn.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TimestepSampler {
    Uniform { num_timesteps: usize },
    Importance(LossHistory),
}

impl TimestepSampler {
    /// The number of training timesteps `T`.
    pub fn num_timesteps(&self) -> usize {
        match self {
            TimestepSampler::Uniform { num_timesteps } => *num_timesteps,
            TimestepSampler::Importance(h) => h.losses.len(),
        }
    }

    /// `batch` timesteps and their loss weights `1/(T·p_t)`, drawn from `rng`.
    pub fn sample(&self, rng: &mut SplitMix64, batch: usize) -> (Vec<usize>, Vec<f64>) {
        let n = self.num_timesteps();
        match self {
            TimestepSampler::Importance(history) if history.is_warm() => {
                let p = history.probabilities();
                let cumulative: Vec<f64> = p
                    .iter()
                    .scan(0.0, |acc, &p| {
                        *acc += p;
                        Some(*acc)
                    })
                    .collect();
                let total = cumulative.last().copied().unwrap_or(1.0);
                (0..batch)
                    .map(|_| {
                        let u = rng.next_f64() * total;
                        let t = cumulative.partition_point(|&c| c <= u).min(n - 1);
                        (t, 1.0 / (n as f64 * p[t]))
                    })
                    .unzip()
            }
            _ => (0..batch)
                .map(|_| (rng.below(n as u64) as usize, 1.0))
                .unzip(),
        }
    }

    /// Tells the sampler the per-sample losses at `timesteps` (only the importance sampler listens).
    pub fn record(&mut self, timesteps: &[usize], losses: &[f64]) {
        if let TimestepSampler::Importance(history) = self {
            for (&t, &l) in timesteps.iter().zip(losses) {
                history.record(t, l);
            }
        }
    }
}
