//! Discrete noise schedules for denoising diffusion, computed in `f64` exactly as diffusers' `DDPMScheduler` defines them.
//!
//! The forward process over `T` training steps adds Gaussian noise with variance `β_t` at step `t`:
//! `q(x_t | x_{t−1}) = N(√(1−β_t) x_{t−1}, β_t I)`. With `α_t = 1 − β_t` and `ᾱ_t = Π_{s≤t} α_s` it collapses to one jump,
//! `q(x_t | x_0) = N(√ᾱ_t x_0, (1 − ᾱ_t) I)` (Ho et al. 2020), so a schedule is fully described by its `β_t`.
//!
//! - [`betas`]: the beta schedules (`linear`, `scaled_linear`, `squaredcos_cap_v2`, `sigmoid`, `laplace`) and the
//!   zero-terminal-SNR rescaling.
//! - [`noise`]: [`NoiseSchedule`], the `β`, `α`, `ᾱ` tables with `σ_t` and the signal-to-noise ratio ([`float32`]:
//!   the same tables rounded as diffusers computes them, for sampling).
//! - [`spacing`]: which training timesteps an `N`-step sampler visits (`leading`, `trailing`, `linspace`).
//! - [`karras`]: the Karras et al. (2022) sigma ramp.
//! - [`config`]: diffusers' `scheduler_config.json`, read and written ([`python_json`]: with Python's `NaN` and
//!   `Infinity`).

pub mod betas;
pub mod config;
pub mod error;
pub mod float32;
pub mod karras;
pub mod noise;
pub mod python_json;
pub mod spacing;

pub use betas::{beta_schedule, rescale_zero_terminal_snr, BetaSchedule, MAX_TRAIN_TIMESTEPS};
pub use config::{PredictionType, SchedulerConfig, VarianceType};
pub use error::{Result, ScheduleError};
pub use karras::karras_sigmas;
pub use noise::NoiseSchedule;
pub use spacing::{
    check_counts, leading_timesteps, linspace_timesteps, timesteps, trailing_timesteps,
    TimestepSpacing,
};
