//! `diffuse sample --init-image`: editing images with a trained model (docs/editing.md).
//!
//! - **Image-to-image (SDEdit)**, `--strength S`: each image is noised to the level S selects (diffusers' rule: of N
//!   steps the last ⌊N·S⌋ run) with the sampler's own `add_noise`, and the sampler runs from there; the level reached
//!   is printed (timestep, ᾱ, σ = √((1−ᾱ)/ᾱ), and the state the sampler carries). S = 1 samples from pure noise,
//!   S = 0 returns the image.
//! - **Inpainting (RePaint)**, `--mask PNG`: white pixels (grey level ≥ 128) are filled, black ones kept; the kept
//!   pixels are put back, forward-noised, after every step, with RePaint's resampling jumps
//!   (`--jump-length`, `--jump-n-sample`).
//!
//! Both run any discrete sampler's model: unconditional, or class-conditional with `--class` (and `--guidance`);
//! without `--class` a class-conditional model runs with its null class. A latent model edits the images' latents
//! (the posterior mean, scaled) and decodes the result; RePaint needs a pixel model (its mask is in pixels). Each
//! image is edited `--count` times; the grid shows one row per image, the image (masked: fill region grey) first.

use crate::latent::LatentDecoder;
use crate::vae_codec::read_images;
use clap::Args;
use diffuse_diffusion::edit::{EditStart, RePaint, RePaintRun, Sdedit};
use diffuse_diffusion::sampler::scheduler::Scheduler;
use diffuse_diffusion::sampler::{ClassifierFreeGuidance, Condition, Denoiser, StateSpace};
use diffuse_diffusion::train::ModelDenoiser;
use diffuse_models::Backbone;
use diffuse_tensor::{Device, Tensor};
use std::path::{Path, PathBuf};

#[derive(Args, Debug)]
pub struct EditArgs {
    /// Edit these images instead of sampling from noise: a PNG, a folder of PNGs, or a safetensors tensor
    /// (N, C, H, W) in [−1, 1]. Without --mask: image-to-image (SDEdit) at --strength.  [default: none]
    #[arg(long)]
    init_image: Option<PathBuf>,
    /// How far SDEdit noises the images, in [0, 1]: the run keeps the last ⌊steps·S⌋ steps (1: from pure noise, 0:
    /// the image unchanged).  [default: 0.8]
    #[arg(long)]
    strength: Option<f64>,
    /// Inpaint with RePaint: a PNG of the images' size, white (≥ 128) where to fill, black where to keep.
    /// [default: none]
    #[arg(long)]
    mask: Option<PathBuf>,
    /// RePaint: levels per jump back up.
    #[arg(long, default_value_t = 10)]
    jump_length: usize,
    /// RePaint: passes through each jumped stretch (1: no resampling).
    #[arg(long, default_value_t = 1)]
    jump_n_sample: usize,
}

/// What `--init-image` asks for.
pub enum EditRequest {
    Sdedit {
        images: Tensor,
        strength: f64,
    },
    RePaint {
        images: Tensor,
        known: Tensor,
        settings: RePaint,
    },
}

impl EditRequest {
    /// The images to edit.
    pub fn images(&self) -> &Tensor {
        match self {
            EditRequest::Sdedit { images, .. } | EditRequest::RePaint { images, .. } => images,
        }
    }
}

impl EditArgs {
    /// The edit asked for (`None`: plain sampling), with its files read and checked.
    pub fn request(&self) -> Result<Option<EditRequest>, String> {
        let Some(path) = &self.init_image else {
            for (given, name) in [
                (self.strength.is_some(), "--strength"),
                (self.mask.is_some(), "--mask"),
            ] {
                if given {
                    return Err(format!("{name} edits an image: give it with --init-image"));
                }
            }
            return Ok(None);
        };
        let images = read_images(path, None)?;
        let Some(mask_path) = &self.mask else {
            let strength = self.strength.unwrap_or(0.8);
            diffuse_diffusion::edit::check_strength(strength)
                .map_err(|e| format!("--strength: {e}"))?;
            return Ok(Some(EditRequest::Sdedit { images, strength }));
        };
        if self.strength.is_some() {
            return Err(
                "--strength is SDEdit's; RePaint (--mask) starts from pure noise: leave one out"
                    .into(),
            );
        }
        let known = read_mask(mask_path, images.shape())?;
        Ok(Some(EditRequest::RePaint {
            images,
            known,
            settings: RePaint {
                jump_length: self.jump_length,
                jump_n_sample: self.jump_n_sample,
                eta: 1.0,
            },
        }))
    }
}

/// The mask PNG as the known region (1, 1, H, W): 1 where it is black (keep), 0 where white (fill).
pub fn read_mask(path: &Path, image_shape: &[usize]) -> Result<Tensor, String> {
    let mask = read_images(path, None)?;
    let (m, x) = (mask.shape(), image_shape);
    if m[0] != 1 || m[2..] != x[2..] {
        return Err(format!(
            "--mask {}: {}×{} pixels{}, but the images are {}×{}: give one mask of the images' size",
            path.display(),
            m[2],
            m[3],
            if m[0] == 1 { String::new() } else { format!(" in {} images", m[0]) },
            x[2],
            x[3]
        ));
    }
    // Grey level ≥ 128 (≥ 0.0039 in [−1, 1]) is white: fill. The first channel of a colour mask decides.
    let first = mask.narrow(1, 0, 1).map_err(|e| e.to_string())?;
    let known: Vec<f32> = first
        .to_vec()
        .map_err(|e| e.to_string())?
        .iter()
        .map(|&v| if v >= 0.0 { 0.0 } else { 1.0 })
        .collect();
    Tensor::from_vec(known, &[1, 1, x[2], x[3]], Device::Cpu).map_err(|e| e.to_string())
}

/// The images checked against what the model (or its autoencoder) reads.
fn check_images(
    images: &Tensor,
    model: &Backbone,
    decoder: Option<&LatentDecoder>,
) -> Result<(), String> {
    let (c, h, w, what) = match decoder {
        Some(decoder) => {
            let vae = decoder.vae.config();
            let (h, w) = vae.sample_size.height_width();
            (vae.in_channels, h, w, "the autoencoder")
        }
        None => {
            let config = model.config();
            let (h, w) = config.sample_size().unwrap_or((28, 28));
            (config.in_channels(), h, w, "the model")
        }
    };
    let s = images.shape();
    if s[1] != c {
        return Err(format!(
            "--init-image: the images have {} channel{} but {what} takes {c}: give {} images",
            s[1],
            if s[1] == 1 { "" } else { "s" },
            if c == 1 { "greyscale" } else { "colour (RGB)" }
        ));
    }
    if s[2..] != [h, w] {
        return Err(format!(
            "--init-image: the images are {}×{} but {what} takes {h}×{w}",
            s[2], s[3]
        ));
    }
    Ok(())
}

/// Each of the `n` rows of `x` repeated `times` times in a row.
fn repeat_rows(x: &Tensor, times: usize) -> Result<Tensor, String> {
    let n = x.shape()[0];
    let mut parts = Vec::with_capacity(n * times);
    for i in 0..n {
        let row = x.narrow(0, i, 1).map_err(|e| e.to_string())?;
        parts.extend(std::iter::repeat_n(row, times));
    }
    let refs: Vec<&Tensor> = parts.iter().collect();
    Tensor::concat(&refs, 0)
        .and_then(|t| t.contiguous())
        .map_err(|e| e.to_string())
}

/// An edit run's inputs besides the request.
pub struct EditRun<'a> {
    pub model: &'a Backbone,
    pub scheduler: &'a Scheduler,
    pub decoder: Option<&'a LatentDecoder>,
    /// Edits per image.
    pub count: usize,
    /// The class of each image's edits (`None`: an unconditional model).
    pub classes: Option<Vec<u32>>,
    pub null_class: Option<u32>,
    /// Classifier-free guidance scale around the null class.
    pub guidance: f64,
    pub seed: u64,
    /// Print where the run starts (SDEdit) or its model calls (RePaint).
    pub report: bool,
}

/// The result of an edit: the edited images (N·count, C, H, W) and the images shown beside them (N, C, H, W).
pub struct Edited {
    pub images: Tensor,
    pub shown: Tensor,
}

/// The class of every edit of `images` images: `--class` for all, or the null class (unconditional) of a
/// class-conditional model without it.
pub fn edit_classes(
    images: usize,
    class: Option<u32>,
    null_class: Option<u32>,
    guidance: f64,
) -> Result<Option<Vec<u32>>, String> {
    if guidance != 1.0 && class.is_none() {
        return Err("--guidance other than 1 needs --class".into());
    }
    match (null_class, class) {
        (Some(null), Some(c)) if c <= null => Ok(Some(vec![c; images])),
        (Some(null), Some(c)) => Err(format!(
            "--class {c} is out of range: the model knows classes 0..{null} (and {null} = unconditional)"
        )),
        (Some(null), None) => Ok(Some(vec![null; images])),
        (None, Some(_)) => Err("--class needs a class-conditional model".into()),
        (None, None) => Ok(None),
    }
}

impl EditRun<'_> {
    pub fn run(&self, request: &EditRequest) -> Result<Edited, String> {
        let images = request.images();
        check_images(images, self.model, self.decoder)?;
        if matches!(request, EditRequest::RePaint { .. }) && self.decoder.is_some() {
            return Err(
                "--mask: RePaint runs on pixel models (the mask is in pixels, a latent model denoises latents)"
                    .into(),
            );
        }
        let device = self.model.device();
        let guides = repeat_rows(images, self.count)?;
        let data = match self.decoder {
            Some(decoder) => encode(decoder, &guides)?,
            None => guides.to_device(device).map_err(|e| e.to_string())?,
        };
        let classes: Option<Vec<u32>> = self.classes.as_ref().map(|c| {
            c.iter()
                .flat_map(|&c| std::iter::repeat_n(c, self.count))
                .collect()
        });
        let plain = ModelDenoiser {
            model: self.model,
            prediction: self.scheduler.prediction(),
        };
        let guided = ClassifierFreeGuidance {
            model: &plain,
            scale: self.guidance,
            null_class: self.null_class,
            null_context: None,
        };
        let denoiser: &dyn Denoiser = if self.guidance != 1.0 {
            &guided
        } else {
            &plain
        };
        let cond = Condition::class_opt(classes.as_deref());
        let noise = Tensor::randn(data.shape(), self.seed, 0, device).map_err(|e| e.to_string())?;
        let err = |e: diffuse_diffusion::Error| e.to_string();
        let (out, shown) = match request {
            EditRequest::Sdedit { strength, .. } => {
                let edit = Sdedit {
                    sampler: &self.scheduler.sampler,
                    schedule: &self.scheduler.schedule,
                    options: &self.scheduler.options,
                    strength: *strength,
                };
                if self.report {
                    report_start(&edit)?;
                }
                (
                    edit.run(denoiser, &data, &noise, cond).map_err(err)?,
                    images.clone(),
                )
            }
            EditRequest::RePaint {
                known, settings, ..
            } => {
                let run = RePaintRun {
                    schedule: &self.scheduler.schedule,
                    options: &self.scheduler.options,
                    settings: *settings,
                };
                if self.report {
                    eprintln!(
                        "RePaint: {} steps, jumps of {} levels, {} passes each: {} model calls",
                        self.scheduler.options.steps,
                        settings.jump_length,
                        settings.jump_n_sample,
                        run.model_calls().map_err(err)?
                    );
                }
                let known = known.to_device(device).map_err(|e| e.to_string())?;
                let out = run
                    .run(denoiser, &data, &known, &noise, cond)
                    .map_err(err)?;
                // The fill region shown grey (0).
                let shown = images
                    .mul(
                        &known
                            .to_device(images.device())
                            .map_err(|e| e.to_string())?,
                    )
                    .map_err(|e| e.to_string())?;
                (out, shown)
            }
        };
        let images = match self.decoder {
            Some(decoder) => decoder.decode(&out)?,
            None => out,
        };
        Ok(Edited { images, shown })
    }
}

/// The guides' scaled latents (the posterior means).
fn encode(decoder: &LatentDecoder, images: &Tensor) -> Result<Tensor, String> {
    let vae = &decoder.vae;
    let x = images.to_device(vae.device()).map_err(|e| e.to_string())?;
    let (mean, _logvar) = vae.encode_tensor(&x).map_err(|e| e.to_string())?;
    vae.scale_latents(&mean).map_err(|e| e.to_string())
}

/// Prints where an SDEdit run begins.
pub fn report_start(edit: &Sdedit<'_>) -> Result<(), String> {
    let steps = edit
        .sampler
        .step_levels(edit.schedule, edit.options)
        .map_err(|e| e.to_string())?
        .len();
    let strength = edit.strength;
    match edit.start().map_err(|e| e.to_string())? {
        EditStart::Guide => eprintln!(
            "SDEdit: strength {strength} keeps none of the {steps} steps: the images are returned unchanged"
        ),
        EditStart::Noise => eprintln!(
            "SDEdit: strength {strength} keeps all {steps} steps: sampling from pure noise (the images are not used)"
        ),
        EditStart::Step { step, level } => {
            let state = match level.space {
                StateSpace::VariancePreserving => "x_t = √ᾱ·x0 + √(1−ᾱ)·ε",
                StateSpace::Sigma => "x = x0 + σ·ε",
            };
            eprintln!(
                "SDEdit: strength {strength} keeps {} of {steps} steps, from step {step}: timestep {}, ᾱ = {:.6}, \
                 σ = {:.6} ({state})",
                steps - step,
                level.timestep,
                level.alpha_bar,
                level.sigma
            );
        }
    }
    Ok(())
}
