//! `diffuse sample`: draws images from a denoising network — a diffusers pipeline folder, a model folder (with its
//! sibling `scheduler/`), a training run or one of its `step-N` checkpoints — with the sampler its scheduler config
//! names or another (see [`crate::sampling`]), optionally with classifier-free guidance, and writes a grid and on
//! request each image, the raw tensor (exactly as the sampler returns it) and the trajectory of the first sample.
//!
//! `--init-noise` takes the unit normal latents a diffusers pipeline takes (the sampler scales them by its initial
//! noise level, as `init_noise_sigma`), `--noise` the fresh noise of every step of a stochastic sampler. Everything is
//! checked before anything is written.

use crate::cascade::{
    check_sr_steps, image_condition_of, inpainting_input, sample_conditioned, stage_sampling,
    upscale, ConditionedRequest,
};
use crate::consistency::{self, ConsistencyRequest, ConsistencySampler};
use crate::device::DeviceArgs;
use crate::edit::{edit_classes, EditArgs, EditRequest, EditRun};
use crate::grid::Grid;
use crate::latent::{check_decodes, decoder_for};
use crate::numbers::finite_f64;
use crate::prompt::{read_prompts, save_prompt_grid, PromptContexts, TextEncoder};
use crate::sampling::{draw_with, GridRequest, SamplerArgs, DEFAULT_STEPS};
use crate::score::{
    any_sampler, refuse_discrete_options, AnySampler, ScoreArgs, ScoreRequest, ScoreView,
};
use clap::Args;
use diffuse_diffusion::distill::SamplingInfo;
use diffuse_diffusion::image_condition::ImageCondition;
use diffuse_diffusion::pipeline::{Pipeline, Weights};
use diffuse_diffusion::sampler::scheduler::Scheduler;
use diffuse_diffusion::sampler::{Condition, Denoiser, Prediction};
use diffuse_diffusion::schedule::SchedulerConfig;
use diffuse_models::{Backbone, BackboneConfig};
use diffuse_tensor::{Device, Tensor};
use indicatif::{ProgressBar, ProgressStyle};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use std::cell::RefCell;
use std::path::{Path, PathBuf};

#[derive(Args, Debug)]
pub struct SampleArgs {
    /// A diffusers pipeline folder (model_index.json), a model folder, a training run (its latest checkpoint) or a
    /// step-N checkpoint.
    #[arg(long)]
    checkpoint: PathBuf,
    /// Use the EMA weights of a checkpoint (false: the raw weights).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    ema: bool,
    #[command(flatten)]
    sampling: SamplerArgs,
    #[command(flatten)]
    score: ScoreArgs,
    /// Classifier-free guidance scale (1: plain conditional; needs a class-conditional model otherwise; with
    /// prompts, as diffusers, only a scale above 1 guides).
    #[arg(long, value_parser = finite_f64, default_value_t = 1.0)]
    guidance: f64,
    /// A prompt for a text-to-image model (a StableDiffusionPipeline folder); repeat for several, each a row of
    /// --count samples.  [default: none]
    #[arg(long)]
    prompt: Vec<String>,
    /// A file of prompts, one per line, after any --prompt.  [default: none]
    #[arg(long)]
    prompts: Option<PathBuf>,
    /// What guidance steers away from (the unconditional context).  [default: the empty prompt]
    #[arg(long)]
    negative_prompt: Option<String>,
    #[command(flatten)]
    device: DeviceArgs,
    /// Draw only this class.  [default: one row per class of a class-conditional model]
    #[arg(long)]
    class: Option<u32>,
    /// Seed of the starting noise and of the stochastic samplers' noise.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Samples per class or prompt (or in all, for an unconditional model or with --class).
    #[arg(long, default_value_t = 8)]
    count: usize,
    /// The grid PNG (values clamped to [−1, 1] for display).
    #[arg(long, default_value = "grid.png")]
    out: PathBuf,
    /// Also write every sample as DIR/sample-NNNN.png.  [default: none]
    #[arg(long)]
    out_dir: Option<PathBuf>,
    /// Also write the samples (N, C, H, W) exactly as the sampler returns them, unclipped unless the scheduler clips
    /// (a latent model's: decoded into images), as the tensor "samples" of a safetensors file.  [default: none]
    #[arg(long)]
    out_tensor: Option<PathBuf>,
    /// Start from these unit normal latents (a safetensors file with one f32 tensor of the samples' shape, as a
    /// diffusers pipeline's `latents`).  [default: the seed's]
    #[arg(long)]
    init_noise: Option<PathBuf>,
    /// The fresh noise of a stochastic sampler's steps (a safetensors file with one f32 tensor of shape
    /// [steps, N, C, H, W], slice k for step k).  [default: the seed's]
    #[arg(long)]
    noise: Option<PathBuf>,
    /// Also write the first sample's x_t at every model call, left to right, ending with the result.  [default: none]
    #[arg(long)]
    trajectory: Option<PathBuf>,
    #[command(flatten)]
    edit: EditArgs,
    /// Cascade: upsample the samples with this super-resolution stage (a run of diffuse train --super-resolution
    /// LOW:HIGH), sampled with the same --sampler and --steps (or --sr-steps) on its own scheduler. The base model samples LOW×LOW,
    /// or HIGH×HIGH (box-averaged to LOW×LOW first).  [default: none]
    #[arg(long, value_name = "SR_RUN")]
    upscale: Option<PathBuf>,
    /// The noise-conditioning augmentation level of --upscale's low-resolution input (0: the base samples as they
    /// are; higher: noised to the stage's level, hiding the base model's flaws at the cost of faithfulness).
    #[arg(long, default_value_t = 1)]
    sr_level: u32,
    /// Denoising steps of the --upscale stage.  [default: --steps]
    #[arg(long)]
    sr_steps: Option<usize>,
}

/// A folder opened for sampling: where its network is, and what its scheduler config says.
pub(crate) struct Folder {
    pub pipeline: Pipeline,
    /// The scheduler config, typed: the discrete scheduler's training schedule, or a score-SDE config.
    pub config: SchedulerConfig,
    /// The discrete-time scheduler the config describes (`None` for a score-SDE config, which the score samplers
    /// run).
    pub scheduler: Option<Scheduler>,
    /// How a distilled student is sampled (its sampler and step count), when the folder is one.
    pub distilled: Option<SamplingInfo>,
}

impl Folder {
    /// The sampler `sampling` and `score` choose for this folder's network `model`, and the model seen as a score
    /// model (or why it is not one).
    pub fn sampler(
        &self,
        model: &BackboneConfig,
        sampling: &SamplerArgs,
        score: &ScoreArgs,
    ) -> Result<(AnySampler, Result<ScoreView, String>), String> {
        let view = ScoreView::of_checkpoint(model, &self.config);
        let distilled = self.distilled.as_ref();
        let name = sampling.sampler.as_deref().or(distilled
            .map(|info| info.sampler.as_str())
            .filter(|&s| s == consistency::NAME));
        if name == Some(consistency::NAME) {
            let Some(scheduler) = &self.scheduler else {
                return Err(format!(
                    "--sampler {} maps noise levels to a discrete schedule's timesteps, and this is a score-SDE                      model",
                    consistency::NAME
                ));
            };
            // The folder's own scheduler with --clip and the like: its schedule, prediction and clipping.
            let base = SamplerArgs {
                sampler: None,
                ..sampling.clone()
            };
            let sampler = ConsistencySampler::new(
                &base.resolve(scheduler)?,
                sampling.steps,
                sampling.sigmas.as_deref(),
            )?;
            return Ok((AnySampler::Consistency(Box::new(sampler)), view));
        }
        if sampling.sigmas.is_some() {
            return Err(format!(
                "--sigmas sets the noise levels of --sampler {}",
                consistency::NAME
            ));
        }
        let mut sampling = sampling.clone();
        // A progressive student learned one DDIM step with the noise of the clipped x̂0; other samplers take none.
        let ddim = matches!(sampling.sampler.as_deref(), None | Some("ddim"));
        if ddim && distilled.is_some_and(|info| info.clipped_model_output) {
            sampling.clipped_eps = true;
        }
        let steps = sampling
            .steps
            .or(distilled.and_then(|info| info.steps))
            .unwrap_or(DEFAULT_STEPS);
        sampling.steps = Some(steps);
        let sampler = any_sampler(
            sampling.sampler.as_deref(),
            steps,
            score,
            self.scheduler.is_none(),
            |_| match &self.scheduler {
                Some(base) => sampling.resolve(base),
                None => Err("a score-SDE model has no discrete-time scheduler".into()),
            },
        )?;
        if let AnySampler::Score(s) = &sampler {
            refuse_discrete_options(s.name, &sampling.discrete_options())?;
        }
        Ok((sampler, view))
    }
}

/// The folder `dir` and the scheduler its config describes.
pub(crate) fn open_folder(dir: &Path, weights: Weights) -> Result<Folder, String> {
    let pipeline = Pipeline::open(dir, weights).map_err(|e| e.to_string())?;
    let (config, scheduler) = match pipeline.score_sde_config().map_err(|e| e.to_string())? {
        Some(config) => (config, None),
        None => {
            let scheduler = pipeline.scheduler().map_err(|e| e.to_string())?;
            (scheduler.schedule_config.clone(), Some(scheduler))
        }
    };
    let distilled = match &pipeline.checkpoint {
        Some(dir) => SamplingInfo::read(dir).map_err(|e| e.to_string())?,
        None => None,
    };
    Ok(Folder {
        pipeline,
        config,
        scheduler,
        distilled,
    })
}

fn read_tensor(path: &Path) -> Result<Tensor, String> {
    let err = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    let bytes = std::fs::read(path).map_err(|e| err(&e))?;
    let file = SafeTensors::deserialize(&bytes).map_err(|e| err(&e))?;
    let names = file.names();
    let [name] = names.as_slice() else {
        return Err(err(&format!(
            "holds {} tensors; expected exactly one",
            names.len()
        )));
    };
    let view = file.tensor(name).map_err(|e| err(&e))?;
    if view.dtype() != Dtype::F32 {
        return Err(err(&format!(
            "'{name}' is {:?}; expected F32",
            view.dtype()
        )));
    }
    let data = view
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    Tensor::from_vec(data, view.shape(), Device::Cpu).map_err(|e| e.to_string())
}

fn write_tensor(path: &Path, name: &str, t: &Tensor) -> Result<(), String> {
    let bytes: Vec<u8> = t
        .to_vec()
        .map_err(|e| e.to_string())?
        .iter()
        .flat_map(|x| x.to_le_bytes())
        .collect();
    let view =
        TensorView::new(Dtype::F32, t.shape().to_vec(), &bytes).map_err(|e| e.to_string())?;
    let encoded = safetensors::serialize([(name, view)], &None).map_err(|e| e.to_string())?;
    crate::files::write_atomically(path, &encoded).map_err(|e| format!("{}: {e}", path.display()))
}

/// Records the first sample of every `x_t` the sampler passes to the model.
/// Wraps the denoiser the sampler calls: advances the progress bar once per model call and, for `--trajectory`,
/// keeps the first sample's state before each call.
struct Watcher<'a> {
    inner: &'a dyn Denoiser,
    frames: Option<RefCell<Vec<Tensor>>>,
    bar: &'a ProgressBar,
}

impl Denoiser for Watcher<'_> {
    fn predict(
        &self,
        x_t: &Tensor,
        t: &[f64],
        cond: Condition<'_>,
    ) -> diffuse_diffusion::Result<Tensor> {
        if let Some(frames) = &self.frames {
            frames.borrow_mut().push(x_t.narrow(0, 0, 1)?.contiguous()?);
        }
        // Samplers that call the model more than once a step (Heun, PNDM's warm-up, a corrector) lengthen the bar.
        if self.bar.position() >= self.bar.length().unwrap_or(0) {
            self.bar.inc_length(1);
        }
        let out = self.inner.predict(x_t, t, cond);
        self.bar.inc(1);
        out
    }

    fn prediction(&self) -> Prediction {
        self.inner.prediction()
    }
}

/// Writes edited images: the grid (each image, then its edits, one row per image), --out-tensor and --out-dir.
fn write_edited(
    args: &SampleArgs,
    images: &Tensor,
    shown: &Tensor,
    count: usize,
) -> Result<(), String> {
    if let Some(path) = &args.out_tensor {
        write_tensor(path, "samples", images)?;
    }
    let shown = shown.to_device(Device::Cpu).map_err(|e| e.to_string())?;
    let images = images.to_device(Device::Cpu).map_err(|e| e.to_string())?;
    let mut rows = Vec::new();
    for i in 0..shown.shape()[0] {
        rows.push(shown.narrow(0, i, 1).map_err(|e| e.to_string())?);
        rows.push(
            images
                .narrow(0, i * count, count)
                .map_err(|e| e.to_string())?,
        );
    }
    let refs: Vec<&Tensor> = rows.iter().collect();
    let grid = Tensor::concat(&refs, 0).map_err(|e| e.to_string())?;
    save_grid(&grid, count + 1, &args.out)?;
    eprintln!(
        "{} edits of {} images in {}",
        images.shape()[0],
        shown.shape()[0],
        args.out.display()
    );
    if let Some(dir) = &args.out_dir {
        for i in 0..images.shape()[0] {
            let one = images.narrow(0, i, 1).map_err(|e| e.to_string())?;
            save_grid(&one, 1, &dir.join(format!("sample-{i:04}.png")))?;
        }
    }
    Ok(())
}

fn save_grid(images: &Tensor, columns: usize, path: &Path) -> Result<(), String> {
    let shape = images.shape();
    Grid {
        pixels: &images.to_vec().map_err(|e| e.to_string())?,
        count: shape[0],
        channels: shape[1],
        height: shape[2],
        width: shape[3],
        columns,
    }
    .save(path)
}

/// The prompts' states for a text-to-image model (`None` for any other model, which must not be given prompts):
/// the pipeline's tokenizer and text encoder, checked against the U-Net, encode `--prompt` / `--prompts`, each
/// repeated `count` times, and `--negative-prompt` (or the empty prompt).
fn text_conditioning(
    args: &SampleArgs,
    pipeline: &Pipeline,
    model: &BackboneConfig,
    count: usize,
    device: Device,
) -> Result<Option<PromptContexts>, String> {
    let prompts = read_prompts(&args.prompt, args.prompts.as_deref())?;
    let Some(context_dim) = model.context_dim() else {
        if !prompts.is_empty() || args.negative_prompt.is_some() {
            return Err(format!(
                "--prompt needs a text-to-image model; {} is a {} without cross-attention",
                pipeline.denoiser.display(),
                model.class_name()
            ));
        }
        return Ok(None);
    };
    let (Some(tokenizer), Some(encoder)) = (&pipeline.tokenizer, &pipeline.text_encoder) else {
        return Err(format!(
            "{}: a {} attends to a prompt's states, but the folder has no tokenizer/ and text_encoder/ to encode \
             one (open the StableDiffusionPipeline folder above it)",
            pipeline.denoiser.display(),
            model.class_name()
        ));
    };
    if prompts.is_empty() {
        return Err(format!(
            "{} is a text-to-image model: pass --prompt P (or --prompts FILE)",
            pipeline.root.display()
        ));
    }
    if args.class.is_some() || model.num_class_embeds().is_some() {
        return Err(
            "--class: diffuse samples a text-to-image model from prompts only (no class labels)"
                .into(),
        );
    }
    let text = TextEncoder::load(tokenizer, encoder, Some(context_dim), device)?;
    PromptContexts::encode(&text, &prompts, count, args.negative_prompt.as_deref()).map(Some)
}

/// Refuses a tensor file (given as `flag`) that holds NaN or infinity: it would make every sample NaN without a word.
fn check_finite(tensor: &Tensor, flag: &str, path: &Path) -> Result<(), String> {
    let values = tensor.to_vec().map_err(|e| e.to_string())?;
    let bad = values.iter().filter(|v| !v.is_finite()).count();
    match values.iter().position(|v| !v.is_finite()) {
        Some(first) => Err(format!(
            "{flag} {}: {bad} of its {} values are not finite (NaN or infinity), the first at flat index {first} \
             ({}); every sample they reach would be NaN",
            path.display(),
            values.len(),
            values[first]
        )),
        None => Ok(()),
    }
}

/// `--init-image --mask` on a trained inpainting run: the network sees each image's mask and masked image and samples
/// the whole image from noise; the known pixels are then put back, so that they come out exactly as given.
fn inpaint_trained(
    args: &SampleArgs,
    model: &Backbone,
    sampler: &AnySampler,
) -> Result<(), String> {
    let Some(EditRequest::RePaint { images, known, .. }) = args.edit.request()? else {
        return Err(format!(
            "{} is a trained inpainting network: give --init-image IMAGES --mask MASK",
            args.checkpoint.display()
        ));
    };
    let AnySampler::Discrete(scheduler) = sampler else {
        return Err(format!(
            "an inpainting network runs a discrete-time sampler; --sampler {} is a score sampler",
            sampler.label()
        ));
    };
    if args.upscale.is_some() {
        return Err("--upscale upsamples samples drawn from noise, not inpaintings".into());
    }
    let config = model.config();
    let channels = config.out_channels();
    let (h, w) = config.sample_size().unwrap_or((28, 28));
    let s = images.shape().to_vec();
    if s[1] != channels || s[2..] != [h, w] {
        return Err(format!(
            "--init-image: the images are {}×{}×{} but the inpainting network takes {channels}×{h}×{w}",
            s[1], s[2], s[3]
        ));
    }
    let null_class = config.num_class_embeds().map(|n| n as u32 - 1);
    let count = args.count.max(1);
    let classes = edit_classes(s[0], args.class, null_class, args.guidance)?;
    let repeated = |t: &Tensor| -> Result<Tensor, String> {
        let mut rows = Vec::new();
        for i in 0..t.shape()[0] {
            let row = t.narrow(0, i, 1).map_err(|e| e.to_string())?;
            rows.extend(std::iter::repeat_n(row, count));
        }
        let refs: Vec<&Tensor> = rows.iter().collect();
        Tensor::concat(&refs, 0).map_err(|e| e.to_string())
    };
    let guides = repeated(&images)?;
    let extra = inpainting_input(&guides, &known)?;
    let classes: Option<Vec<u32>> = classes.map(|c| {
        c.iter()
            .flat_map(|&c| std::iter::repeat_n(c, count))
            .collect()
    });
    let mut scheduler = scheduler.as_ref().clone();
    scheduler.options.seed = args.seed;
    let sampled = sample_conditioned(
        model,
        &ConditionedRequest {
            scheduler: &scheduler,
            extra: &extra,
            own_labels: None,
            classes: classes.as_deref(),
            guidance: args.guidance,
            null_class,
        },
    )?
    .to_device(Device::Cpu)
    .map_err(|e| e.to_string())?;
    // The known pixels put back: known·image + (1 − known)·sample.
    let known_values = known.to_vec().map_err(|e| e.to_string())?;
    let hw = h * w;
    let merged: Vec<f32> = sampled
        .to_vec()
        .map_err(|e| e.to_string())?
        .iter()
        .zip(guides.to_vec().map_err(|e| e.to_string())?)
        .enumerate()
        .map(|(i, (&x, g))| {
            let k = known_values[i % hw];
            k * g + (1.0 - k) * x
        })
        .collect();
    let merged =
        Tensor::from_vec(merged, sampled.shape(), Device::Cpu).map_err(|e| e.to_string())?;
    let shown = images.mul(&known).map_err(|e| e.to_string())?;
    eprintln!(
        "trained inpainting: {} steps of {}",
        scheduler.options.steps,
        scheduler.class.name()
    );
    write_edited(args, &merged, &shown, count)
}

pub fn run(args: &SampleArgs) -> Result<(), String> {
    check_sr_steps(args.upscale.as_deref(), args.sr_steps)?;
    let device = args.device.resolve()?;
    let weights = if args.ema {
        Weights::Ema
    } else {
        Weights::Model
    };
    let folder = open_folder(&args.checkpoint, weights)?;
    let denoiser_dir = &folder.pipeline.denoiser;
    let (model, _store) = Backbone::load_diffusers(denoiser_dir, device)
        .map_err(|e| format!("{}: {e}", denoiser_dir.display()))?;
    let (sampler, view) = folder.sampler(&model.config(), &args.sampling, &args.score)?;
    match image_condition_of(&folder)? {
        Some(ImageCondition::SuperResolution(sr)) => {
            return Err(format!(
                "{} is a super-resolution stage ({}×{} → {}×{}): it upsamples a base model's samples; run diffuse \
                 sample --checkpoint BASE --upscale {}",
                args.checkpoint.display(),
                sr.low,
                sr.low,
                sr.high,
                sr.high,
                args.checkpoint.display()
            ))
        }
        Some(ImageCondition::Inpainting(_)) => return inpaint_trained(args, &model, &sampler),
        None => {}
    }
    if let AnySampler::Discrete(scheduler) = &sampler {
        for (key, value) in scheduler.ignored.iter().chain(&scheduler.dropped) {
            eprintln!(
                "note: {key} = {value} is not a {} setting and is left out, as in diffusers",
                scheduler.class.name()
            );
        }
    }
    // A latent model's samples (and trajectory) become images through its autoencoder.
    let decoder = decoder_for(denoiser_dir, device)?;
    if let Some(decoder) = &decoder {
        check_decodes(decoder, &model.config())?;
    }
    // A PNG shows 1 (grey) or 3 (RGB) channels; other samples are written as a tensor only.
    let channels = match &decoder {
        Some(decoder) => decoder.image_shape((1, 1)).0,
        None => model.config().in_channels(),
    };
    let images_as_png = matches!(channels, 1 | 3);
    if !images_as_png {
        if args.out_tensor.is_none() {
            return Err(format!(
                "the samples have {channels} channels, which a PNG cannot show; pass --out-tensor FILE"
            ));
        }
        eprintln!("note: {channels}-channel samples are written as a tensor only (no PNG)");
    }
    if let Some(request) = args.edit.request()? {
        if args.upscale.is_some() {
            return Err(
                "--upscale upsamples samples drawn from noise, not edits (--init-image)".into(),
            );
        }
        if model.config().context_dim().is_some() {
            return Err(
                "--init-image edits with class-conditional and unconditional models; a text-to-image model is \
                 sampled from noise only"
                    .into(),
            );
        }
        // Training uses the last class embedding as the null class (num_classes + 1 embeddings).
        let null_class = model.config().num_class_embeds().map(|n| n as u32 - 1);
        let AnySampler::Discrete(scheduler) = &sampler else {
            return Err(format!(
                "--init-image runs a discrete-time sampler (SDEdit, RePaint); --sampler {} is a score sampler",
                sampler.label()
            ));
        };
        for (given, name) in [
            (args.init_noise.is_some(), "--init-noise"),
            (args.noise.is_some(), "--noise"),
            (args.trajectory.is_some(), "--trajectory"),
        ] {
            if given {
                return Err(format!(
                    "{name} is for sampling from noise, not with --init-image"
                ));
            }
        }
        let mut scheduler = scheduler.as_ref().clone();
        scheduler.options.seed = args.seed;
        let count = args.count.max(1);
        let classes = edit_classes(
            request.images().shape()[0],
            args.class,
            null_class,
            args.guidance,
        )?;
        let edited = EditRun {
            model: &model,
            scheduler: &scheduler,
            decoder: decoder.as_ref(),
            count,
            classes,
            null_class,
            guidance: args.guidance,
            seed: args.seed,
            report: true,
        }
        .run(&request)?;
        return write_edited(args, &edited.images, &edited.shown, count);
    }
    let count = args.count.max(1);
    let prompts = text_conditioning(args, &folder.pipeline, &model.config(), count, device)?;
    // Training uses the last class embedding as the null class (num_classes + 1 embeddings).
    let null_class = match prompts {
        Some(_) => None,
        None => model.config().num_class_embeds().map(|n| n as u32 - 1),
    };
    let classes: Option<Vec<u32>> = match (null_class, args.class) {
        (Some(null), Some(c)) if c <= null => Some(vec![c; count]),
        (Some(null), Some(c)) => return Err(format!("--class {c} is out of range: the model knows classes 0..{null} (and {null} = unconditional)")),
        (Some(null), None) => Some((0..null).flat_map(|c| std::iter::repeat_n(c, count)).collect()),
        (None, Some(_)) => return Err("--class needs a class-conditional model".into()),
        (None, None) => None,
    };
    if args.guidance != 1.0 && classes.is_none() && prompts.is_none() {
        return Err(
            "--guidance other than 1 needs a class-conditional or text-to-image model".into(),
        );
    }
    let total = match (&classes, &prompts) {
        (Some(classes), _) => classes.len(),
        (None, Some(p)) => p.context.shape()[0],
        (None, None) => count,
    };
    let init = match args.init_noise.as_deref() {
        Some(path) => {
            let noise = read_tensor(path)?;
            let config = model.config();
            let (h, w) = config.sample_size().unwrap_or((28, 28));
            let expected = [total, config.in_channels(), h, w];
            if noise.shape() != expected {
                return Err(format!(
                    "--init-noise {}: shape mismatch: the file holds latents of shape {:?}, the model samples {:?}                      ({total} samples from --count and --class, each in_channels × sample_size of {})",
                    path.display(),
                    noise.shape(),
                    expected,
                    denoiser_dir.display()
                ));
            }
            check_finite(&noise, "--init-noise", path)?;
            Some(noise.to_device(model.device()).map_err(|e| e.to_string())?)
        }
        None => None,
    };
    let step_noise = match args.noise.as_deref() {
        Some(path) => {
            let noise = read_tensor(path)?;
            check_finite(&noise, "--noise", path)?;
            Some(noise.to_device(model.device()).map_err(|e| e.to_string())?)
        }
        None => None,
    };
    let mut frames = Vec::new();
    // Model calls against the planned steps (hidden when stderr is not a terminal).
    let planned = sampler.steps();
    let bar = ProgressBar::new(planned as u64).with_message(format!("{total} images"));
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} model calls, {msg} ETA {eta}")
            .map_err(|e| e.to_string())?,
    );
    let record = |denoiser: &dyn Denoiser,
                  sample: &dyn Fn(&dyn Denoiser) -> Result<Tensor, String>| {
        let watcher = Watcher {
            inner: denoiser,
            frames: args.trajectory.is_some().then(|| RefCell::new(Vec::new())),
            bar: &bar,
        };
        let out = sample(&watcher);
        frames = watcher.frames.map(RefCell::into_inner).unwrap_or_default();
        out
    };
    let (images, steps) = match &sampler {
        AnySampler::Discrete(scheduler) => {
            let mut scheduler = scheduler.as_ref().clone();
            scheduler.options.step_noise = step_noise;
            scheduler.options.seed = args.seed;
            let request = GridRequest {
                scheduler: &scheduler,
                classes: classes.as_deref(),
                count: total,
                guidance: args.guidance,
                null_class,
                prompts: prompts.as_ref(),
            };
            let images =
                draw_with(&model, &request, init.as_ref(), record).map_err(|e| {
                    match args.noise.as_deref() {
                        Some(path) if e.contains("step noise") => {
                            format!("--noise {}: {e}", path.display())
                        }
                        _ => e,
                    }
                })?;
            (images, scheduler.options.steps)
        }
        AnySampler::Consistency(sampler) => {
            if prompts.is_some() {
                return Err(format!(
                    "--sampler {} runs class-conditional and unconditional models only; pick a discrete-time \
                     sampler for prompts",
                    consistency::NAME
                ));
            }
            if args.noise.is_some() {
                return Err(format!(
                    "--noise gives the steps of a discrete-time sampler; --sampler {} draws its own",
                    consistency::NAME
                ));
            }
            let request = ConsistencyRequest {
                sampler,
                seed: args.seed,
                classes: classes.as_deref(),
                count: total,
                guidance: args.guidance,
                null_class,
            };
            let images = consistency::draw_with(&model, &request, init.as_ref(), record)?;
            (images, sampler.steps())
        }
        AnySampler::Score(score) => {
            if prompts.is_some() {
                return Err(format!(
                    "--sampler {} is a score sampler, which diffuse runs on class-conditional and unconditional \
                     models only; pick a discrete-time sampler for prompts",
                    score.name
                ));
            }
            if args.noise.is_some() {
                return Err(format!(
                    "--noise gives the steps of a discrete-time sampler; --sampler {} draws its own",
                    score.name
                ));
            }
            let request = ScoreRequest {
                sampler: *score,
                seed: args.seed,
                classes: classes.as_deref(),
                count: total,
                guidance: args.guidance,
                null_class,
                pixels: decoder.is_none(),
            };
            let (images, nfe) =
                crate::score::draw_with(&model, &view?, &request, init.as_ref(), record)?;
            eprintln!("{}: {nfe} model evaluations", score.name);
            (images, score.steps)
        }
    };
    bar.finish_and_clear();
    // The sampler's own output, unclipped; a latent model's decoded into (clamped) images.
    let decode = |t: Tensor| match &decoder {
        Some(decoder) => decoder.decode(&t),
        None => Ok(t),
    };
    let images = decode(images)?;
    let images = match &args.upscale {
        Some(stage) => {
            if args.trajectory.is_some() {
                return Err(
                    "--trajectory records the base model's steps; leave it out with --upscale"
                        .into(),
                );
            }
            let folder = open_folder(stage, weights)?;
            let upscaled = upscale(
                &images,
                &folder,
                stage,
                &stage_sampling(&args.sampling, args.sr_steps),
                args.sr_level,
                args.seed,
                device,
            )?;
            eprintln!(
                "upscaled {total} samples from {}×{} to {}×{} with {} (augmentation level {})",
                images.shape()[2],
                images.shape()[3],
                upscaled.shape()[2],
                upscaled.shape()[3],
                stage.display(),
                args.sr_level
            );
            upscaled
        }
        None => images,
    };
    if let Some(path) = &args.out_tensor {
        write_tensor(path, "samples", &images)?;
    }
    let name = sampler.label();
    if !images_as_png {
        if let Some(path) = &args.out_tensor {
            eprintln!(
                "{total} samples ({name}, {steps} steps) in {}",
                path.display()
            );
        }
        return Ok(());
    }
    match &prompts {
        Some(p) => save_prompt_grid(&images, &p.prompts, count, &args.out)?,
        None => save_grid(&images, count, &args.out)?,
    }
    eprintln!(
        "{total} samples ({name}, {steps} steps) in {}",
        args.out.display()
    );
    if let Some(dir) = &args.out_dir {
        for i in 0..total {
            let one = images.narrow(0, i, 1).map_err(|e| e.to_string())?;
            save_grid(&one, 1, &dir.join(format!("sample-{i:04}.png")))?;
        }
    }
    if let Some(path) = &args.trajectory {
        let mut parts = Vec::new();
        if !frames.is_empty() {
            let refs: Vec<&Tensor> = frames.iter().collect();
            parts.push(decode(
                Tensor::concat(&refs, 0).map_err(|e| e.to_string())?,
            )?);
        }
        parts.push(
            images
                .narrow(0, 0, 1)
                .map_err(|e| e.to_string())?
                .contiguous()
                .map_err(|e| e.to_string())?,
        );
        let refs: Vec<&Tensor> = parts.iter().collect();
        let strip = Tensor::concat(&refs, 0).map_err(|e| e.to_string())?;
        save_grid(&strip, frames.len() + 1, path)?;
    }
    eprintln!(
        "next: diffuse eval --checkpoint {} --num 1000   (FD, precision and recall of its samples)",
        args.checkpoint.display()
    );
    Ok(())
}
