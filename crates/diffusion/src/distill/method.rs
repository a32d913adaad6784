//! What a distillation (or consistency training) run does each step, and the settings that say so, saved whole in
//! every checkpoint's `distill_state.json`.

use super::consistency::{Distance, LevelWeighting, OdeSolver};
use super::curriculum::Curriculum;
use crate::error::{Error, Result};
use crate::schedule::{NoiseSchedule, SchedulerConfig};
use crate::train::config::{scheduler_from_json, scheduler_to_json};
use serde::{Deserialize, Serialize};

/// The three objectives.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Method {
    /// Progressive distillation from a teacher sampled with `from_steps` DDIM steps down to `to_steps`, one round per
    /// halving ([`super::progressive`]).
    Progressive { from_steps: usize, to_steps: usize },
    /// Consistency distillation on `levels` Karras noise levels with the teacher's `solver`, against a target network
    /// that is the EMA (decay `target_decay`) of the student.
    ConsistencyDistillation {
        levels: usize,
        solver: OdeSolver,
        distance: Distance,
        target_decay: f64,
        /// How each sample's distance is weighted by its noise level (runs saved before the option are uniform).
        #[serde(default)]
        level_weighting: LevelWeighting,
    },
    /// Consistency training without a teacher, Song & Dhariwal's (2023) improved recipe: the noise levels follow
    /// `curriculum`, are drawn log-normally, the target network is the student itself (no EMA) and the distance is
    /// pseudo-Huber, weighted by `1/(σ_{n+1} − σ_n)`.
    ConsistencyTraining { curriculum: Curriculum },
}

impl Method {
    /// Its name on the command line and in messages.
    pub fn name(&self) -> &'static str {
        match self {
            Method::Progressive { .. } => "progressive distillation",
            Method::ConsistencyDistillation { .. } => "consistency distillation",
            Method::ConsistencyTraining { .. } => "consistency training",
        }
    }

    /// Rounds of the run: one per halving for progressive distillation, else 1.
    pub fn rounds(&self) -> u32 {
        match self {
            Method::Progressive {
                from_steps,
                to_steps,
            } => (from_steps / to_steps).trailing_zeros(),
            _ => 1,
        }
    }

    /// The student's DDIM steps at the end of round `round` (1-based) of progressive distillation.
    pub fn student_steps(&self, round: u32) -> Option<usize> {
        match self {
            Method::Progressive { from_steps, .. } => Some(from_steps >> round),
            _ => None,
        }
    }

    /// Whether it learns from a teacher.
    pub fn has_teacher(&self) -> bool {
        !matches!(self, Method::ConsistencyTraining { .. })
    }
}

/// Where the teacher came from, to refuse resuming with another.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TeacherId {
    /// The folder given as the teacher.
    pub path: String,
    /// FNV-1a 64 of the teacher's weights file, in hex.
    pub fingerprint: String,
}

/// FNV-1a 64 of `bytes`, in hex: a fingerprint of a weights file (not a cryptographic hash; it tells files apart).
pub fn fingerprint(bytes: &[u8]) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}

/// The settings of a distillation or consistency-training run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DistillConfig {
    pub method: Method,
    /// The teacher (none for consistency training).
    pub teacher: Option<TeacherId>,
    /// The scheduler config of the teacher's run (or of the new run): the noise schedule, the prediction type and
    /// how x̂0 is kept in range.
    #[serde(
        serialize_with = "scheduler_to_json",
        deserialize_with = "scheduler_from_json"
    )]
    pub scheduler: SchedulerConfig,
    pub seed: u64,
    pub batch_size: usize,
    /// Optimiser steps per round.
    pub steps_per_round: u64,
    pub lr: f32,
    pub grad_clip: Option<f32>,
    /// Maximum decay of the EMA of the student's weights (the weights that are sampled).
    pub ema_decay: f64,
    /// Classifier-free guidance scale of the first teacher (1: unguided); the student learns the guided output
    /// ([`DistillConfig::teacher_guidance`] for later rounds).
    pub guidance: f64,
    /// The null class of a class-conditional model.
    pub null_class: Option<u32>,
}

impl DistillConfig {
    pub fn noise_schedule(&self) -> Result<NoiseSchedule> {
        Ok(NoiseSchedule::from_config(&self.scheduler)?)
    }

    /// The guidance scale applied to round `round`'s teacher. Only the first round's teacher is the guided model;
    /// every later round's teacher is the previous round's student, which has learned the guided output and
    /// carries the guidance in its conditional prediction. Guiding it again would compound the scale round after
    /// round (its null-class output, never trained, stays near the original model's unconditional one, so scale w
    /// over a student that already gives u + w·(c − u) gives about u + w²·(c − u)).
    pub fn teacher_guidance(&self, round: u32) -> f64 {
        if round <= 1 {
            self.guidance
        } else {
            1.0
        }
    }

    /// Refuses settings that cannot run.
    pub fn validate(&self) -> Result<()> {
        let bad = |what: &str, message: String| Err(Error::train(what, message));
        if let Method::Progressive {
            from_steps,
            to_steps,
        } = self.method
        {
            check_halvings(from_steps, to_steps, self.scheduler.num_train_timesteps)?;
        }
        if let Method::ConsistencyDistillation {
            levels,
            target_decay,
            ..
        } = self.method
        {
            if levels < 2 {
                return bad(
                    "--levels",
                    format!(
                        "{levels}: consistency distillation needs at least 2 noise levels (σ_min and σ_max); \
                         Song et al. use 18"
                    ),
                );
            }
            if !(0.0..1.0).contains(&target_decay) {
                return bad(
                    "--target-decay",
                    format!(
                        "{target_decay} is not in [0, 1): the target network would never move (1) or diverge; \
                         Song et al. use 0.95"
                    ),
                );
            }
        }
        if let Method::ConsistencyTraining { curriculum } = &self.method {
            curriculum.validate()?;
        }
        if self.method.has_teacher() != self.teacher.is_some() {
            return bad(
                "teacher",
                format!(
                    "{} {} a teacher",
                    self.method.name(),
                    if self.method.has_teacher() {
                        "needs"
                    } else {
                        "takes no"
                    }
                ),
            );
        }
        if self.batch_size == 0 || self.steps_per_round == 0 {
            return bad(
                "batch_size",
                "the batch size and the steps per round must be at least 1".into(),
            );
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return bad("lr", format!("{} must be positive", self.lr));
        }
        if !(0.0..=1.0).contains(&self.ema_decay) {
            return bad("ema_decay", format!("{} is not in [0, 1]", self.ema_decay));
        }
        if !(self.guidance.is_finite() && self.guidance >= 0.0) {
            return bad(
                "guidance",
                format!("{} must be finite and ≥ 0", self.guidance),
            );
        }
        if self.guidance != 1.0 && self.null_class.is_none() {
            return bad(
                "--guidance",
                format!(
                    "{}: a guided teacher must be class-conditional with a null class; leave --guidance out",
                    self.guidance
                ),
            );
        }
        Ok(())
    }
}

/// Refuses a progressive schedule that is not a chain of halvings from `from` to `to` within `T` timesteps.
pub fn check_halvings(from: usize, to: usize, num_train_timesteps: usize) -> Result<()> {
    let bad = |message: String| Err(Error::train("--to-steps", message));
    if !from.is_power_of_two() {
        return Err(Error::train(
            "--teacher-steps",
            format!("{from} is not a power of two; progressive distillation halves it each round"),
        ));
    }
    if from > num_train_timesteps {
        return Err(Error::train(
            "--teacher-steps",
            format!("{from} exceeds the schedule's {num_train_timesteps} timesteps"),
        ));
    }
    if !to.is_power_of_two() || to >= from {
        return bad(format!(
            "{to} must be a power of two below the teacher's {from} steps (1, 2, 4, … {})",
            from / 2
        ));
    }
    Ok(())
}
