//! Everything that defines a training run, saved whole in every checkpoint's `trainer_state.json`.

use super::target::{prediction_of, Prediction};
use super::weighting::LossWeighting;
use crate::error::{Error, Result};
use crate::image_condition::ImageCondition;
use crate::schedule::{NoiseSchedule, SchedulerConfig};
use crate::sde::ScoreMatching;
use diffuse_nn::{EmaWarmup, LrSchedule};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The settings of a training run. The noise schedule and the prediction target are those of `scheduler`, the
/// diffusers scheduler config the model is trained for (and saved with) — unless `score_matching` is set, which
/// trains a score model of a continuous SDE instead (and saves that SDE's scheduler config).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Seeds the data order, timesteps, dropout, flips and noise (see [`super::random`]).
    pub seed: u64,
    /// Total optimiser steps of the run.
    pub steps: u64,
    pub batch_size: usize,
    pub lr: LrSchedule,
    pub adam_beta1: f32,
    pub adam_beta2: f32,
    pub adam_eps: f32,
    pub weight_decay: f32,
    /// Clip the global gradient norm to this (none: no clipping).
    pub grad_clip: Option<f32>,
    /// The EMA's maximum decay.
    pub ema_decay: f64,
    pub ema_warmup: EmaWarmup,
    #[serde(
        serialize_with = "scheduler_to_json",
        deserialize_with = "scheduler_from_json"
    )]
    pub scheduler: SchedulerConfig,
    pub loss_weighting: LossWeighting,
    /// Loss-aware importance sampling of timesteps instead of uniform.
    pub importance_sampling: bool,
    /// Train class-conditionally on the dataset's labels, with this null class (the label that dropped-out samples
    /// get, `num_classes` by convention); `None`: unconditional.
    pub null_class: Option<u32>,
    /// The probability of replacing a sample's label by the null class (classifier-free guidance training).
    pub label_dropout: f64,
    /// The probability of replacing a sample's caption by the empty prompt (classifier-free guidance training of a
    /// text-conditioned run; [`super::CaptionContexts`]). The same uniform draw decides both dropouts.
    #[serde(default)]
    pub caption_dropout: f64,
    /// Mirror each image left-to-right with probability ½.
    pub hflip: bool,
    /// Translate each image by up to this many pixels in each direction, borders filled by reflection
    /// ([`crate::data::augment`]; 0: off, and nothing is drawn for it).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub crop_pad: usize,
    /// Fail after this many consecutive steps with a non-finite loss or gradient norm.
    pub max_nonfinite: u32,
    /// Denoising score matching of a VE, VP or sub-VP SDE ([`crate::sde::score_matching`]) instead of the
    /// discrete objective; `timestep sampling`, `loss_weighting` and the schedule of `scheduler` then do not apply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score_matching: Option<ScoreMatching>,
    /// λ of `L_simple + λ·L_vlb` when the network also predicts its variance ([`super::hybrid`]); unused otherwise.
    #[serde(default = "default_vlb_weight")]
    pub vlb_weight: f64,
    /// An image the network also sees as extra input channels: a super-resolution stage's low-resolution input or
    /// an inpainting network's mask and masked image ([`crate::image_condition`]); `None` for a plain denoiser.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_condition: Option<ImageCondition>,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

fn default_vlb_weight() -> f64 {
    super::hybrid::DEFAULT_VLB_WEIGHT
}

impl TrainConfig {
    /// The prediction target of the scheduler config.
    pub fn prediction(&self) -> Prediction {
        prediction_of(self.scheduler.prediction_type)
    }

    /// The noise schedule of the scheduler config.
    pub fn noise_schedule(&self) -> Result<NoiseSchedule> {
        Ok(NoiseSchedule::from_config(&self.scheduler)?)
    }

    /// The `scheduler_config.json` the model is saved with: the DDPM-family `scheduler`, or the SDE's.
    pub fn scheduler_json(&self) -> Result<String> {
        match &self.score_matching {
            Some(objective) => Ok(objective.scheduler_config()?.to_json_string()),
            None => Ok(self.scheduler.to_json_string()),
        }
    }

    /// Refuses settings that cannot train.
    pub fn validate(&self) -> Result<()> {
        let bad = |what: &str, message: String| Err(Error::train(what, message));
        if let Some(objective) = &self.score_matching {
            objective.validate()?;
            if self.importance_sampling {
                return bad(
                    "importance_sampling",
                    "samples discrete timesteps; score matching draws continuous times (drop it)"
                        .into(),
                );
            }
            if self.loss_weighting != LossWeighting::Uniform {
                return bad(
                    "loss_weighting",
                    "min-SNR weighting belongs to the discrete objective; score matching is weighted by its own \
                     λ(t) (variance or likelihood)"
                        .into(),
                );
            }
        }
        if self.batch_size == 0 {
            return bad("batch_size", "must be at least 1".into());
        }
        if !(0.0..=1.0).contains(&self.label_dropout) {
            return bad(
                "label_dropout",
                format!("{} is not in [0, 1]", self.label_dropout),
            );
        }
        if !(0.0..=1.0).contains(&self.caption_dropout) {
            return bad(
                "caption_dropout",
                format!("{} is not in [0, 1]", self.caption_dropout),
            );
        }
        if self.label_dropout > 0.0 && self.null_class.is_none() {
            return bad(
                "label_dropout",
                "needs class-conditional training (a null class)".into(),
            );
        }
        if let Some(c) = self.grad_clip {
            if !(c > 0.0 && c.is_finite()) {
                return bad("grad_clip", format!("{c} must be positive and finite"));
            }
        }
        if !(0.0..=1.0).contains(&self.ema_decay) {
            return bad("ema_decay", format!("{} is not in [0, 1]", self.ema_decay));
        }
        if let LossWeighting::MinSnr { gamma } = self.loss_weighting {
            if gamma.is_nan() || gamma <= 0.0 {
                return bad("min_snr_gamma", format!("{gamma} must be positive"));
            }
        }
        if !(self.vlb_weight >= 0.0 && self.vlb_weight.is_finite()) {
            return bad(
                "vlb_weight",
                format!("{} must be finite and ≥ 0", self.vlb_weight),
            );
        }
        if let Some(condition) = &self.image_condition {
            condition.validate(self.scheduler.num_train_timesteps)?;
            if self.score_matching.is_some() {
                return bad(
                    "image_condition",
                    "image-conditioned training uses the discrete objective; leave out score matching".into(),
                );
            }
            if condition.owns_class_labels() && self.null_class.is_some() {
                return bad(
                    "image_condition",
                    "a super-resolution stage's class labels are its augmentation levels; train it unconditional \
                     (no null class, no label dropout)"
                        .into(),
                );
            }
        }
        if self.max_nonfinite == 0 {
            return bad("max_nonfinite", "must be at least 1".into());
        }
        Ok(())
    }
}

/// Serialises a scheduler config as its diffusers JSON object (also for [`crate::distill::DistillConfig`]).
pub(crate) fn scheduler_to_json<S: Serializer>(
    config: &SchedulerConfig,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    config.to_json_value().serialize(s)
}

/// Reads a scheduler config from its diffusers JSON object.
pub(crate) fn scheduler_from_json<'de, D: Deserializer<'de>>(
    d: D,
) -> std::result::Result<SchedulerConfig, D::Error> {
    let value = serde_json::Value::deserialize(d)?;
    SchedulerConfig::from_json_str(&value.to_string()).map_err(serde::de::Error::custom)
}
