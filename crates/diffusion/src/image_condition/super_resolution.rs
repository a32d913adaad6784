//! The super-resolution stage of a cascade (SR3, Saharia et al. 2021; Ho et al. 2022's cascaded diffusion): a
//! denoiser of `high × high` images that also sees a `low × low` image of the same scene, bilinearly upsampled to
//! `high × high` and concatenated to `x_t` as extra input channels (`[x_t, up(z)]`, the order of diffusers'
//! `StableDiffusionUpscalePipeline`).
//!
//! **Noise-conditioning augmentation** (Ho et al. 2022, §3.2): trained on clean low-resolution images, the stage
//! would trust every pixel of its input, and at sampling time its input is a base model's sample, with the base
//! model's artefacts. So during training the low-resolution image `z` is forward-noised to a random level `k`, and
//! the network is told `k`:
//!
//! `z_k = √ᾱ_{t_k}·z + √(1 − ᾱ_{t_k})·ε`,  `t_k = ⌊k·t_max / (K − 1)⌋` for `k = 1 … K − 1`,  `z_0 = z`,
//!
//! with `ᾱ` the run's own noise schedule, `k` uniform in `0 … K − 1`, and `ε` unit normal at low resolution (the
//! noise is added before upsampling, as in the paper). The network receives `k` as its class label: a `UNet2DModel`
//! with `num_class_embeds = K` and no other classes (diffusers' x4 upscaler passes its noise level the same way,
//! through `class_labels`). Level 0 is the clean image; at sampling time one fixed level is chosen for the whole
//! batch, trading faithfulness to the base sample (0) against robustness to its flaws (higher).

use super::resize::{downsample_box, upsample, Interpolation};
use crate::error::{Error, Result};
use crate::schedule::NoiseSchedule;
use serde::{Deserialize, Serialize};

/// The noise levels of noise-conditioning augmentation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoiseAugmentation {
    /// `K`: levels `0 … K − 1`, the class embeddings of the network.
    pub levels: usize,
    /// `t_max`: the training timestep of the top level.
    pub max_timestep: usize,
}

impl Default for NoiseAugmentation {
    /// Eleven levels up to timestep 200 (of 1000: on the cosine schedule, noise of standard deviation 0.32 on the
    /// `[−1, 1]` pixels at the top).
    fn default() -> Self {
        Self {
            levels: 11,
            max_timestep: 200,
        }
    }
}

impl NoiseAugmentation {
    /// The training timestep of level `k` (`None` for level 0, the clean image).
    pub fn timestep(&self, level: usize) -> Option<usize> {
        (level > 0).then(|| level * self.max_timestep / (self.levels - 1).max(1))
    }

    /// `(√ᾱ, √(1 − ᾱ))` of level `k` on `schedule`: `(1, 0)` for level 0.
    pub fn coefficients(&self, schedule: &NoiseSchedule, level: usize) -> Result<(f64, f64)> {
        self.check_level(level)?;
        match self.timestep(level) {
            None => Ok((1.0, 0.0)),
            Some(t) => {
                let alpha_bar = schedule.alpha_bar(t)?;
                Ok((alpha_bar.sqrt(), (1.0 - alpha_bar).sqrt()))
            }
        }
    }

    /// Refuses a level the network has no embedding for.
    pub fn check_level(&self, level: usize) -> Result<()> {
        if level >= self.levels {
            return Err(Error::train(
                "augmentation level",
                format!(
                    "{level} is out of range: the stage was trained on levels 0..{} (0 = clean)",
                    self.levels - 1
                ),
            ));
        }
        Ok(())
    }

    /// Refuses settings that cannot train on `schedule`.
    pub fn validate(&self, schedule_len: usize) -> Result<()> {
        if self.levels < 2 {
            return Err(Error::train(
                "augmentation levels",
                format!(
                    "{}: needs at least 2 (clean and one noisy level)",
                    self.levels
                ),
            ));
        }
        if self.max_timestep == 0 || self.max_timestep >= schedule_len {
            return Err(Error::train(
                "augmentation max timestep",
                format!(
                    "{} must be in 1..{schedule_len} (a timestep of the run's schedule)",
                    self.max_timestep
                ),
            ));
        }
        Ok(())
    }
}

/// A super-resolution stage from `low × low` to `high × high`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SuperResolution {
    pub low: usize,
    pub high: usize,
    pub augmentation: NoiseAugmentation,
}

impl SuperResolution {
    /// Parses `LOW:HIGH` (e.g. `14:28`).
    pub fn parse(text: &str, augmentation: NoiseAugmentation) -> Result<Self> {
        let bad = || {
            Error::train(
                "super-resolution",
                format!("'{text}': expected LOW:HIGH, e.g. 14:28"),
            )
        };
        let (low, high) = text.split_once(':').ok_or_else(bad)?;
        let sr = Self {
            low: low.trim().parse().map_err(|_| bad())?,
            high: high.trim().parse().map_err(|_| bad())?,
            augmentation,
        };
        sr.check_sides()?;
        Ok(sr)
    }

    /// The integer factor `high / low`.
    pub fn factor(&self) -> usize {
        self.high / self.low
    }

    fn check_sides(&self) -> Result<()> {
        if self.low == 0 || self.high <= self.low || !self.high.is_multiple_of(self.low) {
            return Err(Error::train(
                "super-resolution",
                format!(
                    "{}:{}: the high side must be a whole multiple (2 or more) of the low side",
                    self.low, self.high
                ),
            ));
        }
        Ok(())
    }

    /// Refuses settings that cannot train on a schedule of `schedule_len` timesteps.
    pub fn validate(&self, schedule_len: usize) -> Result<()> {
        self.check_sides()?;
        self.augmentation.validate(schedule_len)
    }

    /// The low-resolution images of `n` high-resolution images of `channels` planes: each `factor × factor` block
    /// averaged.
    pub fn low_resolution(&self, high: &[f32], n: usize, channels: usize) -> Result<Vec<f32>> {
        downsample_box(high, n * channels, (self.high, self.high), self.factor())
    }

    /// The extra input channels for `n` low-resolution images `low` (`n × channels × low × low`): each noised to its
    /// level with `noise` (same shape, unit normal), then bilinearly upsampled to `high × high`.
    pub fn condition(
        &self,
        schedule: &NoiseSchedule,
        low: &[f32],
        channels: usize,
        levels: &[u32],
        noise: &[f32],
    ) -> Result<Vec<f32>> {
        let n = levels.len();
        let per_image = channels * self.low * self.low;
        if low.len() != n * per_image || noise.len() != low.len() {
            return Err(Error::train(
                "super-resolution",
                format!(
                    "{} low-resolution values and {} noise values for {n} images of {channels}×{}×{}",
                    low.len(),
                    noise.len(),
                    self.low,
                    self.low
                ),
            ));
        }
        let mut noised = Vec::with_capacity(low.len());
        for (i, &level) in levels.iter().enumerate() {
            let (signal, sigma) = self.augmentation.coefficients(schedule, level as usize)?;
            let range = i * per_image..(i + 1) * per_image;
            noised.extend(
                low[range.clone()]
                    .iter()
                    .zip(&noise[range])
                    .map(|(&z, &e)| (signal * f64::from(z) + sigma * f64::from(e)) as f32),
            );
        }
        upsample(
            &noised,
            n * channels,
            (self.low, self.low),
            (self.high, self.high),
            Interpolation::Bilinear,
        )
    }
}
