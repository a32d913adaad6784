//! The noise levels and model timesteps of the σ-samplers, computed as diffusers' `set_timesteps` computes them.
//!
//! Two families differ in where their grid comes from:
//!
//! - **k-diffusion style** (Euler, Euler ancestral, Heun, LMS; [`k_grid`]): `N` timesteps of the spacing — fractional
//!   for `linspace` (`(T−1)·k/(N−1)`, not rounded), whole for `leading` and `trailing` — and at each the training σ
//!   interpolated *linearly in σ* between the two neighbouring training timesteps (`np.interp`).
//! - **multistep** (DPM-Solver, UniPC; [`multistep_grid`]): `N` whole timesteps, `linspace` and `leading` taken from
//!   `N + 1` points with the last (t ≈ 0) dropped, and their training σ.
//!
//! Either grid can be replaced by a ramp between σ_max and σ_min: Karras et al.'s (evenly spaced in `σ^{1/7}`),
//! exponential (evenly spaced in `log σ`), or DPM-Solver's "Lu" λ-ramp (the same exponential ramp, over the training
//! range). The ends of the ramp are the visited σ (k-diffusion style, as diffusers' Euler) or the training σ at
//! `t = T−1` and `t = 0` (as diffusers' DPM-Solver and UniPC), or explicit `sigma_min` / `sigma_max`. The model
//! timesteps of a ramp are its σ mapped back by [`sigma_to_timestep`]; the multistep schedulers round them to whole
//! timesteps. After the last level comes a final one: 0, or the smallest training σ.
//!
//! diffusers stores timesteps and σ as float32; so do these grids (each value is rounded to the nearest f32), so
//! that a model is called at the same timesteps and the coefficients agree to the last bit of f32.

use super::sigmas::{sigma_to_timestep, training_sigmas};
use super::SamplerOptions;
use crate::error::{Error, Result};
use crate::schedule::karras::KARRAS_RHO;
use crate::schedule::{
    check_counts, karras_sigmas, leading_timesteps, trailing_timesteps, NoiseSchedule,
    TimestepSpacing,
};

/// How a σ-sampler spaces its noise levels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SigmaSpacing {
    /// The σ of the spaced timesteps (diffusers' default).
    Timesteps,
    /// Karras et al. (2022, eq. 5): evenly spaced in `σ^{1/ρ}`, ρ = 7 (`use_karras_sigmas`).
    Karras,
    /// Evenly spaced in `log σ` (`use_exponential_sigmas`).
    Exponential,
    /// Evenly spaced in log-SNR λ = −log σ over the training range, with rounded timesteps (DPM-Solver's
    /// `use_lu_lambdas`, Lu et al. 2022).
    Lu,
}

/// Where a ramp of noise levels starts and ends (unless `sigma_min` / `sigma_max` say otherwise).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SigmaRange {
    /// The σ of the first and last spaced timestep (diffusers' Euler, Heun, LMS).
    Visited,
    /// The training σ at `t = T−1` and `t = 0` (diffusers' DPM-Solver and UniPC).
    Training,
}

/// The level after the last step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FinalSigma {
    /// σ = 0: the last step lands on the model's clean sample.
    Zero,
    /// The smallest training σ (diffusers' `final_sigmas_type = "sigma_min"`).
    SigmaMin,
}

/// How a σ-sampler chooses its noise levels.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SigmaSchedule {
    pub spacing: SigmaSpacing,
    pub range: SigmaRange,
    /// Overrides the low end of a ramp (diffusers' `sigma_min`).
    pub sigma_min: Option<f64>,
    /// Overrides the high end of a ramp (diffusers' `sigma_max`).
    pub sigma_max: Option<f64>,
    pub final_sigma: FinalSigma,
}

impl Default for SigmaSchedule {
    fn default() -> Self {
        Self {
            spacing: SigmaSpacing::Timesteps,
            range: SigmaRange::Visited,
            sigma_min: None,
            sigma_max: None,
            final_sigma: FinalSigma::Zero,
        }
    }
}

/// The grid of a σ-sampler: the model timestep of each step, and its noise level followed by the final one(s).
#[derive(Clone, Debug, PartialEq)]
pub struct SigmaGrid {
    pub timesteps: Vec<f64>,
    /// `timesteps.len() + 1` levels (one more for Euler's `log_linear` interpolation, whose last is never reached).
    pub sigmas: Vec<f64>,
}

/// How the k-diffusion-style samplers turn timesteps into σ (diffusers' Euler `interpolation_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SigmaInterpolation {
    /// Linear in σ between training timesteps.
    Linear,
    /// Ignore the timesteps: `N + 1` levels evenly spaced in `log σ` from the largest to the smallest training σ.
    LogLinear,
}

/// The value as diffusers stores it: rounded to float32.
pub fn f32_round(x: f64) -> f64 {
    x as f32 as f64
}

/// numpy's `linspace(start, stop, num)`: `start + k·(stop − start)/(num − 1)`, the last value exactly `stop`.
pub fn linspace(start: f64, stop: f64, num: usize) -> Vec<f64> {
    let step = if num > 1 {
        (stop - start) / (num - 1) as f64
    } else {
        0.0
    };
    (0..num)
        .map(|k| {
            if k + 1 == num && num > 1 {
                stop
            } else {
                start + k as f64 * step
            }
        })
        .collect()
}

/// `np.interp(t, arange(T), table)`: linear interpolation between training timesteps, clamped at the ends.
pub fn interpolate(table: &[f64], t: f64) -> f64 {
    let last = table.len() - 1;
    if t <= 0.0 {
        return table[0];
    }
    if t >= last as f64 {
        return table[last];
    }
    let below = t.floor() as usize;
    let w = t - below as f64;
    table[below] + w * (table[below + 1] - table[below])
}

/// The ramp of `n` levels from `high` down to `low`.
fn ramp(spacing: SigmaSpacing, n: usize, low: f64, high: f64) -> Result<Vec<f64>> {
    Ok(match spacing {
        SigmaSpacing::Timesteps => unreachable!("a ramp is only built for the ramp spacings"),
        SigmaSpacing::Karras => karras_sigmas(n, low, high, KARRAS_RHO)?,
        SigmaSpacing::Exponential | SigmaSpacing::Lu => {
            if !(low > 0.0 && high >= low) {
                return Err(Error::sampler(
                    "sigmas",
                    format!("an exponential ramp needs 0 < σ_min ≤ σ_max, got {low} and {high}"),
                ));
            }
            linspace(high.ln(), low.ln(), n)
                .into_iter()
                .map(f64::exp)
                .collect()
        }
    })
}

/// The ends `(low, high)` of a ramp: explicit values first, else the range's.
fn ramp_ends(sigmas: &SigmaSchedule, visited: &[f64], table: &[f64]) -> (f64, f64) {
    let (low, high) = match sigmas.range {
        SigmaRange::Visited => (visited[visited.len() - 1], visited[0]),
        SigmaRange::Training => (table[0], table[table.len() - 1]),
    };
    (
        sigmas.sigma_min.unwrap_or(low),
        sigmas.sigma_max.unwrap_or(high),
    )
}

/// diffusers' timesteps of Euler, Euler ancestral, Heun and LMS: float, `linspace` not rounded.
fn k_timesteps(options: &SamplerOptions, num_train_timesteps: usize) -> Result<Vec<f64>> {
    let (t, n) = (num_train_timesteps, options.steps);
    let spaced: Vec<f64> = match options.spacing {
        TimestepSpacing::Linspace => {
            check_counts(t, n)?;
            linspace(0.0, (t - 1) as f64, n).into_iter().rev().collect()
        }
        TimestepSpacing::Leading => leading_timesteps(t, n, options.steps_offset)?
            .into_iter()
            .map(|t| t as f64)
            .collect(),
        TimestepSpacing::Trailing => trailing_timesteps(t, n)?
            .into_iter()
            .map(|t| t as f64)
            .collect(),
    };
    Ok(spaced.into_iter().map(f32_round).collect())
}

/// The grid of diffusers' Euler, Euler ancestral, Heun and LMS schedulers (before Heun doubles its inner levels).
/// `continuous_timesteps` calls the model at `t = ¼·ln σ` instead (Euler's `timestep_type = "continuous"`).
pub fn k_grid(
    schedule: &NoiseSchedule,
    options: &SamplerOptions,
    interpolation: SigmaInterpolation,
    continuous_timesteps: bool,
) -> Result<SigmaGrid> {
    let table = training_sigmas(schedule)?;
    let mut timesteps = k_timesteps(options, schedule.len())?;
    let mut sigmas: Vec<f64> = match interpolation {
        SigmaInterpolation::Linear => timesteps.iter().map(|&t| interpolate(&table, t)).collect(),
        SigmaInterpolation::LogLinear => linspace(
            table[table.len() - 1].ln(),
            table[0].ln(),
            options.steps + 1,
        )
        .into_iter()
        .map(f64::exp)
        .collect(),
    };
    if options.sigmas.spacing != SigmaSpacing::Timesteps {
        let (low, high) = ramp_ends(&options.sigmas, &sigmas, &table);
        sigmas = ramp(options.sigmas.spacing, options.steps, low, high)?;
        timesteps = sigmas
            .iter()
            .map(|&s| f32_round(sigma_to_timestep(&table, s)))
            .collect();
    }
    sigmas.push(match options.sigmas.final_sigma {
        FinalSigma::Zero => 0.0,
        FinalSigma::SigmaMin => table[0],
    });
    let sigmas: Vec<f64> = sigmas.into_iter().map(f32_round).collect();
    if continuous_timesteps {
        // One timestep per level but the final one (N + 1 of them after a log-linear interpolation, as in
        // diffusers).
        timesteps = sigmas[..sigmas.len() - 1]
            .iter()
            .map(|s| f32_round(0.25 * s.ln()))
            .collect();
    }
    Ok(SigmaGrid { timesteps, sigmas })
}

/// Which multistep scheduler a grid is for; they differ in small ways.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Multistep {
    /// DPM-Solver: timesteps stop before the first whose log-SNR is below `lambda_min_clipped`; the timesteps of a
    /// Karras or Lu ramp are rounded unless `truncate_ramp_timesteps` (diffusers truncates them for
    /// `squaredcos_cap_v2` schedules).
    DpmSolver {
        lambda_min_clipped: f64,
        truncate_ramp_timesteps: bool,
    },
    /// UniPC: Karras timesteps are always rounded; a ramp's `sigma_min` final level is the ramp's last σ.
    UniPc,
}

/// diffusers' `arange(start, 0, −ratio).round() − 1` (filled as numpy fills it: `start + k·δ`, δ the difference of
/// the first two values), at most `max_len` values.
fn trailing_from(start: usize, ratio: f64, max_len: usize) -> Vec<f64> {
    let first = start as f64;
    let delta = (first - ratio) - first;
    (0..max_len)
        .map(|k| {
            if k == 0 {
                first
            } else {
                first + k as f64 * delta
            }
        })
        .take_while(|&v| v > 0.0)
        .map(|v| v.round_ties_even() - 1.0)
        .collect()
}

/// The whole timesteps of DPM-Solver and UniPC before any ramp: `N` of them, below `last` (the first clipped
/// timestep, `T` without clipping).
fn multistep_timesteps(options: &SamplerOptions, t: usize, last: usize) -> Result<Vec<f64>> {
    let n = options.steps;
    check_counts(t, n)?;
    let timesteps: Vec<f64> = match options.spacing {
        TimestepSpacing::Linspace => linspace(0.0, last as f64 - 1.0, n + 1)
            .into_iter()
            .rev()
            .take(n)
            .map(f64::round_ties_even)
            .collect(),
        TimestepSpacing::Leading => {
            let ratio = last / (n + 1);
            if (n * ratio)
                .checked_add(options.steps_offset)
                .is_none_or(|top| top >= t)
            {
                return Err(Error::sampler(
                    "steps_offset",
                    format!(
                        "{} moves the largest leading timestep {} past the last training timestep {}",
                        options.steps_offset,
                        n * ratio,
                        t - 1
                    ),
                ));
            }
            (1..=n)
                .rev()
                .map(|k| (k * ratio + options.steps_offset) as f64)
                .collect()
        }
        TimestepSpacing::Trailing => trailing_from(last, t as f64 / n as f64, n),
    };
    if timesteps.is_empty() {
        return Err(Error::sampler(
            "lambda_min_clipped",
            "clips away every timestep; no step is left to take",
        ));
    }
    Ok(timesteps)
}

/// The grid of diffusers' DPM-Solver (multistep) and UniPC schedulers. Its length may be below `options.steps` when
/// `lambda_min_clipped` removes timesteps from the `trailing` spacing, as in diffusers.
pub fn multistep_grid(
    schedule: &NoiseSchedule,
    options: &SamplerOptions,
    kind: Multistep,
) -> Result<SigmaGrid> {
    let table = training_sigmas(schedule)?;
    let t = schedule.len();
    let last = match kind {
        // λ_t = log √ᾱ_t − log √(1−ᾱ_t) = −log σ_t decreases with t; keep the timesteps with λ_t ≥ λ_min.
        Multistep::DpmSolver {
            lambda_min_clipped, ..
        } => {
            t - table
                .iter()
                .filter(|s| -s.ln() < lambda_min_clipped)
                .count()
        }
        Multistep::UniPc => t,
    };
    if last == 0 {
        return Err(Error::sampler(
            "lambda_min_clipped",
            "clips away every timestep; no step is left to take",
        ));
    }
    let mut timesteps = multistep_timesteps(options, t, last)?;
    let visited: Vec<f64> = timesteps.iter().map(|&t| table[t as usize]).collect();
    let mut sigmas = visited.clone();
    if options.sigmas.spacing != SigmaSpacing::Timesteps {
        let (low, high) = ramp_ends(&options.sigmas, &visited, &table);
        sigmas = ramp(options.sigmas.spacing, options.steps, low, high)?;
        let round = match (kind, options.sigmas.spacing) {
            (_, SigmaSpacing::Exponential) => false,
            (
                Multistep::DpmSolver {
                    truncate_ramp_timesteps,
                    ..
                },
                _,
            ) => !truncate_ramp_timesteps,
            (Multistep::UniPc, _) => true,
        };
        timesteps = sigmas
            .iter()
            .map(|&s| {
                let t = sigma_to_timestep(&table, s);
                // diffusers converts to int64, which truncates what was not rounded.
                if round {
                    t.round_ties_even()
                } else {
                    t.trunc()
                }
            })
            .collect();
    }
    let ramp_last = sigmas[sigmas.len() - 1];
    let final_sigma = match (kind, options.sigmas.final_sigma, options.sigmas.spacing) {
        (_, FinalSigma::Zero, _) => 0.0,
        (Multistep::UniPc, FinalSigma::SigmaMin, spacing) if spacing != SigmaSpacing::Timesteps => {
            ramp_last
        }
        (_, FinalSigma::SigmaMin, _) => table[0],
    };
    sigmas.push(final_sigma);
    Ok(SigmaGrid {
        timesteps,
        sigmas: sigmas.into_iter().map(f32_round).collect(),
    })
}
