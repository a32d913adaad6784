//! `diffuse vae train`: trains a diffusers-layout `AutoencoderKL` on an image dataset with LDM's objective
//! ([`diffuse_diffusion::autoencoder`]), with an EMA, atomic checkpoints every `--checkpoint-every` steps
//! (`OUT/step-N/{vae,ema}/`, diffusers folders with the measured `scaling_factor`; `OUT/latest`), reconstruction
//! grids (`OUT/samples/step-N.png`: originals above their reconstructions), one line of metrics per logged step
//! (`OUT/metrics.jsonl`) and the loss curve at the end (`OUT/loss.png`). Ctrl-C writes a checkpoint and stops;
//! `--resume OUT` continues bit for bit where the last checkpoint left off.
//!
//! Under `mpirun -np N` the run is data-parallel (docs/distributed.md): each rank trains on its shard of every
//! global batch of `--batch-size` images and the ranks sum losses and gradients, so N processes reproduce one;
//! rank 0 alone writes checkpoints, grids, metrics and the progress bar; every rank reads the checkpoint it resumes.

use crate::datasets::SHIPPED_DATA;
use crate::device::DeviceArgs;
use crate::files::open_metrics;
use crate::grid::Grid;
use crate::launch::LaunchArgs;
use crate::numbers::{finite_f32, finite_f64};
use crate::plots::save_loss_curve;
use crate::scoring::{load_classifier, DEFAULT_CLASSIFIER};
use crate::train::{load_data, read_metrics};
use clap::Args;
use diffuse_diffusion::autoencoder::{
    AdversarialConfig, AutoencoderStepReport, AutoencoderTrainConfig, AutoencoderTrainer,
    Reconstruction, EMA_DIR, LIVE_DIR,
};
use diffuse_diffusion::data::Dataset;
use diffuse_diffusion::data::FolderOptions;
use diffuse_diffusion::eval::classifier::IMAGE_SIZE;
use diffuse_diffusion::train::checkpoint::latest_checkpoint;
use diffuse_diffusion::train::Collective;
use diffuse_models::folder::CONFIG_FILE;
use diffuse_models::vae::{AutoencoderKLConfig, PatchDiscriminatorConfig};
use diffuse_nn::{EmaWarmup, LrSchedule};
use diffuse_tensor::{Device, Tensor};
use indicatif::{ProgressBar, ProgressStyle};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Instant;

#[derive(Args, Debug)]
pub struct VaeTrainArgs {
    /// Autoencoder architecture: a named config (fashion-vae: 28×28×1 → 4×7×7) or a diffusers config.json.
    #[arg(long, default_value = "fashion-vae")]
    config: String,
    /// Dataset: a folder of images or IDX files, `fashion-mnist` (the shipped subset, compiled into the binary) or
    /// `fashion-mnist-full` (the 60,000-image training set of Debian's dataset-fashion-mnist).
    #[arg(long, default_value = SHIPPED_DATA)]
    data: String,
    /// Output folder: checkpoints, reconstruction grids, metrics and the loss curve.
    #[arg(long, default_value = "runs/fashion-vae")]
    out: PathBuf,
    /// Total optimiser steps (with --resume: the new total).
    #[arg(long, default_value_t = 2000)]
    steps: u64,
    /// Images per step.
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    /// Peak learning rate (of the autoencoder and, unless --disc-lr, of the discriminator).
    #[arg(long, value_parser = finite_f32, default_value_t = 1e-3)]
    lr: f32,
    /// Linear warm-up steps.
    #[arg(long, default_value_t = 100)]
    warmup: u64,
    /// After the warm-up: constant, or cosine decay to --lr-floor at the last step.
    #[arg(long, default_value = "cosine", value_parser = ["constant", "cosine"])]
    lr_schedule: String,
    /// The cosine schedule's final learning rate.
    #[arg(long, value_parser = finite_f32, default_value_t = 1e-5)]
    lr_floor: f32,
    /// Adam's β₁ (LDM trains its autoencoders with 0.5).
    #[arg(long, value_parser = finite_f32, default_value_t = 0.5)]
    adam_beta1: f32,
    /// Adam's β₂ (LDM: 0.9).
    #[arg(long, value_parser = finite_f32, default_value_t = 0.9)]
    adam_beta2: f32,
    /// Clip the global gradient norm to this (0: no clipping).
    #[arg(long, value_parser = finite_f32, default_value_t = 0.0)]
    grad_clip: f32,
    /// Maximum decay of the EMA of the weights (warmed up as (1+k)/(10+k)).
    #[arg(long, value_parser = finite_f64, default_value_t = 0.999)]
    ema_decay: f64,
    /// Per-pixel reconstruction error: l1 (LDM) or mse.
    #[arg(long, default_value = "l1", value_parser = ["l1", "mse"])]
    reconstruction: String,
    /// β, the weight of KL(q(z|x) ‖ N(0, I)) against the reconstruction error, both summed per image (LDM: 1e-6).
    #[arg(long, value_parser = finite_f64, default_value_t = 1e-6)]
    kl_weight: f64,
    /// Weight of the perceptual distance in the Fashion-MNIST classifier's activations (0: off; LDM uses 1 with
    /// LPIPS). Needs 28×28 grey images and --classifier.
    #[arg(long, value_parser = finite_f64, default_value_t = 0.0)]
    perceptual_weight: f64,
    /// The classifier of the perceptual term.
    #[arg(long, default_value = DEFAULT_CLASSIFIER)]
    classifier: PathBuf,
    /// Switch the patch discriminator (hinge loss, adaptive weight) on at this step.  [default: none: no
    /// discriminator]
    #[arg(long)]
    disc_start: Option<u64>,
    /// Weight of the adaptively weighted generator loss (LDM's disc_weight).
    #[arg(long, value_parser = finite_f64, default_value_t = 0.5)]
    disc_weight: f64,
    /// The discriminator's learning rate.  [default: --lr]
    #[arg(long, value_parser = finite_f32)]
    disc_lr: Option<f32>,
    /// Width of the discriminator's first convolution.
    #[arg(long, default_value_t = 32)]
    disc_channels: usize,
    /// Stride-2 convolutions of the discriminator (2 gives 5×5 patches of 28×28 images).
    #[arg(long, default_value_t = 2)]
    disc_layers: usize,
    /// Training images the saved scaling_factor (1 / std of their latents) is measured on.
    #[arg(long, default_value_t = 2048)]
    scale_images: usize,
    /// Seeds the initial weights, data order, flips and posterior samples.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Save a checkpoint every N steps (0: only at the end).
    #[arg(long, default_value_t = 500)]
    checkpoint_every: u64,
    /// Write a reconstruction grid every N steps (0: only at the end).
    #[arg(long, default_value_t = 500)]
    sample_every: u64,
    /// Images per reconstruction grid (the first training images: originals above reconstructions).
    #[arg(long, default_value_t = 8)]
    grid_columns: usize,
    /// Checkpoints to keep.
    #[arg(long, default_value_t = 2)]
    keep: usize,
    /// Continue the run in this folder from its latest checkpoint; its stored settings apply except --steps and the
    /// output options; --data must name the same dataset.  [default: none: a new run]
    #[arg(long)]
    resume: Option<PathBuf>,
    /// Mirror training images left-to-right at random.  [default: off]
    #[arg(long, default_value_t = false)]
    hflip: bool,
    #[command(flatten)]
    device: DeviceArgs,
    /// Fail after this many consecutive non-finite losses.
    #[arg(long, default_value_t = 5)]
    max_nonfinite: u32,
    /// Write a metrics line every N steps.
    #[arg(long, default_value_t = 10)]
    log_every: u64,
    #[command(flatten)]
    launch: LaunchArgs,
}

/// `--config`: a named architecture or a path to a diffusers config.json.
fn model_config(name: &str) -> Result<AutoencoderKLConfig, String> {
    let path = Path::new(name);
    if path.is_file() {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        return AutoencoderKLConfig::from_json_str(&text)
            .map_err(|e| format!("{}: {e}", path.display()));
    }
    AutoencoderKLConfig::named(name).map_err(|e| e.to_string())
}

fn new_config(args: &VaeTrainArgs, channels: usize) -> Result<AutoencoderTrainConfig, String> {
    let lr = match (args.lr_schedule.as_str(), args.warmup) {
        ("cosine", warmup) => LrSchedule::Cosine {
            lr: args.lr,
            warmup,
            total: args.steps,
            floor: args.lr_floor,
        },
        (_, 0) => LrSchedule::Constant { lr: args.lr },
        (_, warmup) => LrSchedule::LinearWarmup {
            lr: args.lr,
            warmup,
        },
    };
    let adversarial = args.disc_start.map(|start_step| AdversarialConfig {
        discriminator: PatchDiscriminatorConfig {
            in_channels: channels,
            channels: args.disc_channels,
            layers: args.disc_layers,
            groups: 8.min(args.disc_channels),
        },
        start_step,
        weight: args.disc_weight,
        lr: args.disc_lr.unwrap_or(args.lr),
    });
    let config = AutoencoderTrainConfig {
        seed: args.seed,
        steps: args.steps,
        batch_size: args.batch_size,
        lr,
        adam_beta1: args.adam_beta1,
        adam_beta2: args.adam_beta2,
        adam_eps: 1e-8,
        weight_decay: 0.0,
        grad_clip: (args.grad_clip > 0.0).then_some(args.grad_clip),
        ema_decay: args.ema_decay,
        ema_warmup: EmaWarmup::Fraction,
        reconstruction: Reconstruction::from_name(&args.reconstruction)
            .ok_or("bad --reconstruction")?,
        kl_weight: args.kl_weight,
        perceptual_weight: args.perceptual_weight,
        adversarial,
        hflip: args.hflip,
        max_nonfinite: args.max_nonfinite,
        scale_images: args.scale_images,
    };
    config.validate().map_err(|e| e.to_string())?;
    Ok(config)
}

/// Checks that the autoencoder reads the dataset's images: channels and size, naming both sides.
fn check_data(model: &AutoencoderKLConfig, data: &Dataset, source: &str) -> Result<(), String> {
    let (h, w) = model.sample_size.height_width();
    if (data.channels, data.height, data.width) != (model.in_channels, h, w) {
        return Err(format!(
            "{source} holds {}×{}×{} images but the autoencoder is configured for {}×{h}×{w} (in_channels × \
             sample_size); pass --config with matching in_channels and sample_size",
            data.channels, data.height, data.width, model.in_channels
        ));
    }
    Ok(())
}

/// The classifier of the perceptual term, when its weight is positive (it reads 28×28 grey images only).
fn perceptual_classifier(
    weight: f64,
    path: &Path,
    data: &Dataset,
) -> Result<Option<diffuse_diffusion::eval::ImageClassifier>, String> {
    if weight == 0.0 {
        return Ok(None);
    }
    if (data.channels, data.height, data.width) != (1, IMAGE_SIZE, IMAGE_SIZE) {
        return Err(format!(
            "--perceptual-weight compares activations of the Fashion-MNIST classifier, which reads 1×28×28 images; \
             the dataset's are {}×{}×{}",
            data.channels, data.height, data.width
        ));
    }
    load_classifier(path)
        .map(Some)
        .map_err(|e| format!("--perceptual-weight: {e}"))
}

fn metrics_line(report: &AutoencoderStepReport, images_per_s: f64, elapsed: f64) -> String {
    let num = |x: f64| {
        if x.is_finite() {
            serde_json::json!(x)
        } else {
            serde_json::Value::Null
        }
    };
    let smoothed = report.smoothed.unwrap_or_default();
    serde_json::json!({
        "step": report.step,
        "loss": num(report.loss.total),
        "smoothed_loss": report.smoothed.map(|s| num(s.total)),
        "reconstruction": num(report.loss.reconstruction),
        "smoothed_reconstruction": num(smoothed.reconstruction),
        "perceptual": num(report.loss.perceptual),
        "kl": num(report.loss.kl),
        "generator": num(report.loss.generator),
        "discriminator": num(report.loss.discriminator),
        "adaptive_weight": num(report.loss.adaptive_weight),
        "grad_norm": report.grad_norm.map(|g| num(f64::from(g))),
        "lr": report.lr,
        "skipped": report.skipped,
        "communication_s": report.communication_s,
        "images_per_s": images_per_s,
        "elapsed_s": elapsed,
    })
    .to_string()
}

/// Writes `path`: the first `columns` images of `data` in the top row, the EMA autoencoder's reconstructions below.
fn save_reconstructions(
    trainer: &AutoencoderTrainer,
    data: &Dataset,
    columns: usize,
    path: &Path,
) -> Result<(), String> {
    let count = columns.clamp(1, data.len());
    let n = data.image_len();
    let shape = [count, data.channels, data.height, data.width];
    let originals = &data.images[..count * n];
    let images = Tensor::from_slice(originals, &shape, Device::Cpu).map_err(|e| e.to_string())?;
    let decoded = trainer.reconstruct(&images).map_err(|e| e.to_string())?;
    let mut pixels = originals.to_vec();
    pixels.extend(decoded.to_vec().map_err(|e| e.to_string())?);
    Grid {
        pixels: &pixels,
        count: 2 * count,
        channels: data.channels,
        height: data.height,
        width: data.width,
        columns: count,
    }
    .save(path)
}

pub fn run(args: &VaeTrainArgs) -> Result<(), String> {
    let out = args.resume.as_ref().unwrap_or(&args.out);
    crate::launch::run_training(
        &args.launch.engine,
        &args.device,
        "vae train",
        out,
        |device, collective| train(args, device, collective),
    )
}

fn train(
    args: &VaeTrainArgs,
    device: Device,
    collective: Rc<dyn Collective>,
) -> Result<(), String> {
    let leader = collective.is_leader();
    let (_, data) = load_data(&args.data, &FolderOptions::default())?;
    let (mut trainer, out) = match &args.resume {
        Some(dir) => {
            let step_dir = latest_checkpoint(dir).map_err(|e| e.to_string())?;
            let state = diffuse_diffusion::autoencoder::read_autoencoder_state(&step_dir)
                .map_err(|e| e.to_string())?;
            let text = std::fs::read_to_string(step_dir.join(LIVE_DIR).join(CONFIG_FILE))
                .map_err(|e| format!("{}: {e}", step_dir.display()))?;
            let model = AutoencoderKLConfig::from_json_str(&text).map_err(|e| e.to_string())?;
            check_data(&model, &data, &args.data)?;
            let classifier =
                perceptual_classifier(state.config.perceptual_weight, &args.classifier, &data)?;
            let mut trainer = AutoencoderTrainer::resume_on(dir, device, classifier)
                .map_err(|e| e.to_string())?;
            trainer.set_total_steps(args.steps);
            if leader {
                eprintln!(
                    "resuming {} at step {}",
                    step_dir.display(),
                    trainer.step_index()
                );
            }
            (trainer, dir.clone())
        }
        None => {
            let model = model_config(&args.config)?;
            check_data(&model, &data, &args.data)?;
            let config = new_config(args, model.in_channels)?;
            let classifier =
                perceptual_classifier(config.perceptual_weight, &args.classifier, &data)?;
            let trainer = AutoencoderTrainer::new_on(config, model, device, classifier)
                .map_err(|e| e.to_string())?;
            (trainer, args.out.clone())
        }
    };
    trainer.set_collective(Rc::clone(&collective));
    trainer.set_overlap(args.launch.overlap_bucket_elements()?);
    // Refuses a global batch smaller than the number of processes before anything is written.
    let shard = trainer.shard().map_err(|e| e.to_string())?;
    let metrics_path = out.join("metrics.jsonl");
    let mut metrics: Option<File> = None;
    if leader {
        metrics = Some(open_metrics(&metrics_path, trainer.step_index())?);
    }
    crate::interrupt::install()?;

    let total = trainer.config().steps;
    let batch = trainer.config().batch_size;
    let latent = trainer.model.config().latent_size(data.height, data.width);
    let processes = crate::launch::processes_note(collective.size(), shard, "images");
    if leader {
        eprintln!(
            "training an autoencoder of {} parameters (discriminator {}) on {} on {} images of {}×{}×{} → latents \
             {}×{}×{}, batch {batch}{processes}, to step {total}; outputs in {}",
            trainer.store.numel(),
            trainer.discriminator_numel(),
            trainer.device(),
            data.len(),
            data.channels,
            data.height,
            data.width,
            trainer.model.config().latent_channels,
            latent.0,
            latent.1,
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
    let start = Instant::now();
    let first_step = trainer.step_index();
    let mut saved_at = None;
    let save = |trainer: &AutoencoderTrainer| -> Result<u64, String> {
        let dir = trainer
            .save_checkpoint(&out, args.keep, &data)
            .map_err(|e| e.to_string())?;
        let scaling = |folder: &str| {
            std::fs::read_to_string(dir.join(folder).join(CONFIG_FILE))
                .ok()
                .and_then(|t| AutoencoderKLConfig::from_json_str(&t).ok())
                .map_or(f64::NAN, |c| c.scaling_factor)
        };
        bar.suspend(|| {
            eprintln!(
                "step {}: checkpoint {} (scaling_factor {:.4}, EMA {:.4})",
                trainer.step_index(),
                dir.display(),
                scaling(LIVE_DIR),
                scaling(EMA_DIR)
            )
        });
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
        let report = trainer.step(&data).map_err(|e| e.to_string())?;
        let done = trainer.step_index();
        let elapsed = start.elapsed().as_secs_f64();
        let images_per_s = (done - first_step) as f64 * batch as f64 / elapsed.max(1e-9);
        let s = report.smoothed.unwrap_or_default();
        bar.set_position(done);
        bar.set_message(format!(
            "{} {:.4}/px KL {:.1}{} | {images_per_s:.0} img/s",
            trainer.config().reconstruction.name(),
            s.reconstruction,
            s.kl,
            if s.adaptive_weight > 0.0 {
                format!(" G {:.3} D {:.3}", s.generator, s.discriminator)
            } else {
                String::new()
            }
        ));
        if report.skipped {
            bar.suspend(|| eprintln!("step {}: non-finite loss, skipped", report.step));
        }
        if let Some(file) = metrics.as_mut() {
            if args.log_every > 0 && (report.step % args.log_every == 0 || done == total) {
                writeln!(file, "{}", metrics_line(&report, images_per_s, elapsed))
                    .map_err(|e| format!("{}: {e}", metrics_path.display()))?;
            }
        }
        if leader && args.checkpoint_every > 0 && done % args.checkpoint_every == 0 && done < total
        {
            saved_at = Some(save(&trainer)?);
        }
        if leader && args.sample_every > 0 && done % args.sample_every == 0 && done < total {
            let path = out.join("samples").join(format!("step-{done}.png"));
            save_reconstructions(&trainer, &data, args.grid_columns, &path)?;
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
    let grid = out.join("samples").join("final.png");
    save_reconstructions(&trainer, &data, args.grid_columns, &grid)?;
    let curve = out.join("loss.png");
    let points = read_metrics(&metrics_path);
    if !points.is_empty() {
        save_loss_curve(&points, &curve)?;
    }
    eprintln!(
        "done: step {}, {:.1} s; reconstructions {}, loss curve {}; the autoencoder for `diffuse train --vae {}` is \
         {}",
        trainer.step_index(),
        start.elapsed().as_secs_f64(),
        grid.display(),
        curve.display(),
        out.display(),
        latest_checkpoint(&out)
            .map_err(|e| e.to_string())?
            .join(EMA_DIR)
            .display()
    );
    Ok(())
}
