//! `diffuse train`: trains a diffusers-layout U-Net on an image dataset, with an EMA, atomic checkpoints every
//! `--checkpoint-every` steps (`OUT/step-N/`, `OUT/latest`), sample grids (`OUT/samples/step-N.png`), one line of
//! metrics per logged step (`OUT/metrics.jsonl`) and the loss curve at the end (`OUT/loss.png`); with `--eval-every`
//! also evaluations of the EMA weights ([`crate::train_eval`]: metrics lines, progress line, `OUT/eval.png`).
//! Ctrl-C writes a checkpoint and stops; `--resume OUT` continues bit for bit where the last checkpoint left off.
//! With `--vae DIR` the model trains on the autoencoder's scaled latents and every checkpoint is a diffusers pipeline
//! folder ([`crate::latent`]). With `--text CLIP_DIR` a cross-attention U-Net learns to denoise conditioned on the
//! training images' captions through a frozen text encoder, and every checkpoint is a diffusers
//! `StableDiffusionPipeline` folder ([`crate::text_train`]). Under `mpirun -np N` the ranks train data parallel ([`crate::launch`]): rank 0 alone
//! writes the files and the progress bar, every rank reads the checkpoint it resumes from.

use crate::datasets::{DataSource, SHIPPED_DATA};
use crate::device::DeviceArgs;
use crate::distill::{run_rounds, Cadence, Run};
use crate::files::open_metrics;
use crate::fit_config::{adapt_named, check_explicit, fit_conditioned, DataShape};
use crate::latent::{check_latent_setup, decoder_for, encode_training_set, LatentDecoder};
use crate::launch::LaunchArgs;
use crate::memory_check::check_training_fits;
use crate::numbers::{finite_f32, finite_f64};
use crate::plots::{save_eval_curve, save_loss_curve, LossPoint};
use crate::precision::PrecisionArgs;
use crate::prompt::PromptContexts;
use crate::sampling::run_sampler;
use crate::score::{any_sampler, AnySampler, ScoreArgs, ScoreView};
use crate::sde_train::SdeTrainArgs;
use crate::text_train::{grid_prompts, training_captions, TextConditioning};
use crate::train_eval::{read_evaluations, summary, Evaluator, TrainEvalArgs};
use crate::training_grids::{GridModel, Grids};
use clap::Args;
use diffuse_diffusion::data::{Dataset, FolderOptions, Split};
use diffuse_diffusion::distill::{read_state, Curriculum, DistillConfig, DistillState, Method};
use diffuse_diffusion::image_condition::{
    ImageCondition, Inpainting, NoiseAugmentation, SuperResolution,
};
use diffuse_diffusion::schedule::{BetaSchedule, PredictionType, SchedulerConfig, VarianceType};
use diffuse_diffusion::sde::ScoreMatching;
use diffuse_diffusion::train::checkpoint::{latest_checkpoint, PIPELINE_UNET_DIR};
use diffuse_diffusion::train::hybrid::DEFAULT_VLB_WEIGHT;
use diffuse_diffusion::train::{Collective, LossWeighting, StepReport, TrainConfig, Trainer};
use diffuse_models::folder::CONFIG_FILE;
use diffuse_models::{Backbone, BackboneConfig};
use diffuse_nn::{EmaWarmup, LrSchedule, ParamStore};
use diffuse_tensor::Device;
use indicatif::{ProgressBar, ProgressStyle};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Instant;

#[derive(Args, Debug)]
pub struct TrainArgs {
    /// Model architecture: a named config (fashion-small, fashion-base, ddpm-cifar10, dit-s-4, ...), which takes the
    /// dataset's channels, size and classes, or a diffusers config.json, which must fit the dataset.
    #[arg(long, default_value = "fashion-small")]
    config: String,
    /// Dataset: a folder of images (PNG or JPEG, grey or colour, any depth of sub-folders) or of IDX files,
    /// `fashion-mnist` (the shipped subset, compiled into the binary) or `fashion-mnist-full` (the 60,000-image
    /// training set of Debian's dataset-fashion-mnist).
    #[arg(long, default_value = SHIPPED_DATA)]
    data: String,
    /// Resize each image of an image folder so that its short side is N, then keep the centred N×N square.
    /// [default: images must share one size]
    #[arg(long, value_name = "N")]
    resolution: Option<usize>,
    /// Train on 1 (grey) or 3 (RGB) channels, converting the images.  [default: 1 if every image is grey, else 3]
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=3))]
    channels: Option<u8>,
    /// Output folder: checkpoints, samples, metrics and the loss curve.
    #[arg(long, default_value = "runs/fashion-small")]
    out: PathBuf,
    /// Total optimiser steps (with --resume: the new total; a resumed --objective consistency run keeps its own,
    /// over which its curriculum is laid out).  [default: 400]
    #[arg(long)]
    steps: Option<u64>,
    /// Images per step.
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    /// Peak learning rate.
    #[arg(long, value_parser = finite_f32, default_value_t = 2e-3)]
    lr: f32,
    /// Linear warm-up steps.
    #[arg(long, default_value_t = 50)]
    warmup: u64,
    /// After the warm-up: constant, or cosine decay to --lr-floor at the last step.
    #[arg(long, default_value = "cosine", value_parser = ["constant", "cosine"])]
    lr_schedule: String,
    /// The cosine schedule's final learning rate.
    #[arg(long, value_parser = finite_f32, default_value_t = 1e-4)]
    lr_floor: f32,
    /// AdamW's decoupled weight decay.
    #[arg(long, value_parser = finite_f32, default_value_t = 1e-4)]
    weight_decay: f32,
    /// Clip the global gradient norm to this (0: no clipping).
    #[arg(long, value_parser = finite_f32, default_value_t = 1.0)]
    grad_clip: f32,
    /// Maximum decay of the EMA of the weights (warmed up as (1+k)/(10+k)).
    #[arg(long, value_parser = finite_f64, default_value_t = 0.999)]
    ema_decay: f64,
    /// What the network predicts.  [default: epsilon; v_prediction with --objective consistency, whose output at
    /// σ = 80 an ε network would multiply by 80]
    #[arg(long, value_parser = ["epsilon", "sample", "v_prediction"])]
    prediction: Option<String>,
    /// Per-timestep loss weights: uniform, or min-SNR-γ (Hang et al. 2023).
    #[arg(long, default_value = "min-snr", value_parser = ["uniform", "min-snr"])]
    loss_weighting: String,
    /// γ of min-SNR-γ weighting.
    #[arg(long, value_parser = finite_f64, default_value_t = 5.0)]
    min_snr_gamma: f64,
    /// Timestep distribution: uniform, or loss-aware importance sampling (Nichol & Dhariwal 2021).
    #[arg(long, default_value = "uniform", value_parser = ["uniform", "importance"])]
    timestep_sampler: String,
    /// Probability of training a sample with the null class (for classifier-free guidance).
    #[arg(long, value_parser = finite_f64, default_value_t = 0.1)]
    label_dropout: f64,
    /// Beta schedule: linear, scaled_linear, squaredcos_cap_v2, sigmoid or laplace.
    #[arg(long, default_value = "squaredcos_cap_v2")]
    schedule: String,
    /// Training timesteps T.
    #[arg(long, default_value_t = 1000)]
    num_train_timesteps: usize,
    /// Seeds the initial weights, data order, timesteps, dropout, flips and noise.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Save a checkpoint every N steps (0: only at the end).
    #[arg(long, default_value_t = 100)]
    checkpoint_every: u64,
    /// Draw a sample grid every N steps (0: only at the end).
    #[arg(long, default_value_t = 250)]
    sample_every: u64,
    /// Checkpoints to keep.
    #[arg(long, default_value_t = 2)]
    keep: usize,
    /// Continue the run in this folder from its latest checkpoint; its stored settings apply except --steps and the
    /// output options (--checkpoint-every, --sample-every, --keep, --log-every, the grid and evaluation options);
    /// --data must name the same dataset; outputs go to this folder.  [default: none: a new run]
    #[arg(long)]
    resume: Option<PathBuf>,
    /// Mirror training images left-to-right at random.  [default: off]
    #[arg(long, default_value_t = false)]
    hflip: bool,
    /// Random crop: translate each training image by up to N pixels in each direction, the uncovered border
    /// filled by reflecting the image (padding by N and cutting a random window; 0: off). Drawn from --seed, so a
    /// resumed run replays it exactly.
    #[arg(long, value_name = "N", default_value_t = 0)]
    crop_pad: usize,
    #[command(flatten)]
    device: DeviceArgs,
    #[command(flatten)]
    precision: PrecisionArgs,
    /// Fail after this many consecutive non-finite losses.
    #[arg(long, default_value_t = 5)]
    max_nonfinite: u32,
    /// Write a metrics line every N steps.
    #[arg(long, default_value_t = 10)]
    log_every: u64,
    /// Sampler of the grids (any `diffuse sample --sampler` name), built from the run's scheduler config.
    /// [default: dpm++2m; pc with --sde]
    #[arg(long)]
    grid_sampler: Option<String>,
    /// Denoising steps of the grids.
    #[arg(long, default_value_t = 20)]
    grid_steps: usize,
    /// Samples per row of the grids (one row per class for a class-conditional model).
    #[arg(long, default_value_t = 8)]
    grid_columns: usize,
    /// Classifier-free guidance scale of the grids (1: plain conditional; 2 sharpens the classes of a short run at
    /// twice the sampling cost).
    #[arg(long, value_parser = finite_f64, default_value_t = 2.0)]
    grid_guidance: f64,
    #[command(flatten)]
    eval: TrainEvalArgs,
    /// Latent diffusion: train on the scaled latents of this autoencoder (a `diffuse vae train` run or checkpoint,
    /// a pipeline folder with vae/, or a vae/ folder); checkpoints become diffusers pipeline folders. A resumed run
    /// takes its autoencoder from its checkpoint.  [default: none: pixels]
    #[arg(long)]
    vae: Option<PathBuf>,
    /// Text to image: condition a cross-attention U-Net (--config fashion-text, or fashion-text-latent with --vae) on
    /// the training images' captions through the frozen tokenizer and text encoder of this `diffuse clip train` run
    /// (or checkpoint, or text-to-image pipeline folder); checkpoints become diffusers StableDiffusionPipeline
    /// folders. A resumed run takes its text encoder from its checkpoint.  [default: none]
    #[arg(long, value_name = "CLIP_DIR")]
    text: Option<PathBuf>,
    /// Probability of training a sample with the empty prompt instead of its caption (for classifier-free guidance
    /// of a --text run).
    #[arg(long, value_parser = finite_f64, default_value_t = 0.1)]
    caption_dropout: f64,
    #[command(flatten)]
    sde: SdeTrainArgs,
    /// What the network learns: diffusion (denoising, as --prediction and --loss-weighting say) or consistency
    /// (consistency training without a teacher, Song & Dhariwal 2023: discretisation curriculum 10 → 1280 levels,
    /// log-normal noise levels, pseudo-Huber loss, no EMA target, constant --lr; grids are drawn one-step with the
    /// consistency sampler, and there are no evaluations: sample it
    /// with diffuse sample --sampler consistency).
    #[arg(long, default_value = "diffusion", value_parser = ["diffusion", "consistency"])]
    objective: String,
    #[command(flatten)]
    launch: LaunchArgs,
    /// Train the super-resolution stage of a cascade, LOW:HIGH (e.g. 14:28): a U-Net of HIGH×HIGH images that also
    /// sees the image box-averaged to LOW×LOW, noise-augmented and bilinearly upsampled, as extra input channels;
    /// its class labels are the augmentation levels (see --sr-levels). Use it with diffuse sample --upscale.
    /// [default: none]
    #[arg(long, value_name = "LOW:HIGH")]
    super_resolution: Option<String>,
    /// --super-resolution: the noise-conditioning augmentation levels K (0 = clean, K − 1 = --sr-max-timestep),
    /// drawn uniformly per image; the network has one class embedding per level.
    #[arg(long, default_value_t = 11)]
    sr_levels: usize,
    /// --super-resolution: the timestep of the run's noise schedule that the top augmentation level noises to.
    #[arg(long, default_value_t = 200)]
    sr_max_timestep: usize,
    /// Train an inpainting network: the U-Net also sees a random mask (halves and rectangles) and the image with the
    /// masked region blanked, as diffusers' inpainting U-Nets do ([x_t, mask, masked image]); sample it with diffuse
    /// sample --init-image --mask.  [default: off]
    #[arg(long, conflicts_with = "super_resolution")]
    inpainting: bool,
}

/// The image condition `--super-resolution` or `--inpainting` asks for.
fn image_condition(args: &TrainArgs) -> Result<Option<ImageCondition>, String> {
    if let Some(text) = &args.super_resolution {
        let augmentation = NoiseAugmentation {
            levels: args.sr_levels,
            max_timestep: args.sr_max_timestep,
        };
        let sr = SuperResolution::parse(text, augmentation).map_err(|e| e.to_string())?;
        sr.validate(args.num_train_timesteps)
            .map_err(|e| e.to_string())?;
        return Ok(Some(ImageCondition::SuperResolution(sr)));
    }
    Ok(args
        .inpainting
        .then_some(ImageCondition::Inpainting(Inpainting)))
}

/// The training split of the dataset `--data` names, shaped by `options`, and where it came from.
pub fn load_data(name: &str, options: &FolderOptions) -> Result<(DataSource, Dataset), String> {
    let source = DataSource::named(name)?;
    let data = source.load(Split::Train, options)?;
    Ok((source, data))
}

/// How `--resolution` and `--channels` shape the training images.
fn folder_options(args: &TrainArgs) -> FolderOptions {
    FolderOptions {
        resolution: args.resolution,
        channels: args.channels.map(usize::from),
    }
}

/// `--config`: a named architecture or a path to a diffusers config.json.
pub fn model_config(name: &str) -> Result<BackboneConfig, String> {
    let path = Path::new(name);
    if path.is_file() {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        return BackboneConfig::from_json_str(&text)
            .map_err(|e| format!("{}: {e}", path.display()));
    }
    BackboneConfig::named(name).map_err(|e| e.to_string())
}

fn new_config(
    args: &TrainArgs,
    model: &BackboneConfig,
    data: &Dataset,
    score_matching: Option<ScoreMatching>,
    image_condition: Option<ImageCondition>,
) -> Result<TrainConfig, String> {
    let beta_schedule = BetaSchedule::from_name(&args.schedule).ok_or_else(|| {
        format!("unknown --schedule '{}' (expected linear, scaled_linear, squaredcos_cap_v2, sigmoid or laplace)", args.schedule)
    })?;
    let (beta_start, beta_end) = match beta_schedule {
        BetaSchedule::ScaledLinear => (0.00085, 0.012),
        _ => (1e-4, 0.02),
    };
    let scheduler = SchedulerConfig {
        class_name: Some("DDPMScheduler".into()),
        num_train_timesteps: args.num_train_timesteps,
        beta_start,
        beta_end,
        beta_schedule,
        prediction_type: PredictionType::from_name(args.prediction.as_deref().unwrap_or(
            if args.objective == "consistency" {
                "v_prediction"
            } else {
                "epsilon"
            },
        ))
        .ok_or("bad --prediction")?,
        // A network that predicts its variance is sampled with it by diffusers' DDPM (the other samplers use the mean).
        variance_type: if model.learns_variance() {
            VarianceType::LearnedRange
        } else {
            VarianceType::FixedSmall
        },
        ..SchedulerConfig::default()
    };
    let lr = match (args.lr_schedule.as_str(), args.warmup) {
        ("cosine", warmup) => LrSchedule::Cosine {
            lr: args.lr,
            warmup,
            total: args.total_steps(),
            floor: args.lr_floor,
        },
        (_, 0) => LrSchedule::Constant { lr: args.lr },
        (_, warmup) => LrSchedule::LinearWarmup {
            lr: args.lr,
            warmup,
        },
    };
    let owns_labels = image_condition.is_some_and(|c| c.owns_class_labels());
    let null_class = match model.num_class_embeds() {
        _ if owns_labels => None,
        Some(n) if data.labels.is_some() => {
            if n <= data.num_classes {
                return Err(format!(
                    "the model has {n} class embeddings but classifier-free training needs the dataset's {} classes plus a null class",
                    data.num_classes
                ));
            }
            Some(data.num_classes as u32)
        }
        Some(_) => {
            return Err("the model is class-conditional but the dataset has no labels".into())
        }
        None => None,
    };
    let config = TrainConfig {
        seed: args.seed,
        steps: args.total_steps(),
        batch_size: args.batch_size,
        lr,
        adam_beta1: 0.9,
        adam_beta2: 0.999,
        adam_eps: 1e-8,
        weight_decay: args.weight_decay,
        grad_clip: (args.grad_clip > 0.0).then_some(args.grad_clip),
        ema_decay: args.ema_decay,
        ema_warmup: EmaWarmup::Fraction,
        scheduler,
        // Score matching weights by its own λ(t) (--sde-weighting).
        loss_weighting: match args.loss_weighting.as_str() {
            "min-snr" if score_matching.is_none() => LossWeighting::MinSnr {
                gamma: args.min_snr_gamma,
            },
            _ => LossWeighting::Uniform,
        },
        importance_sampling: args.timestep_sampler == "importance",
        null_class,
        label_dropout: if null_class.is_some() {
            args.label_dropout
        } else {
            0.0
        },
        caption_dropout: if model.context_dim().is_some() {
            args.caption_dropout
        } else {
            0.0
        },
        hflip: args.hflip,
        crop_pad: args.crop_pad,
        max_nonfinite: args.max_nonfinite,
        score_matching,
        vlb_weight: DEFAULT_VLB_WEIGHT,
        image_condition,
    };
    config.validate().map_err(|e| e.to_string())?;
    Ok(config)
}

pub fn build(
    config: &BackboneConfig,
) -> impl Fn(&ParamStore) -> diffuse_models::Result<Backbone> + '_ {
    move |store| Backbone::new(config.clone(), store)
}

/// Step, loss, smoothed loss and learning rate of every loss line of the metrics file.
pub fn read_metrics(path: &Path) -> Vec<LossPoint> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).ok()?;
            Some(LossPoint {
                step: v["step"].as_u64()?,
                loss: v["loss"].as_f64()?,
                smoothed: v["smoothed_loss"].as_f64()?,
                lr: v["lr"].as_f64(),
            })
        })
        .collect()
}

/// The EMA model of `trainer`, as the grids draw it.
fn ema_grid_model(trainer: &Trainer<Backbone>) -> GridModel<'_> {
    GridModel {
        model: &trainer.ema_model,
        null_class: trainer.config().null_class,
        seed: trainer.config().seed,
        image_condition: trainer
            .config()
            .image_condition
            .map(|condition| (condition, trainer.schedule())),
    }
}

/// The sampler of the grids: `--grid-sampler` built from the run's scheduler config, by default DPM-Solver++(2M), or
/// predictor–corrector for a score model (which the discrete-time samplers cannot serve).
fn grid_sampler(args: &TrainArgs, config: &TrainConfig) -> Result<AnySampler, String> {
    let score_sde = config.score_matching.is_some();
    let name = args
        .grid_sampler
        .as_deref()
        .unwrap_or(if score_sde { "pc" } else { "dpm++2m" });
    any_sampler(
        Some(name),
        args.grid_steps,
        &ScoreArgs::default(),
        score_sde,
        |_| run_sampler(&config.scheduler, name, args.grid_steps),
    )
    .map_err(|e| format!("--grid-sampler: {e}"))
}

fn metrics_line(report: &StepReport, images_per_s: f64, elapsed: f64) -> String {
    let num = |x: f64| {
        if x.is_finite() {
            serde_json::json!(x)
        } else {
            serde_json::Value::Null
        }
    };
    serde_json::json!({
        "step": report.step,
        "loss": num(report.loss),
        "smoothed_loss": report.smoothed_loss.map(num),
        "grad_norm": report.grad_norm.map(|g| num(f64::from(g))),
        "lr": report.lr,
        "skipped": report.skipped,
        "images_per_s": images_per_s,
        "elapsed_s": elapsed,
        "communication_s": report.communication_s,
    })
    .to_string()
}

/// `--objective consistency`: the consistency-training loop of [`crate::distill`], on this command's model, data
/// and optimiser settings.
fn run_consistency_training(args: &TrainArgs) -> Result<(), String> {
    crate::launch::refuse_several_ranks(
        "train --objective consistency",
        crate::distill::NOT_DATA_PARALLEL,
    )?;
    if args.vae.is_some() || args.sde.is_set() {
        return Err("--objective consistency trains on pixels of a DDPM-style schedule; leave out --vae and --sde".into());
    }
    if args.text.is_some() {
        return Err("--objective consistency trains class-conditional and unconditional models; leave out --text".into());
    }
    let device = args.device.resolve()?;
    let (_, data) = load_data(&args.data, &folder_options(args))?;
    let cadence = Cadence {
        checkpoint_every: args.checkpoint_every,
        keep: args.keep,
        log_every: args.log_every,
        sample_every: args.sample_every,
        grid_columns: args.grid_columns,
    };
    let (state, resume_from, model, out) = match &args.resume {
        Some(dir) => {
            let step_dir = latest_checkpoint(dir).map_err(|e| e.to_string())?;
            let state = read_state(&step_dir).map_err(|e| {
                format!("{e} (--objective consistency resumes a consistency-training run)")
            })?;
            let subcommand = match state.config.method {
                Method::ConsistencyTraining { .. } => None,
                Method::Progressive { .. } => Some("progressive"),
                Method::ConsistencyDistillation { .. } => Some("consistency"),
            };
            if let Some(subcommand) = subcommand {
                return Err(format!(
                    "{} is a {} run; resume it with diffuse distill {subcommand} --resume {}",
                    dir.display(),
                    state.config.method.name(),
                    dir.display()
                ));
            }
            let total = state.config.steps_per_round;
            if let Some(steps) = args.steps.filter(|&n| n != total) {
                return Err(format!(
                    "--steps {steps}: the run {}'s discretisation curriculum is laid out over its {total} steps, \
                     and another total would re-time it; leave --steps out to continue it",
                    dir.display()
                ));
            }
            let text = std::fs::read_to_string(step_dir.join("model").join(CONFIG_FILE))
                .map_err(|e| format!("{}: {e}", step_dir.display()))?;
            let model = BackboneConfig::from_json_str(&text).map_err(|e| e.to_string())?;
            (state, Some(step_dir), model, dir.clone())
        }
        None => {
            let model = model_config(&args.config)?;
            if model.learns_variance() {
                return Err("--objective consistency: a network that predicts its variance has no use for it \
                            here; pick a config without a learned variance"
                    .into());
            }
            let train = new_config(args, &model, &data, None, None)?;
            let config = DistillConfig {
                method: Method::ConsistencyTraining {
                    curriculum: Curriculum::default(),
                },
                teacher: None,
                scheduler: train.scheduler,
                seed: args.seed,
                batch_size: args.batch_size,
                steps_per_round: args.total_steps(),
                lr: args.lr,
                grad_clip: train.grad_clip,
                ema_decay: args.ema_decay,
                guidance: 1.0,
                null_class: train.null_class,
            };
            config.validate().map_err(|e| e.to_string())?;
            (DistillState::new(config), None, model, args.out.clone())
        }
    };
    run_rounds(Run {
        state,
        resume_from,
        teacher_weights: None,
        model,
        out,
        data: &data,
        device,
        cadence,
    })
}

impl TrainArgs {
    /// `--steps`, or its default.
    fn total_steps(&self) -> u64 {
        self.steps.unwrap_or(DEFAULT_STEPS)
    }
}

/// Optimiser steps of a run without `--steps`.
const DEFAULT_STEPS: u64 = 400;

/// Refuses to resume a distillation or consistency-training run (its checkpoints hold a `distill_state.json`) as a
/// diffusion training run, naming the command that continues it.
fn refuse_distillation_run(dir: &Path) -> Result<(), String> {
    let Ok(step_dir) = latest_checkpoint(dir) else {
        // No checkpoint: the training resume reports it.
        return Ok(());
    };
    let Ok(state) = read_state(&step_dir) else {
        return Ok(());
    };
    let how = match state.config.method {
        Method::ConsistencyTraining { .. } => "diffuse train --objective consistency",
        Method::Progressive { .. } => "diffuse distill progressive",
        Method::ConsistencyDistillation { .. } => "diffuse distill consistency",
    };
    Err(format!(
        "{} is a {} run, not a diffusion training run; resume it with {how} --resume {}",
        dir.display(),
        state.config.method.name(),
        dir.display()
    ))
}

pub fn run(args: &TrainArgs) -> Result<(), String> {
    if args.objective == "consistency" {
        if args.super_resolution.is_some() || args.inpainting {
            return Err("--objective consistency trains plain denoisers; leave out --super-resolution and --inpainting".into());
        }
        return run_consistency_training(args);
    }
    if let Some(dir) = &args.resume {
        refuse_distillation_run(dir)?;
    }
    let out = args.resume.as_ref().unwrap_or(&args.out);
    crate::launch::run_training(
        &args.launch.engine,
        &args.device,
        "train",
        out,
        |device, collective| train(args, device, collective),
    )
}

fn train(args: &TrainArgs, device: Device, collective: Rc<dyn Collective>) -> Result<(), String> {
    let leader = collective.is_leader();
    args.precision.apply(device)?;
    let (source, data) = load_data(&args.data, &folder_options(args))?;
    eprintln!("data: {}", data.summary);
    let (mut trainer, model_config, out, decoder, text) = match &args.resume {
        Some(dir) => {
            let step_dir = latest_checkpoint(dir).map_err(|e| e.to_string())?;
            let config_path = step_dir.join("model").join(CONFIG_FILE);
            let text = std::fs::read_to_string(&config_path)
                .map_err(|e| format!("{}: {e}", config_path.display()))?;
            let model_config = BackboneConfig::from_json_str(&text).map_err(|e| e.to_string())?;
            let mut trainer =
                Trainer::resume_on(dir, device, build(&model_config)).map_err(|e| e.to_string())?;
            trainer.set_total_steps(args.total_steps());
            if leader {
                eprintln!(
                    "resuming {} at step {}",
                    step_dir.display(),
                    trainer.step_index()
                );
            }
            if args.vae.is_some() {
                return Err(
                    "--vae with --resume: a resumed run keeps the autoencoder of its checkpoint"
                        .into(),
                );
            }
            if args.text.is_some() {
                return Err(
                    "--text with --resume: a resumed run keeps the text encoder of its checkpoint"
                        .into(),
                );
            }
            let decoder = decoder_for(&step_dir.join(PIPELINE_UNET_DIR), device)?;
            let text = match model_config.context_dim() {
                Some(_) => {
                    let text = TextConditioning::load(&step_dir, device)?;
                    text.fit(model_config.clone(), &step_dir.display().to_string(), false)?;
                    Some(text)
                }
                None => None,
            };
            (trainer, model_config, dir.clone(), decoder, text)
        }
        None => {
            let named = !Path::new(&args.config).is_file();
            let mut model_config = model_config(&args.config)?;
            let text = match &args.text {
                Some(dir) => {
                    if args.sde.is_set() {
                        return Err(
                            "--sde with --text: a text-to-image run trains the discrete-time \
                                    objective; leave out --sde"
                                .into(),
                        );
                    }
                    let text = TextConditioning::load(dir, device)?;
                    let note;
                    (model_config, note) = text.fit(model_config, &args.config, named)?;
                    if let Some(note) = note {
                        eprintln!("{note}");
                    }
                    Some(text)
                }
                None if model_config.context_dim().is_some() => {
                    return Err(format!(
                        "--config {}: a {} attends to a prompt's states; pass --text CLIP_DIR (a `diffuse clip \
                         train` run) to train it on the images' captions",
                        args.config,
                        model_config.class_name()
                    ));
                }
                None => None,
            };
            let condition = image_condition(args)?;
            if condition.is_some()
                && (args.vae.is_some() || args.sde.is_set() || args.text.is_some())
            {
                return Err("--super-resolution and --inpainting train pixel U-Nets with the discrete objective; leave \
                            out --vae, --sde and --text"
                    .into());
            }
            if let Some(ImageCondition::SuperResolution(sr)) = &condition {
                if (data.height, data.width) != (sr.high, sr.high) {
                    return Err(format!(
                        "--super-resolution {}:{}: the stage trains on {high}×{high} images but the dataset's are \
                         {}×{}; pass --resolution {high} (or pick LOW:HIGH to match the images)",
                        sr.low,
                        sr.high,
                        data.height,
                        data.width,
                        high = sr.high
                    ));
                }
            }
            // Pixel models fit the images; a latent model's shape is checked against its autoencoder below.
            if let Some(condition) = condition {
                let shape = DataShape {
                    channels: data.channels,
                    height: data.height,
                    width: data.width,
                    classes: data.labels.is_some().then_some(data.num_classes),
                };
                let notes;
                (model_config, notes) =
                    fit_conditioned(&args.config, named, model_config, condition, shape)?;
                for note in notes {
                    eprintln!("{note}");
                }
            } else if args.vae.is_none() {
                let shape = DataShape {
                    channels: data.channels,
                    height: data.height,
                    width: data.width,
                    classes: data.labels.is_some().then_some(data.num_classes),
                };
                if named {
                    let notes;
                    (model_config, notes) = adapt_named(&args.config, model_config, shape)?;
                    for note in notes {
                        eprintln!("{note}");
                    }
                } else {
                    check_explicit(&model_config, &args.config, shape, &source.to_string())?;
                }
            }
            let (model_config, objective) =
                args.sde
                    .objective(&model_config, named, args.num_train_timesteps)?;
            let config = new_config(args, &model_config, &data, objective, condition)?;
            let decoder = args
                .vae
                .as_deref()
                .map(|dir| LatentDecoder::load(dir, device))
                .transpose()?;
            if decoder.is_some() && config.hflip {
                return Err("--hflip with --vae: a mirrored image's latent is not its latent mirrored; leave \
                            --hflip off for latent diffusion"
                    .into());
            }
            if decoder.is_some() && config.crop_pad > 0 {
                return Err("--crop-pad with --vae: the crop would move latents, not images; leave --crop-pad at \
                            0 for latent diffusion"
                    .into());
            }
            if config.crop_pad >= data.height.min(data.width) {
                return Err(format!(
                    "--crop-pad {} moves {}×{} images by as much as their size; pass less than {}",
                    config.crop_pad,
                    data.height,
                    data.width,
                    data.height.min(data.width)
                ));
            }
            let (height, width) = model_config
                .sample_size()
                .unwrap_or((data.height, data.width));
            check_training_fits(
                &model_config,
                &args.config,
                config.batch_size,
                height,
                width,
            )?;
            let trainer =
                Trainer::new_on(config, device, build(&model_config)).map_err(|e| e.to_string())?;
            (trainer, model_config, args.out.clone(), decoder, text)
        }
    };
    let extra_channels = trainer
        .config()
        .image_condition
        .map_or(0, |c| c.extra_channels(data.channels));
    match &decoder {
        Some(decoder) => check_latent_setup(decoder, &data, &model_config, text.is_some())?,
        None if model_config.in_channels() != data.channels + extra_channels => {
            return Err(format!(
                "the model takes {} channels but the dataset's images have {}{}",
                model_config.in_channels(),
                data.channels,
                match extra_channels {
                    0 => String::new(),
                    n => format!(" (and the image condition adds {n})"),
                }
            ))
        }
        None => {}
    }
    let grid_sampler = grid_sampler(args, trainer.config())?;
    if trainer.config().image_condition.is_some() && args.eval.eval_every > 0 {
        return Err("--eval-every scores samples drawn from noise; an image-conditioned run is scored with \
                    diffuse eval-edit (leave out --eval-every)"
            .into());
    }
    let prompts = match &text {
        Some(text) => {
            if args.eval.eval_every > 0 {
                return Err(
                    "--eval-every: the evaluations during training score class-conditional and \
                            unconditional runs; score a --text run afterwards with diffuse eval --checkpoint \
                            OUT --prompts default"
                        .into(),
                );
            }
            let captions = training_captions(&source, &data)?;
            let contexts = text.caption_contexts(&captions, trainer.config().seed)?;
            if leader {
                eprintln!(
                    "text: {} captions ({} distinct) encoded by the frozen text encoder {}, caption dropout {}",
                    contexts.len(),
                    contexts.distinct(),
                    text.dir.display(),
                    trainer.config().caption_dropout
                );
            }
            trainer.set_captions(contexts);
            let columns = args.grid_columns.max(1);
            Some(PromptContexts::encode(
                &text.text,
                &grid_prompts(&captions),
                columns,
                None,
            )?)
        }
        None => None,
    };
    let evaluator = match leader {
        true => Evaluator::new(
            &args.eval,
            &source,
            &data,
            &model_config,
            decoder.as_ref(),
            trainer.config(),
        )?,
        false => None,
    };
    trainer.set_collective(Rc::clone(&collective));
    trainer.set_overlap(args.launch.overlap_bucket_elements()?);
    // Refuses a global batch smaller than the number of processes before anything is written.
    let shard = trainer.shard().map_err(|e| e.to_string())?;
    let latents = match &decoder {
        Some(decoder) => {
            trainer.set_latent_space(decoder.space());
            Some(encode_training_set(decoder, &data)?)
        }
        None => None,
    };
    let train_data = latents.as_ref().unwrap_or(&data);
    let metrics_path = out.join("metrics.jsonl");
    let mut evaluated_at = None;
    let mut metrics = None;
    if leader {
        metrics = Some(open_metrics(&metrics_path, trainer.step_index())?);
        evaluated_at = read_evaluations(&metrics_path).last().map(|e| e.0);
    }
    let mut latest_eval = String::new();
    crate::interrupt::install()?;

    let total = trainer.config().steps;
    let batch = trainer.config().batch_size;
    let latent_note = match &decoder {
        Some(d) => format!(
            " as {}×{}×{} latents of {}",
            d.vae.config().latent_channels,
            train_data.height,
            train_data.width,
            d.dir.display()
        ),
        None => String::new(),
    };
    let processes = crate::launch::processes_note(collective.size(), shard, "samples");
    if leader {
        eprintln!(
            "training {} parameters on {} on {} images of {}×{}×{}{latent_note}, batch {batch}{processes}, to step \
             {total}; outputs in {}",
            trainer.store.numel(),
            trainer.device(),
            data.len(),
            data.channels,
            data.height,
            data.width,
            out.display()
        );
    }
    let bar = match leader {
        true => ProgressBar::new(total),
        false => ProgressBar::hidden(),
    }
    .with_position(trainer.step_index());
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} {msg} ETA {eta}")
            .map_err(|e| e.to_string())?,
    );
    let grids = Grids {
        out: &out,
        score: match grid_sampler {
            AnySampler::Score(_) => Some(ScoreView::of_training(
                &trainer.ema_model.config(),
                trainer.config(),
            )?),
            _ => None,
        },
        sampler: grid_sampler,
        decoder: decoder.as_ref(),
        columns: args.grid_columns,
        guidance: args.grid_guidance,
        prompts: prompts.as_ref(),
    };
    let start = Instant::now();
    let first_step = trainer.step_index();
    let mut saved_at = None;
    // Seconds spent evaluating, left out of the training throughput.
    let mut eval_seconds = 0.0;
    let log = |metrics: &mut Option<File>, line: &str| match metrics {
        Some(file) => {
            writeln!(file, "{line}").map_err(|e| format!("{}: {e}", metrics_path.display()))
        }
        None => Ok(()),
    };
    let evaluate =
        |trainer: &Trainer<Backbone>, evaluator: &Evaluator, metrics: &mut Option<File>| {
            let begun = Instant::now();
            let report = evaluator.run(trainer, decoder.as_ref())?;
            let seconds = begun.elapsed().as_secs_f64();
            log(
                metrics,
                &evaluator.metrics_line(trainer.step_index(), &report, seconds),
            )?;
            Ok::<_, String>((summary(&report), seconds))
        };
    let save = |trainer: &Trainer<Backbone>| -> Result<u64, String> {
        match (&text, &decoder) {
            (Some(text), decoder) => trainer.save_pipeline_checkpoint(&out, args.keep, |dir| {
                Ok(text.write_pipeline(dir, &model_config, decoder.as_ref())?)
            }),
            (None, Some(decoder)) => trainer.save_pipeline_checkpoint(&out, args.keep, |dir| {
                Ok(decoder.write_pipeline_components(dir, &model_config)?)
            }),
            (None, None) => trainer.save_checkpoint(&out, args.keep),
        }
        .map_err(|e| e.to_string())?;
        Ok(trainer.step_index())
    };
    while trainer.step_index() < total {
        let interrupted = crate::interrupt::requested_on_any(collective.as_ref())?;
        if interrupted && !leader {
            return Ok(());
        }
        if interrupted {
            bar.suspend(|| {
                eprintln!(
                    "interrupted: writing a checkpoint at step {}",
                    trainer.step_index()
                )
            });
            save(&trainer)?;
            bar.abandon();
            eprintln!(
                "stopped at step {}; continue with --resume {}",
                trainer.step_index(),
                out.display()
            );
            return Ok(());
        }
        let report = trainer.step(train_data).map_err(|e| e.to_string())?;
        let done = trainer.step_index();
        let elapsed = start.elapsed().as_secs_f64();
        let images_per_s =
            (done - first_step) as f64 * batch as f64 / (elapsed - eval_seconds).max(1e-9);
        let loss = format!("loss {:.4}", report.smoothed_loss.unwrap_or(f64::NAN));
        bar.set_position(done);
        bar.set_message(format!("{loss}{latest_eval} | {images_per_s:.0} img/s"));
        if report.skipped {
            bar.suspend(|| eprintln!("step {}: non-finite loss, skipped", report.step));
        }
        if args.log_every > 0 && (report.step % args.log_every == 0 || done == total) {
            log(&mut metrics, &metrics_line(&report, images_per_s, elapsed))?;
        }
        // Before the checkpoint, so that a checkpoint after `done` steps implies its evaluation is logged.
        if let Some(evaluator) = evaluator.as_ref().filter(|e| e.due(done) && done < total) {
            bar.set_message(format!("{loss}{latest_eval} | evaluating"));
            let (text, seconds) = evaluate(&trainer, evaluator, &mut metrics)?;
            (latest_eval, evaluated_at) = (format!(" | {text}"), Some(done));
            eval_seconds += seconds;
            bar.set_message(format!("{loss}{latest_eval} | {images_per_s:.0} img/s"));
        }
        if leader && args.checkpoint_every > 0 && done % args.checkpoint_every == 0 && done < total
        {
            saved_at = Some(save(&trainer)?);
        }
        if leader && args.sample_every > 0 && done % args.sample_every == 0 && done < total {
            let path = grids.write(&ema_grid_model(&trainer), &format!("step-{done}"), &data)?;
            bar.suspend(|| eprintln!("step {done}: samples in {}", path.display()));
        }
    }
    if let Some(evaluator) = &evaluator {
        if evaluated_at != Some(trainer.step_index()) {
            let (text, _) = evaluate(&trainer, evaluator, &mut metrics)?;
            bar.suspend(|| eprintln!("step {}: {text}", trainer.step_index()));
        }
    }
    if !leader {
        return Ok(());
    }
    bar.finish();
    if let Some(file) = metrics.as_mut() {
        file.flush().map_err(|e| e.to_string())?;
    }
    if saved_at != Some(trainer.step_index()) {
        save(&trainer)?;
    }
    let grid = grids.write(&ema_grid_model(&trainer), "final", &data)?;
    let curve = out.join("loss.png");
    let points = read_metrics(&metrics_path);
    if !points.is_empty() {
        save_loss_curve(&points, &curve)?;
    }
    let evaluations = read_evaluations(&metrics_path);
    if !evaluations.is_empty() {
        let path = out.join("eval.png");
        save_eval_curve(&evaluations, &path)?;
        eprintln!("FD against step in {}", path.display());
    }
    eprintln!(
        "done: step {}, smoothed loss {:.4}, {:.1} s; samples {}, loss curve {}",
        trainer.step_index(),
        trainer.state().smoothed_loss.unwrap_or(f64::NAN),
        start.elapsed().as_secs_f64(),
        grid.display(),
        curve.display()
    );
    match (prompts, trainer.config().image_condition) {
        (Some(prompts), _) => eprintln!(
            "next: diffuse sample --checkpoint {} --prompt \"{}\" --guidance 4 --out grid.png",
            out.display(),
            prompts.prompts[0]
        ),
        (None, Some(ImageCondition::SuperResolution(sr))) => eprintln!(
            "next: diffuse sample --checkpoint BASE --upscale {} --out grid.png   (BASE: a {}×{} run, or a {}×{} one)",
            out.display(),
            sr.low,
            sr.low,
            sr.high,
            sr.high
        ),
        (None, Some(ImageCondition::Inpainting(_))) => eprintln!(
            "next: diffuse sample --checkpoint {} --init-image IMAGE.png --mask MASK.png --out fills.png",
            out.display()
        ),
        (None, None) => eprintln!(
            "next: diffuse sample --checkpoint {} --steps 50 --out grid.png   (or diffuse eval --checkpoint {} \
             --num 1000)",
            out.display(),
            out.display()
        ),
    }
    Ok(())
}
