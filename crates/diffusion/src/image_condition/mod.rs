//! Denoisers conditioned on an image given as extra input channels: the super-resolution stage of a cascade
//! ([`super_resolution`]) and the trained inpainting variant ([`inpainting`]). Training builds the extra channels of
//! each batch from its clean images and the step's draws ([`ImageCondition`]); sampling concatenates fixed ones to
//! every `x_t` the sampler passes ([`ImageConditioned`]). [`resize`] holds the box, bilinear and bicubic resizing.

pub mod denoiser;
pub mod inpainting;
pub mod resize;
pub mod super_resolution;

pub use denoiser::ImageConditioned;
pub use inpainting::{inpainting_channels, random_mask, Inpainting};
pub use resize::{downsample_box, upsample, Interpolation};
pub use super_resolution::{NoiseAugmentation, SuperResolution};

use crate::error::Result;
use crate::rng::SplitMix64;
use crate::schedule::NoiseSchedule;
use serde::{Deserialize, Serialize};

/// What a run's network sees besides `x_t` (saved in the run's `trainer_state.json`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImageCondition {
    /// The upsampled, noise-augmented low-resolution image; the augmentation level is the class label.
    SuperResolution(SuperResolution),
    /// The mask and the masked image.
    Inpainting(Inpainting),
}

/// The extra input of one batch: `[n, extra_channels, h, w]` values, and the class labels it sets (the
/// augmentation levels of a super-resolution stage).
pub struct ExtraInput {
    pub channels: Vec<f32>,
    pub labels: Option<Vec<u32>>,
}

impl ImageCondition {
    /// Extra input channels for images of `channels` channels.
    pub fn extra_channels(&self, channels: usize) -> usize {
        match self {
            ImageCondition::SuperResolution(_) => channels,
            ImageCondition::Inpainting(_) => 1 + channels,
        }
    }

    /// Whether the network's class labels are the condition's own (the augmentation level), so that the dataset's
    /// labels cannot be used.
    pub fn owns_class_labels(&self) -> bool {
        matches!(self, ImageCondition::SuperResolution(_))
    }

    /// Refuses settings that cannot train on a schedule of `schedule_len` timesteps.
    pub fn validate(&self, schedule_len: usize) -> Result<()> {
        match self {
            ImageCondition::SuperResolution(sr) => sr.validate(schedule_len),
            ImageCondition::Inpainting(_) => Ok(()),
        }
    }

    /// One `u64` per sample of a batch of `batch`, from the step's generator: a super-resolution stage's
    /// augmentation level is `u mod K`, an inpainting mask is [`random_mask`]`(u, …)`.
    pub fn draw(&self, rng: &mut SplitMix64, batch: usize) -> Vec<u64> {
        (0..batch).map(|_| rng.next_u64()).collect()
    }

    /// The extra input of the clean images `x0` (`draws.len() × channels × h × w`) with their draws; `noise(len)`
    /// gives the unit normal noise of the augmentation, `len` values.
    pub fn training_input(
        &self,
        schedule: &NoiseSchedule,
        x0: &[f32],
        channels: usize,
        (h, w): (usize, usize),
        draws: &[u64],
        noise: impl FnOnce(usize) -> Result<Vec<f32>>,
    ) -> Result<ExtraInput> {
        let n = draws.len();
        match self {
            ImageCondition::SuperResolution(sr) => {
                let levels: Vec<u32> = draws
                    .iter()
                    .map(|&u| (u % sr.augmentation.levels as u64) as u32)
                    .collect();
                let low = sr.low_resolution(x0, n, channels)?;
                let noise = noise(low.len())?;
                Ok(ExtraInput {
                    channels: sr.condition(schedule, &low, channels, &levels, &noise)?,
                    labels: Some(levels),
                })
            }
            ImageCondition::Inpainting(_) => {
                let masks: Vec<f32> = draws.iter().flat_map(|&u| random_mask(u, h, w)).collect();
                Ok(ExtraInput {
                    channels: inpainting_channels(x0, &masks, channels, h * w),
                    labels: None,
                })
            }
        }
    }
}
