//! Learning-rate schedules, as a function of the optimiser step `s` (counted from 0: the step about to be taken).
//!
//! - constant: `lr(s) = lr`;
//! - linear warm-up over `W` steps, then constant: `lr(s) = lr·min(1, (s+1)/W)`;
//! - warm-up, then cosine decay to a floor over the remaining steps up to `S` (Loshchilov & Hutter 2017, one cycle):
//!   with progress `p = clamp((s − W)/(S − W), 0, 1)`, `lr(s) = floor + (lr − floor)·½(1 + cos πp)`.
//!
//! The warm-up counts `s + 1` where diffusers' `get_scheduler` counts `s`, so the first step already moves the
//! weights (diffusers spends step 0 at learning rate 0).

use serde::{Deserialize, Serialize};

/// A learning rate for every step.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LrSchedule {
    Constant {
        lr: f32,
    },
    LinearWarmup {
        lr: f32,
        warmup: u64,
    },
    Cosine {
        lr: f32,
        warmup: u64,
        total: u64,
        floor: f32,
    },
}

impl LrSchedule {
    /// The learning rate of step `step` (0-based).
    pub fn lr_at(&self, step: u64) -> f32 {
        let warm = |lr: f32, warmup: u64| {
            if step < warmup {
                (f64::from(lr) * (step + 1) as f64 / warmup as f64) as f32
            } else {
                lr
            }
        };
        match *self {
            LrSchedule::Constant { lr } => lr,
            LrSchedule::LinearWarmup { lr, warmup } => warm(lr, warmup),
            LrSchedule::Cosine {
                lr,
                warmup,
                total,
                floor,
            } => {
                if step < warmup {
                    return warm(lr, warmup);
                }
                let span = total.saturating_sub(warmup).max(1) as f64;
                let progress = ((step - warmup) as f64 / span).min(1.0);
                let cos = 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
                (f64::from(floor) + f64::from(lr - floor) * cos) as f32
            }
        }
    }

    /// The peak learning rate.
    pub fn base_lr(&self) -> f32 {
        match *self {
            LrSchedule::Constant { lr }
            | LrSchedule::LinearWarmup { lr, .. }
            | LrSchedule::Cosine { lr, .. } => lr,
        }
    }
}
