//! Everything that defines an autoencoder training run, saved whole in every checkpoint's `trainer_state.json`.

use crate::error::{Error, Result};
use diffuse_models::vae::PatchDiscriminatorConfig;
use diffuse_nn::{EmaWarmup, LrSchedule};
use serde::{Deserialize, Serialize};

/// The per-pixel reconstruction error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reconstruction {
    /// |x − x̂|, LDM's choice: sharper than the squared error, which forgives small errors and blurs.
    L1,
    /// (x − x̂)², the Gaussian decoder's negative log-likelihood up to constants.
    Mse,
}

impl Reconstruction {
    /// The command-line name: `l1` or `mse`.
    pub fn name(self) -> &'static str {
        match self {
            Reconstruction::L1 => "l1",
            Reconstruction::Mse => "mse",
        }
    }

    pub fn from_name(name: &str) -> Option<Reconstruction> {
        match name {
            "l1" => Some(Reconstruction::L1),
            "mse" => Some(Reconstruction::Mse),
            _ => None,
        }
    }
}

/// The adversarial part of the LDM recipe: a patch discriminator trained with the hinge loss once the
/// autoencoder has had `start_step` steps of reconstruction alone.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct AdversarialConfig {
    pub discriminator: PatchDiscriminatorConfig,
    /// The first step at which the discriminator trains and the generator loss counts (LDM's `disc_start`).
    pub start_step: u64,
    /// Multiplies the adaptive weight of the generator loss (LDM's `disc_weight`).
    pub weight: f64,
    /// The discriminator's learning rate (its optimiser has the autoencoder's betas).
    pub lr: f32,
}

/// The settings of an autoencoder training run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AutoencoderTrainConfig {
    /// Seeds the initial weights, the data order, flips and the posterior samples.
    pub seed: u64,
    pub steps: u64,
    pub batch_size: usize,
    pub lr: LrSchedule,
    pub adam_beta1: f32,
    pub adam_beta2: f32,
    pub adam_eps: f32,
    pub weight_decay: f32,
    /// Clip the autoencoder's global gradient norm to this (none: no clipping).
    pub grad_clip: Option<f32>,
    pub ema_decay: f64,
    pub ema_warmup: EmaWarmup,
    pub reconstruction: Reconstruction,
    /// β: the weight of the KL term against the reconstruction, both summed over each image.
    pub kl_weight: f64,
    /// The weight of the perceptual distance in the classifier's activations (0: none).
    pub perceptual_weight: f64,
    /// The discriminator and its schedule (none: no adversarial loss).
    pub adversarial: Option<AdversarialConfig>,
    /// Mirror each image left-to-right with probability ½.
    pub hflip: bool,
    /// Fail after this many consecutive steps with a non-finite loss or gradient norm.
    pub max_nonfinite: u32,
    /// Training images the saved `scaling_factor` is measured on (the first ones of the dataset).
    pub scale_images: usize,
}

impl AutoencoderTrainConfig {
    /// Refuses settings that cannot train.
    pub fn validate(&self) -> Result<()> {
        let bad = |what: &str, message: String| Err(Error::train(what, message));
        if self.batch_size == 0 {
            return bad("batch_size", "must be at least 1".into());
        }
        if let Some(c) = self.grad_clip {
            if !(c > 0.0 && c.is_finite()) {
                return bad("grad_clip", format!("{c} must be positive and finite"));
            }
        }
        if !(0.0..=1.0).contains(&self.ema_decay) {
            return bad("ema_decay", format!("{} is not in [0, 1]", self.ema_decay));
        }
        for (what, w) in [
            ("kl_weight", self.kl_weight),
            ("perceptual_weight", self.perceptual_weight),
        ] {
            if !(w >= 0.0 && w.is_finite()) {
                return bad(what, format!("{w} must be finite and not negative"));
            }
        }
        if let Some(adv) = &self.adversarial {
            if !(adv.weight >= 0.0 && adv.weight.is_finite()) {
                return bad(
                    "disc_weight",
                    format!("{} must be finite and not negative", adv.weight),
                );
            }
            if !(adv.lr > 0.0 && adv.lr.is_finite()) {
                return bad("disc_lr", format!("{} must be positive", adv.lr));
            }
            adv.discriminator.validate()?;
        }
        if self.max_nonfinite == 0 {
            return bad("max_nonfinite", "must be at least 1".into());
        }
        if self.scale_images < 2 {
            return bad(
                "scale_images",
                format!(
                    "{} images cannot give a standard deviation; use at least 2",
                    self.scale_images
                ),
            );
        }
        Ok(())
    }
}
