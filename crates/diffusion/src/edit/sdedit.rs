//! SDEdit (Meng et al. 2022): image-to-image by noising a guide image part of the way and denoising it back.
//!
//! The forward process `q(x_t | x0)` forgets the details of `x0` first and its coarse layout last, while the reverse
//! process turns any `x_t` into an image the model finds likely. So noising a guide image (a sketch, a photograph, a
//! sample of another model) to an intermediate level and running the sampler from there gives an image that keeps the
//! guide's layout (faithfulness) and has the model's details (realism); the level trades one for the other.
//!
//! The level is chosen as diffusers' image-to-image pipelines choose it (`get_timesteps`): of a run of `N` steps,
//! `strength` S ∈ [0, 1] keeps the last `n = min(⌊N·S⌋, N)`, starting at step `N − n`, and the guide is noised to
//! that step's level with the scheduler's own `add_noise` ([`NoiseLevel::noised`]). Two ends are exact: S = 1
//! starts from pure noise, as plain sampling (diffusers' inpainting pipeline does this for `strength = 1`, its
//! image-to-image pipeline instead adds the guide at the first level, `√ᾱ_T·x0`, which is not quite noise), and
//! `n = 0` takes no step and returns the guide.

use crate::error::{Error, Result};
use crate::sampler::{Condition, Denoiser, NoiseLevel, Sampler, SamplerOptions, Start};
use crate::schedule::NoiseSchedule;
use diffuse_tensor::Tensor;

/// Where an SDEdit run of `steps` steps begins.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum EditStart {
    /// Strength 1 (or close enough that `⌊N·S⌋ = N`): every step, from pure noise.
    Noise,
    /// From step `step`, the guide noised to `level`.
    Step { step: usize, level: NoiseLevel },
    /// No step at all (`⌊N·S⌋ = 0`): the guide is the result.
    Guide,
}

/// The strength, checked to lie in [0, 1].
pub fn check_strength(strength: f64) -> Result<f64> {
    if (0.0..=1.0).contains(&strength) {
        Ok(strength)
    } else {
        Err(Error::sampler(
            "strength",
            format!(
                "{strength} is outside [0, 1] (0 returns the image, 1 samples from pure noise)"
            ),
        ))
    }
}

/// Where a run over the step `levels` of a sampler begins at `strength`.
pub fn edit_start(levels: &[NoiseLevel], strength: f64) -> Result<EditStart> {
    let strength = check_strength(strength)?;
    let n = levels.len();
    let kept = ((n as f64 * strength).floor() as usize).min(n);
    Ok(match kept {
        0 => EditStart::Guide,
        k if k == n => EditStart::Noise,
        k => EditStart::Step {
            step: n - k,
            level: levels[n - k],
        },
    })
}

/// One SDEdit run.
pub struct Sdedit<'a> {
    pub sampler: &'a Sampler,
    pub schedule: &'a NoiseSchedule,
    pub options: &'a SamplerOptions,
    pub strength: f64,
}

impl Sdedit<'_> {
    /// Where the run begins.
    pub fn start(&self) -> Result<EditStart> {
        edit_start(
            &self.sampler.step_levels(self.schedule, self.options)?,
            self.strength,
        )
    }

    /// Edits the guide images `guide` (N, C, H, W, in the model's data space) with `model`: `noise` (unit normal,
    /// the guide's shape) is the noise added to them (or the latents at strength 1).
    pub fn run(
        &self,
        model: &dyn Denoiser,
        guide: &Tensor,
        noise: &Tensor,
        cond: Condition<'_>,
    ) -> Result<Tensor> {
        let run = |start: Start<'_>| {
            self.sampler
                .run(model, self.schedule, self.options, start, cond)
        };
        match self.start()? {
            EditStart::Guide => Ok(guide.clone()),
            EditStart::Noise => {
                if noise.shape() != guide.shape() {
                    return Err(Error::sampler(
                        "noise",
                        format!(
                            "shape {:?} differs from the image's {:?}",
                            noise.shape(),
                            guide.shape()
                        ),
                    ));
                }
                run(Start::Noise(noise))
            }
            EditStart::Step { step, level } => {
                let x = level.noised(guide, noise)?;
                run(Start::State { step, x: &x })
            }
        }
    }
}
