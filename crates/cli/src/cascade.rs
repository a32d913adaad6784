//! Sampling image-conditioned runs (docs/editing.md): the super-resolution stage of a cascade (`diffuse sample
//! --upscale SR_RUN` after a base model) and the trained inpainting network (`diffuse sample --init-image --mask` on
//! an inpainting run), and the sample grids of their training runs.

use crate::grid::Grid;
use crate::sample::{open_folder, Folder};
use crate::sampling::SamplerArgs;
use crate::score::{AnySampler, ScoreArgs};
use diffuse_diffusion::data::Dataset;
use diffuse_diffusion::image_condition::{
    downsample_box, ImageCondition, ImageConditioned, SuperResolution,
};
use diffuse_diffusion::pipeline::Weights;
use diffuse_diffusion::sampler::scheduler::Scheduler;
use diffuse_diffusion::sampler::{ClassifierFreeGuidance, Condition, Denoiser};
use diffuse_diffusion::schedule::NoiseSchedule;
use diffuse_diffusion::train::{read_trainer_state, ModelDenoiser};
use diffuse_models::Backbone;
use diffuse_tensor::{Device, Tensor};
use std::path::{Path, PathBuf};

/// The Philox key of the augmentation noise of `--upscale` ("srnoise"), apart from the samplers' streams.
const UPSCALE_NOISE_KEY: u64 = 0x73_726E_6F69_7365;

/// The Philox key of the stage's own sampler under `--upscale` ("srstage"): apart from the base model's (the run's
/// seed) and from the augmentation noise, so that the stage's starting noise is independent of both.
const UPSCALE_STAGE_KEY: u64 = 0x73_7273_7461_6765;

/// The sampler seed of a cascade's stage for the run's `seed`.
fn stage_seed(seed: u64) -> u64 {
    seed ^ UPSCALE_STAGE_KEY
}

/// The image condition a run's checkpoint was trained with (`None` for a plain denoiser, or a folder that is no
/// training run).
pub fn image_condition_of(folder: &Folder) -> Result<Option<ImageCondition>, String> {
    match &folder.pipeline.checkpoint {
        Some(dir) if dir.join("trainer_state.json").is_file() => Ok(read_trainer_state(dir)
            .map_err(|e| e.to_string())?
            .config
            .image_condition),
        _ => Ok(None),
    }
}

/// What an image-conditioned sampling run draws.
pub struct ConditionedRequest<'a> {
    pub scheduler: &'a Scheduler,
    /// The extra input channels `[n, E, H, W]`.
    pub extra: &'a Tensor,
    /// The class labels the condition sets (a super-resolution stage's augmentation level), for every sample.
    pub own_labels: Option<Vec<u32>>,
    /// The class of each sample of a class-conditional network.
    pub classes: Option<&'a [u32]>,
    pub guidance: f64,
    pub null_class: Option<u32>,
}

/// Draws one sample per row of `request.extra` from the image-conditioned `model`.
pub fn sample_conditioned(
    model: &Backbone,
    request: &ConditionedRequest,
) -> Result<Tensor, String> {
    let config = model.config();
    let extra = request.extra;
    let (h, w) = (extra.shape()[2], extra.shape()[3]);
    let shape = [extra.shape()[0], config.out_channels(), h, w];
    let scheduler = request.scheduler;
    let plain = ModelDenoiser {
        model,
        prediction: scheduler.prediction(),
    };
    let conditioned = ImageConditioned {
        model: &plain,
        extra: extra.to_device(model.device()).map_err(|e| e.to_string())?,
        class: request.own_labels.clone(),
    };
    let guided = ClassifierFreeGuidance {
        model: &conditioned,
        scale: request.guidance,
        null_class: request.null_class,
        null_context: None,
    };
    let denoiser: &dyn Denoiser = if request.guidance != 1.0 {
        &guided
    } else {
        &conditioned
    };
    scheduler
        .sampler
        .sample(
            denoiser,
            &scheduler.schedule,
            &scheduler.options,
            &shape,
            model.device(),
            Condition::class_opt(request.classes),
        )
        .map_err(|e| e.to_string())
}

/// The sampler options of a cascade's stage: the base model's, with `--sr-steps` (when given) as its step count, so
/// that the cheap base and the full-size stage can be given different shares of a sampling budget.
pub fn stage_sampling(base: &SamplerArgs, sr_steps: Option<usize>) -> SamplerArgs {
    let mut stage = base.clone();
    if sr_steps.is_some() {
        stage.steps = sr_steps;
    }
    stage
}

/// Refuses `--sr-steps` without `--upscale`.
pub fn check_sr_steps(upscale: Option<&Path>, sr_steps: Option<usize>) -> Result<(), String> {
    match (upscale, sr_steps) {
        (None, Some(_)) => {
            Err("--sr-steps sets the steps of the --upscale stage; give --upscale SR_RUN".into())
        }
        _ => Ok(()),
    }
}

/// The super-resolution stage of `folder` (a `diffuse train --super-resolution` run), or why it is not one.
pub fn super_resolution_of(folder: &Folder, dir: &Path) -> Result<SuperResolution, String> {
    match image_condition_of(folder)? {
        Some(ImageCondition::SuperResolution(sr)) => Ok(sr),
        _ => Err(format!(
            "--upscale {}: not a super-resolution stage (a run of diffuse train --super-resolution LOW:HIGH)",
            dir.display()
        )),
    }
}

/// The low-resolution input of a super-resolution stage from a base model's `images`: as they are at the stage's
/// low side, box-averaged from its high side (a base model at the final resolution, downsampled), else an error.
pub fn low_resolution_input(
    images: &Tensor,
    sr: &SuperResolution,
    channels: usize,
    stage: &Path,
) -> Result<Tensor, String> {
    let s = images.shape().to_vec();
    if s[1] != channels {
        return Err(format!(
            "--upscale {}: channels mismatch: the base model's samples have {} channels, the super-resolution stage \
             takes {channels}",
            stage.display(),
            s[1]
        ));
    }
    let cpu = images.to_device(Device::Cpu).map_err(|e| e.to_string())?;
    match (s[2], s[3]) {
        (h, w) if (h, w) == (sr.low, sr.low) => Ok(cpu),
        (h, w) if (h, w) == (sr.high, sr.high) => {
            eprintln!(
                "upscale: the base samples are {h}×{w}: box-averaged to {}×{} first",
                sr.low, sr.low
            );
            let low = downsample_box(
                &cpu.to_vec().map_err(|e| e.to_string())?,
                s[0] * s[1],
                (h, w),
                sr.factor(),
            )
            .map_err(|e| e.to_string())?;
            Tensor::from_vec(low, &[s[0], s[1], sr.low, sr.low], Device::Cpu)
                .map_err(|e| e.to_string())
        }
        (h, w) => Err(format!(
            "--upscale {}: the stage upsamples {low}×{low} to {high}×{high} (factor {}), but the base model samples \
             {h}×{w}: give a base model of {low}×{low} (or of {high}×{high}, whose samples are downsampled)",
            stage.display(),
            sr.factor(),
            low = sr.low,
            high = sr.high
        )),
    }
}

/// The stage's extra channels for `low` (`[n, C, low, low]`) at augmentation level `level`, with the augmentation
/// noise of `seed`.
pub fn upscale_condition(
    sr: &SuperResolution,
    scheduler: &Scheduler,
    low: &Tensor,
    level: u32,
    seed: u64,
) -> Result<Tensor, String> {
    sr.augmentation
        .check_level(level as usize)
        .map_err(|e| format!("--sr-level: {e}"))?;
    let s = low.shape().to_vec();
    let noise = Tensor::randn(&s, seed ^ UPSCALE_NOISE_KEY, 0, Device::Cpu)
        .and_then(|t| t.to_vec())
        .map_err(|e| e.to_string())?;
    let values = sr
        .condition(
            &scheduler.schedule,
            &low.to_vec().map_err(|e| e.to_string())?,
            s[1],
            &vec![level; s[0]],
            &noise,
        )
        .map_err(|e| e.to_string())?;
    Tensor::from_vec(values, &[s[0], s[1], sr.high, sr.high], Device::Cpu)
        .map_err(|e| e.to_string())
}

/// Upsamples a base model's `images` with the super-resolution stage in `folder` (at `stage`), sampled with
/// `sampling`'s sampler on the stage's scheduler, at augmentation level `level`.
pub fn upscale(
    images: &Tensor,
    folder: &Folder,
    stage: &Path,
    sampling: &SamplerArgs,
    level: u32,
    seed: u64,
    device: Device,
) -> Result<Tensor, String> {
    let sr = super_resolution_of(folder, stage)?;
    let (model, _store) = Backbone::load_diffusers(&folder.pipeline.denoiser, device)
        .map_err(|e| format!("{}: {e}", folder.pipeline.denoiser.display()))?;
    let (sampler, _) = folder.sampler(&model.config(), sampling, &ScoreArgs::default())?;
    let AnySampler::Discrete(scheduler) = sampler else {
        return Err(format!(
            "--upscale runs a discrete-time sampler on the stage; --sampler {} is not one",
            sampler.label()
        ));
    };
    let mut scheduler = scheduler.as_ref().clone();
    scheduler.options.seed = stage_seed(seed);
    let low = low_resolution_input(images, &sr, model.config().out_channels(), stage)?;
    let extra = upscale_condition(&sr, &scheduler, &low, level, seed)?;
    let n = extra.shape()[0];
    sample_conditioned(
        &model,
        &ConditionedRequest {
            scheduler: &scheduler,
            extra: &extra,
            own_labels: Some(vec![level; n]),
            classes: None,
            guidance: 1.0,
            null_class: None,
        },
    )
}

/// A super-resolution stage loaded once and applied to batch after batch of a base model's samples (`diffuse eval
/// --upscale`).
pub struct Upscaler {
    folder: Folder,
    stage: PathBuf,
    sampling: SamplerArgs,
    level: u32,
    device: Device,
}

impl Upscaler {
    /// The stage at `stage`, sampled with `sampling` at augmentation level `level`.
    pub fn load(
        stage: &Path,
        sampling: &SamplerArgs,
        level: u32,
        device: Device,
    ) -> Result<Self, String> {
        let folder = open_folder(stage, Weights::Ema)?;
        let sr = super_resolution_of(&folder, stage)?;
        sr.augmentation
            .check_level(level as usize)
            .map_err(|e| format!("--sr-level: {e}"))?;
        Ok(Self {
            folder,
            stage: stage.to_path_buf(),
            sampling: sampling.clone(),
            level,
            device,
        })
    }

    /// The side of the images it makes.
    pub fn high(&self) -> Result<usize, String> {
        Ok(super_resolution_of(&self.folder, &self.stage)?.high)
    }

    /// `images` upsampled, the stage's noise drawn from `seed`.
    pub fn apply(&self, images: &Tensor, seed: u64) -> Result<Tensor, String> {
        upscale(
            images,
            &self.folder,
            &self.stage,
            &self.sampling,
            self.level,
            seed,
            self.device,
        )
    }
}

/// The extra channels `[mask, image·(1 − mask)]` of a trained inpainting network for `images` (`[n, C, H, W]`) and
/// the known region `known` (`[1, 1, H, W]`, 1 = keep).
pub fn inpainting_input(images: &Tensor, known: &Tensor) -> Result<Tensor, String> {
    let s = images.shape().to_vec();
    let hw = s[2] * s[3];
    let known = known.to_vec().map_err(|e| e.to_string())?;
    let masks: Vec<f32> = (0..s[0])
        .flat_map(|_| known.iter().map(|&k| 1.0 - k))
        .collect();
    let values = diffuse_diffusion::image_condition::inpainting_channels(
        &images.to_vec().map_err(|e| e.to_string())?,
        &masks,
        s[1],
        hw,
    );
    Tensor::from_vec(values, &[s[0], 1 + s[1], s[2], s[3]], Device::Cpu).map_err(|e| e.to_string())
}

/// The sample grid of an image-conditioned training run, written to `path`: for the first `columns` training
/// images, a row of what the network is given (the upsampled low-resolution image at augmentation level 0, or the
/// masked image), a row of samples, and a row of the originals.
pub fn conditioned_grid(
    model: &Backbone,
    condition: ImageCondition,
    scheduler: &Scheduler,
    data: &Dataset,
    schedule: &NoiseSchedule,
    columns: usize,
    path: &Path,
) -> Result<(), String> {
    let n = columns.min(data.len());
    let indices: Vec<usize> = (0..n).collect();
    let (pixels, labels) = data.batch(&indices, None).map_err(|e| e.to_string())?;
    let (c, h, w) = (data.channels, data.height, data.width);
    // Draw 0 is level 0 (the clean low-resolution image); draws 0..n are n different masks.
    let draws: Vec<u64> = match condition {
        ImageCondition::SuperResolution(_) => vec![0; n],
        ImageCondition::Inpainting(_) => (0..n as u64).collect(),
    };
    let input = condition
        .training_input(schedule, &pixels, c, (h, w), &draws, |len| {
            Ok(vec![0.0; len])
        })
        .map_err(|e| e.to_string())?;
    let e = condition.extra_channels(c);
    let extra =
        Tensor::from_vec(input.channels, &[n, e, h, w], Device::Cpu).map_err(|e| e.to_string())?;
    let null_class = model.config().num_class_embeds().map(|k| k as u32 - 1);
    let classes = match (&input.labels, null_class) {
        (None, Some(_)) if labels.len() == n => Some(labels),
        _ => None,
    };
    let samples = sample_conditioned(
        model,
        &ConditionedRequest {
            scheduler,
            extra: &extra,
            own_labels: input.labels.clone(),
            classes: classes.as_deref(),
            guidance: 1.0,
            null_class,
        },
    )?
    .to_vec()
    .map_err(|e| e.to_string())?;
    // What the network sees of the image: the last C extra channels (the upsampled image, or the masked image).
    let given = extra
        .narrow(1, e - c, c)
        .and_then(|t| t.contiguous())
        .and_then(|t| t.to_vec())
        .map_err(|e| e.to_string())?;
    let pixels: Vec<f32> = [given, samples, pixels].concat();
    Grid {
        pixels: &pixels,
        count: 3 * n,
        channels: c,
        height: h,
        width: w,
        columns: n,
    }
    .save(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use diffuse_diffusion::image_condition::NoiseAugmentation;
    use diffuse_diffusion::schedule::SchedulerConfig;

    fn stage() -> SuperResolution {
        SuperResolution::parse("2:4", NoiseAugmentation::default()).unwrap()
    }

    #[test]
    fn the_low_resolution_input_is_the_base_samples_or_their_box_average_and_refuses_other_sizes() {
        let sr = stage();
        let dir = Path::new("sr");
        let low = Tensor::from_vec(vec![0.5, -0.5, 0.25, 1.0], &[1, 1, 2, 2], Device::Cpu).unwrap();
        let got = low_resolution_input(&low, &sr, 1, dir).unwrap();
        assert_eq!(got.to_vec().unwrap(), low.to_vec().unwrap());
        // 4×4 samples: each 2×2 block's mean.
        let high: Vec<f32> = (0..16).map(|i| i as f32).collect();
        let high = Tensor::from_vec(high, &[1, 1, 4, 4], Device::Cpu).unwrap();
        let got = low_resolution_input(&high, &sr, 1, dir).unwrap();
        assert_eq!(got.to_vec().unwrap(), vec![2.5, 4.5, 10.5, 12.5]);
        let odd = Tensor::from_vec(vec![0.0; 9], &[1, 1, 3, 3], Device::Cpu).unwrap();
        let err = low_resolution_input(&odd, &sr, 1, dir).unwrap_err();
        assert!(
            err.contains("upsamples 2×2 to 4×4 (factor 2)") && err.contains("3×3"),
            "{err}"
        );
        let colour = Tensor::from_vec(vec![0.0; 12], &[1, 3, 2, 2], Device::Cpu).unwrap();
        let err = low_resolution_input(&colour, &sr, 1, dir).unwrap_err();
        assert!(
            err.contains("channels mismatch") && err.contains("have 3 channels"),
            "{err}"
        );
    }

    #[test]
    fn the_augmentation_noise_and_the_stage_and_base_starting_noises_are_independent_streams() {
        // Level 10 of 11 on a zero image: the condition is σ·ε upsampled, and pixel (0, 0) of a ×2 bilinear
        // upsampling is input pixel (0, 0) exactly, so extra[0] = σ·ε[0].
        let sr = stage();
        let scheduler = Scheduler::from_config(&SchedulerConfig::default()).unwrap();
        let (_, sigma) = sr
            .augmentation
            .coefficients(&scheduler.schedule, 10)
            .unwrap();
        let low = Tensor::from_vec(vec![0.0; 4], &[1, 1, 2, 2], Device::Cpu).unwrap();
        let seed = 7;
        let extra = upscale_condition(&sr, &scheduler, &low, 10, seed).unwrap();
        let augmentation = f64::from(extra.to_vec().unwrap()[0]) / sigma;
        let first = |key: u64| -> f64 {
            f64::from(
                Tensor::randn(&[1, 1, 4, 4], key, 0, Device::Cpu)
                    .unwrap()
                    .to_vec()
                    .unwrap()[0],
            )
        };
        assert!((augmentation - first(seed ^ UPSCALE_NOISE_KEY)).abs() < 1e-5);
        let (stage, base) = (first(stage_seed(seed)), first(seed));
        for (a, b) in [(augmentation, stage), (augmentation, base), (stage, base)] {
            assert!((a - b).abs() > 1e-3, "{a} and {b}: one stream drawn twice");
        }
    }

    #[test]
    fn the_inpainting_input_is_the_fill_mask_then_the_image_with_the_fill_region_blanked() {
        let images =
            Tensor::from_vec(vec![1.0, 2.0, 3.0, 4.0], &[1, 1, 2, 2], Device::Cpu).unwrap();
        let known = Tensor::from_vec(vec![1.0, 0.0, 0.0, 1.0], &[1, 1, 2, 2], Device::Cpu).unwrap();
        let got = inpainting_input(&images, &known).unwrap();
        assert_eq!(got.shape(), &[1, 2, 2, 2]);
        assert_eq!(
            got.to_vec().unwrap(),
            vec![0.0, 1.0, 1.0, 0.0, 1.0, 0.0, 0.0, 4.0]
        );
    }
}
