//! [`NoiseSchedule`]: the tables a diffusion model is trained and sampled with.
//!
//! For `t = 0 … T−1`: `α_t = 1 − β_t`, `ᾱ_t = α_0 · α_1 ⋯ α_t` (a running product, as `torch.cumprod`), and a noisy
//! sample is `x_t = √ᾱ_t · x_0 + √(1 − ᾱ_t) · ε`. Dividing by `√ᾱ_t` gives the variance-exploding view
//! `x_t / √ᾱ_t = x_0 + σ_t ε` with `σ_t = √((1 − ᾱ_t)/ᾱ_t)`, the noise level that Karras-style samplers step through, and
//! the signal-to-noise ratio is `SNR_t = ᾱ_t / (1 − ᾱ_t) = 1/σ_t²`.

use super::betas::{beta_schedule, rescale_zero_terminal_snr, BetaSchedule};
use super::config::SchedulerConfig;
use super::error::{Result, ScheduleError};

/// `β`, `α = 1 − β` and `ᾱ = cumprod(α)` over the `T` training timesteps, in `f64`.
#[derive(Debug, Clone, PartialEq)]
pub struct NoiseSchedule {
    pub betas: Vec<f64>,
    pub alphas: Vec<f64>,
    pub alphas_cumprod: Vec<f64>,
}

impl NoiseSchedule {
    /// The schedule `kind` over `num_train_timesteps` steps, optionally rescaled to zero terminal SNR — the
    /// construction of diffusers' `DDPMScheduler.__init__`.
    pub fn new(
        kind: BetaSchedule,
        num_train_timesteps: usize,
        beta_start: f64,
        beta_end: f64,
        rescale_betas_zero_snr: bool,
    ) -> Result<Self> {
        let betas = beta_schedule(kind, num_train_timesteps, beta_start, beta_end)?;
        let betas = if rescale_betas_zero_snr {
            rescale_zero_terminal_snr(&betas)?
        } else {
            betas
        };
        Self::from_betas(betas)
    }

    /// The schedule a diffusers `scheduler_config.json` describes: its `trained_betas` if given, else its
    /// `beta_schedule`; then `rescale_betas_zero_snr` if set.
    pub fn from_config(config: &SchedulerConfig) -> Result<Self> {
        let betas = match &config.trained_betas {
            Some(betas) if betas.len() != config.num_train_timesteps => {
                return Err(ScheduleError::new(
                    "trained_betas",
                    format!(
                        "has {} values but num_train_timesteps is {}",
                        betas.len(),
                        config.num_train_timesteps
                    ),
                ))
            }
            Some(betas) => betas.clone(),
            None => beta_schedule(
                config.beta_schedule,
                config.num_train_timesteps,
                config.beta_start,
                config.beta_end,
            )?,
        };
        let betas = if config.rescale_betas_zero_snr {
            rescale_zero_terminal_snr(&betas)?
        } else {
            betas
        };
        Self::from_betas(betas)
    }

    /// Builds `α` and `ᾱ` from given betas, each of which must lie in `[0, 1]`.
    pub fn from_betas(betas: Vec<f64>) -> Result<Self> {
        if betas.is_empty() {
            return Err(ScheduleError::new("betas", "the schedule has no steps"));
        }
        if let Some((t, beta)) = betas
            .iter()
            .enumerate()
            .find(|(_, b)| !(0.0..=1.0).contains(*b))
        {
            return Err(ScheduleError::new(
                "betas",
                format!("β_{t} = {beta} is not in [0, 1]"),
            ));
        }
        let alphas: Vec<f64> = betas.iter().map(|beta| 1.0 - beta).collect();
        let alphas_cumprod = alphas
            .iter()
            .scan(1.0, |product, alpha| {
                *product *= alpha;
                Some(*product)
            })
            .collect();
        Ok(Self {
            betas,
            alphas,
            alphas_cumprod,
        })
    }

    /// The number of training timesteps `T`.
    pub fn len(&self) -> usize {
        self.alphas_cumprod.len()
    }

    /// Always false for a constructed schedule.
    pub fn is_empty(&self) -> bool {
        self.alphas_cumprod.is_empty()
    }

    /// `ᾱ_t`, the fraction of signal variance left at timestep `t`.
    pub fn alpha_bar(&self, t: usize) -> Result<f64> {
        self.alphas_cumprod.get(t).copied().ok_or_else(|| {
            ScheduleError::new(
                "timestep",
                format!(
                    "t = {t} is out of range for a schedule of {} steps",
                    self.len()
                ),
            )
        })
    }

    /// `σ_t = √((1 − ᾱ_t)/ᾱ_t)`: the noise level of `x_t / √ᾱ_t`. Infinite where `ᾱ_t = 0` (the last step of a
    /// zero-terminal-SNR schedule).
    pub fn sigma(&self, t: usize) -> Result<f64> {
        let alpha_bar = self.alpha_bar(t)?;
        Ok(((1.0 - alpha_bar) / alpha_bar).sqrt())
    }

    /// `SNR_t = ᾱ_t / (1 − ᾱ_t)`. Zero where `ᾱ_t = 0`, infinite where `ᾱ_t = 1`.
    pub fn snr(&self, t: usize) -> Result<f64> {
        let alpha_bar = self.alpha_bar(t)?;
        Ok(alpha_bar / (1.0 - alpha_bar))
    }
}
