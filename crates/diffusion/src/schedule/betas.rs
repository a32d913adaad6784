//! Beta schedules: the per-step noise variances `β_0 … β_{T−1}`.
//!
//! | name | `β_t` for `t = 0 … T−1` |
//! | --- | --- |
//! | `linear` (Ho et al. 2020) | evenly spaced from `β_start` to `β_end` |
//! | `scaled_linear` (Stable Diffusion) | `√β` evenly spaced from `√β_start` to `√β_end`, then squared |
//! | `squaredcos_cap_v2` (Nichol & Dhariwal 2021) | `min(1 − ᾱ((t+1)/T) / ᾱ(t/T), 0.999)` with `ᾱ(s) = cos²((s + 0.008)/1.008 · π/2)` |
//! | `sigmoid` (GeoDiff, Xu et al. 2022) | `β_start + (β_end − β_start) · sigmoid(x_t)`, `x_t` evenly spaced over `[−6, 6]` |
//! | `laplace` | as `squaredcos_cap_v2`, with `ᾱ(s)` from a Laplace-shaped log-SNR curve (see [`laplace_alpha_bar`]) |
//!
//! "Evenly spaced" reproduces `torch.linspace`: `start + i·step` for the first half and `end − (T−1−i)·step` for the
//! second, `step = (end − start)/(T − 1)`, so both end points are exact.
//!
//! diffusers builds these tables in `float32`; here every step is `f64`, with the same formulas in the same order.

use super::error::{Result, ScheduleError};

/// The beta schedules diffusers' `DDPMScheduler` knows, by their config names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BetaSchedule {
    Linear,
    ScaledLinear,
    SquaredcosCapV2,
    Sigmoid,
    Laplace,
}

impl BetaSchedule {
    pub const ALL: [BetaSchedule; 5] = [
        BetaSchedule::Linear,
        BetaSchedule::ScaledLinear,
        BetaSchedule::SquaredcosCapV2,
        BetaSchedule::Sigmoid,
        BetaSchedule::Laplace,
    ];

    /// The name used in `scheduler_config.json`.
    pub fn name(self) -> &'static str {
        match self {
            BetaSchedule::Linear => "linear",
            BetaSchedule::ScaledLinear => "scaled_linear",
            BetaSchedule::SquaredcosCapV2 => "squaredcos_cap_v2",
            BetaSchedule::Sigmoid => "sigmoid",
            BetaSchedule::Laplace => "laplace",
        }
    }

    /// The schedule called `name` in a config, if there is one.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }
}

/// The most training timesteps a schedule may have. Models use 1000 (a few use 4000); the limit keeps a config that
/// claims billions of steps from allocating tables of that length.
pub const MAX_TRAIN_TIMESTEPS: usize = 1_000_000;

/// The largest beta the `ᾱ`-discretised schedules allow; `β = 1` would erase the signal in one step.
pub const MAX_BETA: f64 = 0.999;

/// `β_0 … β_{T−1}` of `schedule` over `num_train_timesteps = T` steps. `beta_start` and `beta_end` are used by
/// `linear`, `scaled_linear` and `sigmoid` and ignored by the `ᾱ`-defined schedules, as in diffusers.
pub fn beta_schedule(
    schedule: BetaSchedule,
    num_train_timesteps: usize,
    beta_start: f64,
    beta_end: f64,
) -> Result<Vec<f64>> {
    if num_train_timesteps == 0 {
        return Err(ScheduleError::new(
            "num_train_timesteps",
            "must be at least 1",
        ));
    }
    if num_train_timesteps > MAX_TRAIN_TIMESTEPS {
        return Err(ScheduleError::new(
            "num_train_timesteps",
            format!("{num_train_timesteps} exceeds the supported maximum of {MAX_TRAIN_TIMESTEPS}"),
        ));
    }
    for (name, value) in [("beta_start", beta_start), ("beta_end", beta_end)] {
        if !(0.0..1.0).contains(&value) {
            return Err(ScheduleError::new(
                name,
                format!("{value} is not in [0, 1)"),
            ));
        }
    }
    let n = num_train_timesteps;
    let betas = match schedule {
        BetaSchedule::Linear => torch_linspace(beta_start, beta_end, n),
        BetaSchedule::ScaledLinear => torch_linspace(beta_start.powf(0.5), beta_end.powf(0.5), n)
            .into_iter()
            .map(|root| root * root)
            .collect(),
        BetaSchedule::SquaredcosCapV2 => betas_for_alpha_bar(n, MAX_BETA, cosine_alpha_bar),
        BetaSchedule::Laplace => betas_for_alpha_bar(n, MAX_BETA, laplace_alpha_bar),
        BetaSchedule::Sigmoid => torch_linspace(-6.0, 6.0, n)
            .into_iter()
            .map(|x| sigmoid(x) * (beta_end - beta_start) + beta_start)
            .collect(),
    };
    Ok(betas)
}

/// `T` evenly spaced values from `start` to `end` inclusive, computed as `torch.linspace` does: the first half counts up
/// from `start`, the second half counts down from `end`, so both ends are exact and the rounding error is symmetric.
pub fn torch_linspace(start: f64, end: f64, steps: usize) -> Vec<f64> {
    if steps == 1 {
        return vec![start];
    }
    let step = (end - start) / (steps - 1) as f64;
    let halfway = steps / 2;
    (0..steps)
        .map(|i| {
            if i < halfway {
                start + step * i as f64
            } else {
                end - step * (steps - 1 - i) as f64
            }
        })
        .collect()
}

/// Discretises a continuous `ᾱ(s)`, `s ∈ [0, 1]`, into `T` betas: `β_i = min(1 − ᾱ((i+1)/T) / ᾱ(i/T), max_beta)`, so the
/// cumulative product of `1 − β` follows `ᾱ` until the cap bites near the end.
pub fn betas_for_alpha_bar(num_steps: usize, max_beta: f64, alpha_bar: fn(f64) -> f64) -> Vec<f64> {
    let n = num_steps as f64;
    (0..num_steps)
        .map(|i| {
            let t1 = i as f64 / n;
            let t2 = (i + 1) as f64 / n;
            (1.0 - alpha_bar(t2) / alpha_bar(t1)).min(max_beta)
        })
        .collect()
}

/// Nichol & Dhariwal's cosine `ᾱ(s) = cos²((s + 0.008)/1.008 · π/2)`; the offset 0.008 keeps `β` from vanishing at
/// `s = 0`.
pub fn cosine_alpha_bar(s: f64) -> f64 {
    ((s + 0.008) / 1.008 * std::f64::consts::PI / 2.0)
        .cos()
        .powi(2)
}

/// The `laplace` schedule's `ᾱ(s)`: log-SNR `λ(s) = −½ · sign(½ − s) · ln(1 − 2|½ − s| + 10⁻⁶)`, a Laplace-shaped
/// curve centred at `s = ½`, and `ᾱ = √(e^λ / (1 + e^λ))`. (diffusers returns the square root here, and so do we.)
pub fn laplace_alpha_bar(s: f64) -> f64 {
    let lambda = -0.5 * (0.5 - s).signum() * (1.0 - 2.0 * (0.5 - s).abs() + 1e-6).ln();
    let snr = lambda.exp();
    (snr / (1.0 + snr)).sqrt()
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// Rescales `betas` so that the final step has zero signal-to-noise ratio (Lin et al. 2024, "Common Diffusion Noise
/// Schedules and Sample Steps are Flawed", Algorithm 1), keeping the first step's `√ᾱ_0`:
///
/// `√ᾱ'_t = (√ᾱ_t − √ᾱ_{T−1}) · √ᾱ_0 / (√ᾱ_0 − √ᾱ_{T−1})`, then `α'_0 = ᾱ'_0`, `α'_t = ᾱ'_t / ᾱ'_{t−1}`, `β'_t = 1 − α'_t`.
///
/// The last beta becomes exactly 1 and the last `ᾱ` exactly 0. Errors if the schedule has fewer than two steps or
/// `√ᾱ_0 = √ᾱ_{T−1}` (nothing to rescale).
pub fn rescale_zero_terminal_snr(betas: &[f64]) -> Result<Vec<f64>> {
    let (first, last) = match betas {
        [_, .., _] => (0, betas.len() - 1),
        _ => {
            return Err(ScheduleError::new(
                "rescale_betas_zero_snr",
                format!("needs at least 2 steps, got {}", betas.len()),
            ))
        }
    };
    let mut sqrt_alpha_bar = Vec::with_capacity(betas.len());
    let mut product = 1.0;
    for beta in betas {
        product *= 1.0 - beta;
        sqrt_alpha_bar.push(product.sqrt());
    }
    let start = sqrt_alpha_bar[first];
    let end = sqrt_alpha_bar[last];
    if start == end {
        return Err(ScheduleError::new(
            "rescale_betas_zero_snr",
            "the schedule adds no noise (ᾱ_0 = ᾱ_{T-1}), so there is nothing to rescale",
        ));
    }
    let scale = start / (start - end);
    let alpha_bar: Vec<f64> = sqrt_alpha_bar
        .iter()
        .map(|&root| {
            let shifted = (root - end) * scale;
            shifted * shifted
        })
        .collect();
    let mut rescaled = Vec::with_capacity(betas.len());
    rescaled.push(1.0 - alpha_bar[first]);
    rescaled.extend(alpha_bar.windows(2).map(|pair| 1.0 - pair[1] / pair[0]));
    Ok(rescaled)
}
