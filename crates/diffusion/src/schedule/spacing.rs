//! Timestep spacings: which of the `T` training timesteps an `N`-step sampler visits, largest first.
//!
//! The three rules of Lin et al. (2024, Table 2), exactly as diffusers' `DDPMScheduler.set_timesteps` and
//! `DDIMScheduler.set_timesteps` compute them with numpy (`round` is round-half-to-even there and here):
//!
//! | spacing | timesteps, before reversing to descending order |
//! | --- | --- |
//! | `linspace` | `round(linspace(0, T−1, N))` |
//! | `leading` | `k · ⌊T/N⌋ + steps_offset` for `k = 0 … N−1` |
//! | `trailing` | `round(T − k · T/N) − 1` for `k = 0 … N−1` (`numpy.arange(T, 0, −T/N)`) |
//!
//! `trailing` always starts at `T−1`, the noisiest step, which zero-terminal-SNR sampling needs; `leading` never visits
//! it unless `steps_offset` pushes it there.
//!
//! One deliberate difference: numpy's `arange(T, 0, −T/N)` has `⌈T / (T/N)⌉` elements, which floating point rounding
//! makes `N + 1` for some `N` (for `T = 1000`: `N = 61, 103, 121, …`); diffusers then returns an extra timestep `−1`.
//! [`trailing_timesteps`] returns the `N` timesteps that were asked for, identical to the first `N` of diffusers'.

use super::error::{Result, ScheduleError};

/// How inference timesteps are spread over the training timesteps, by their config names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestepSpacing {
    Linspace,
    Leading,
    Trailing,
}

impl TimestepSpacing {
    pub const ALL: [TimestepSpacing; 3] = [
        TimestepSpacing::Linspace,
        TimestepSpacing::Leading,
        TimestepSpacing::Trailing,
    ];

    /// The name used in `scheduler_config.json`.
    pub fn name(self) -> &'static str {
        match self {
            TimestepSpacing::Linspace => "linspace",
            TimestepSpacing::Leading => "leading",
            TimestepSpacing::Trailing => "trailing",
        }
    }

    /// The spacing called `name` in a config, if there is one.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }
}

/// The `num_inference_steps` timesteps of `spacing`, in descending order. `steps_offset` only affects `leading`, as in
/// diffusers.
pub fn timesteps(
    spacing: TimestepSpacing,
    num_train_timesteps: usize,
    num_inference_steps: usize,
    steps_offset: usize,
) -> Result<Vec<usize>> {
    match spacing {
        TimestepSpacing::Linspace => linspace_timesteps(num_train_timesteps, num_inference_steps),
        TimestepSpacing::Leading => {
            leading_timesteps(num_train_timesteps, num_inference_steps, steps_offset)
        }
        TimestepSpacing::Trailing => trailing_timesteps(num_train_timesteps, num_inference_steps),
    }
}

/// `round(linspace(0, T−1, N))`, descending. `linspace` is numpy's: `k · ((T−1)/(N−1))`, last value exactly `T−1`.
pub fn linspace_timesteps(
    num_train_timesteps: usize,
    num_inference_steps: usize,
) -> Result<Vec<usize>> {
    check_counts(num_train_timesteps, num_inference_steps)?;
    let (t, n) = (num_train_timesteps, num_inference_steps);
    let last = (t - 1) as f64;
    let step = if n > 1 { last / (n - 1) as f64 } else { 0.0 };
    Ok((0..n)
        .rev()
        .map(|k| {
            let value = if k + 1 == n && n > 1 {
                last
            } else {
                k as f64 * step
            };
            // `value` lies in [0, T−1], so the rounded value converts to usize exactly.
            value.round_ties_even() as usize
        })
        .collect())
}

/// `k · ⌊T/N⌋ + steps_offset` for `k = N−1 … 0`: integer strides from 0, shifted by `steps_offset`.
pub fn leading_timesteps(
    num_train_timesteps: usize,
    num_inference_steps: usize,
    steps_offset: usize,
) -> Result<Vec<usize>> {
    check_counts(num_train_timesteps, num_inference_steps)?;
    let stride = num_train_timesteps / num_inference_steps;
    // Largest value: (N−1)·⌊T/N⌋ + offset ≤ T − 1 + offset; it must name a training timestep.
    let largest = (num_inference_steps - 1) * stride;
    if largest
        .checked_add(steps_offset)
        .is_none_or(|top| top >= num_train_timesteps)
    {
        return Err(ScheduleError::new(
            "steps_offset",
            format!(
                "{steps_offset} moves the largest leading timestep {largest} past the last training timestep {}",
                num_train_timesteps - 1
            ),
        ));
    }
    Ok((0..num_inference_steps)
        .rev()
        .map(|k| k * stride + steps_offset)
        .collect())
}

/// `round(T − k · T/N) − 1` for `k = 0 … N−1`, computed as numpy's `arange(T, 0, −T/N)` fills its array:
/// `T + k · δ` with `δ = (T − T/N) − T` (the second element minus the first, which may differ from `−T/N` in the last
/// bit).
pub fn trailing_timesteps(
    num_train_timesteps: usize,
    num_inference_steps: usize,
) -> Result<Vec<usize>> {
    check_counts(num_train_timesteps, num_inference_steps)?;
    let start = num_train_timesteps as f64;
    let ratio = start / num_inference_steps as f64;
    let delta = (start - ratio) - start;
    let values = (0..num_inference_steps).map(|k| {
        if k == 0 {
            start
        } else {
            start + k as f64 * delta
        }
    });
    values
        .map(|value| {
            // value ≥ T − (N−1)·T/N = T/N ≥ 1 up to rounding, so the rounded value is at least 1.
            let rounded = value.round_ties_even();
            if rounded < 1.0 {
                return Err(ScheduleError::new(
                    "timesteps",
                    format!("trailing spacing produced {value} for T = {num_train_timesteps}, N = {num_inference_steps}"),
                ));
            }
            Ok(rounded as usize - 1)
        })
        .collect()
}

/// Refuses zero inference steps and more inference steps than training timesteps.
pub fn check_counts(num_train_timesteps: usize, num_inference_steps: usize) -> Result<()> {
    if num_inference_steps == 0 {
        return Err(ScheduleError::new(
            "num_inference_steps",
            "must be at least 1",
        ));
    }
    if num_inference_steps > num_train_timesteps {
        return Err(ScheduleError::new(
            "num_inference_steps",
            format!("{num_inference_steps} exceeds num_train_timesteps = {num_train_timesteps}"),
        ));
    }
    Ok(())
}
