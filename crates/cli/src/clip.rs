//! `diffuse clip`: contrastive language–image pre-training on captioned images. `train` trains a small CLIP (a
//! BPE tokenizer learned on the captions, a text transformer and a ViT) with the symmetric contrastive loss and writes
//! checkpoints whose `text_encoder/` and `tokenizer/` a text-to-image run conditions on; `eval` reports zero-shot
//! accuracy with the prompts "a photo of a {class}" and image↔text recall@1 and @5 on the test images. Under
//! `mpirun -np N`, `train` is data parallel: each rank encodes its shard of every batch and the embeddings are
//! gathered for the loss (docs/distributed.md).

use crate::datasets::DataSource;
use crate::device::DeviceArgs;
use crate::files::open_metrics;
use crate::launch::CollectiveArgs;
use clap::{Args, Subcommand};
use diffuse_diffusion::contrastive::{
    evaluate, ClipArchitecture, ClipEvalReport, ClipTrainConfig, ClipTrainer, ImageCaptions,
    RetrievalTemplates, TEXT_ENCODER_DIR, TOKENIZER_DIR,
};
use diffuse_diffusion::data::{Dataset, Split};
use diffuse_diffusion::train::checkpoint::latest_checkpoint;
use diffuse_diffusion::train::Collective;
use diffuse_models::clip::{ClipModel, ClipTokenizer};
use diffuse_nn::LrSchedule;
use diffuse_tensor::Device;
use indicatif::{ProgressBar, ProgressStyle};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Instant;

#[derive(Subcommand, Debug)]
pub enum ClipCommand {
    /// Train a CLIP (tokenizer, text transformer, ViT) on image–caption pairs with the contrastive loss; checkpoints
    /// are transformers CLIPModel folders with text_encoder/ and tokenizer/ beside.
    Train(Box<ClipTrainArgs>),
    /// Zero-shot accuracy ("a photo of a {class}") and image→text / text→image recall@1 and @5 on the test images.
    Eval(ClipEvalArgs),
}

pub fn run(command: &ClipCommand) -> Result<(), String> {
    match command {
        ClipCommand::Train(args) => train(args),
        ClipCommand::Eval(args) => eval(args),
    }
}

#[derive(Args, Debug)]
pub struct ClipTrainArgs {
    /// Dataset: a folder of IDX files or PNG images (captions from captions.txt, or generated from Fashion-MNIST
    /// labels), or `fashion-mnist-full`.
    #[arg(long, default_value = "data/fashion-mnist")]
    data: String,
    /// Output folder: checkpoints, metrics.jsonl, eval.json.
    #[arg(long, default_value = "runs/fashion-clip")]
    out: PathBuf,
    /// Total optimiser steps (with --resume: the new total).
    #[arg(long, default_value_t = 1200)]
    steps: u64,
    /// Image–caption pairs per step (the contrastive loss's negatives are the rest of the batch).
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// Peak learning rate (linear warm-up, cosine decay to 1 % of it).
    #[arg(long, default_value_t = 1e-3)]
    lr: f32,
    /// Warm-up steps.
    #[arg(long, default_value_t = 50)]
    warmup: u64,
    /// AdamW's decoupled weight decay.
    #[arg(long, default_value_t = 0.05)]
    weight_decay: f32,
    /// Width of both transformers.
    #[arg(long, default_value_t = 64)]
    width: usize,
    /// Layers of each transformer.
    #[arg(long, default_value_t = 2)]
    layers: usize,
    /// Attention heads (must divide --width).
    #[arg(long, default_value_t = 4)]
    heads: usize,
    /// Hidden width of the MLPs.
    #[arg(long, default_value_t = 128)]
    mlp: usize,
    /// Side of the ViT's square patches (must divide the image side).
    #[arg(long, default_value_t = 4)]
    patch_size: usize,
    /// Width of the joint embedding space.
    #[arg(long, default_value_t = 64)]
    projection_dim: usize,
    /// Tokens per caption, start and end included (the tokenizer's model_max_length).
    #[arg(long, default_value_t = 20)]
    context_length: usize,
    /// Most entries of the BPE vocabulary learned on the captions (512 byte symbols and 2 special tokens included).
    #[arg(long, default_value_t = 1024)]
    vocab_size: usize,
    /// Seeds the weights, the batch order and the caption templates.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Save a checkpoint every N steps (0: only at the end).
    #[arg(long, default_value_t = 600)]
    checkpoint_every: u64,
    /// Checkpoints to keep.
    #[arg(long, default_value_t = 2)]
    keep: usize,
    /// Test images the final evaluation scores (0: none).
    #[arg(long, default_value_t = 10000)]
    eval_images: usize,
    /// Continue the run in this folder from its latest checkpoint (its stored settings apply except --steps).
    #[arg(long)]
    resume: Option<PathBuf>,
    #[command(flatten)]
    device: DeviceArgs,
    #[command(flatten)]
    launch: CollectiveArgs,
    /// Write a metrics line every N steps.
    #[arg(long, default_value_t = 10)]
    log_every: u64,
}

#[derive(Args, Debug)]
pub struct ClipEvalArgs {
    /// A `clip train` run (its latest checkpoint) or one of its step-N folders.
    #[arg(long)]
    clip: PathBuf,
    /// Dataset whose test split is scored.
    #[arg(long, default_value = "data/fashion-mnist")]
    data: String,
    /// Test images to score.
    #[arg(long, default_value_t = 10000)]
    images: usize,
    /// Sentences of the retrieval captions: train (the training templates) or held-out (never seen in training).
    #[arg(long, default_value = "train", value_parser = ["train", "held-out"])]
    templates: String,
    /// Also write the report as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    #[command(flatten)]
    device: DeviceArgs,
}

/// The step folder `dir` names: a run (its latest checkpoint) or a checkpoint itself.
fn checkpoint_dir(dir: &Path) -> Result<PathBuf, String> {
    if dir.join("latest").is_file() {
        latest_checkpoint(dir).map_err(|e| e.to_string())
    } else if dir.join(diffuse_models::folder::CONFIG_FILE).is_file()
        && dir.join(TOKENIZER_DIR).is_dir()
    {
        Ok(dir.to_path_buf())
    } else {
        Err(format!(
            "{} is neither a `diffuse clip train` run nor one of its step-N checkpoints (config.json and tokenizer/)",
            dir.display()
        ))
    }
}

fn load_split(name: &str, split: Split) -> Result<(Dataset, ImageCaptions), String> {
    let dir = match DataSource::named(name)? {
        DataSource::Folder(dir) => dir,
        DataSource::Shipped => {
            return Err(format!(
                "--data {name}: CLIP reads its captions beside the images in a folder; pass --data \
                 data/fashion-mnist (in the repository) or another folder"
            ))
        }
    };
    let data = Dataset::load(&dir, split)
        .map_err(|e| format!("{e}\n(pass --data DIR with IDX files or images)"))?;
    let captions = ImageCaptions::for_dataset(&dir, split, &data).map_err(|e| e.to_string())?;
    Ok((data, captions))
}

fn print_report(report: &ClipEvalReport) {
    let pct = |x: f64| format!("{:.1} %", 100.0 * x);
    eprintln!(
        "test images: {} ({} distinct captions)",
        report.images, report.distinct_captions
    );
    if let Some(a) = report.zero_shot_accuracy {
        eprintln!(
            "zero-shot accuracy (\"a photo of a {{class}}\"): {}",
            pct(a)
        );
    }
    eprintln!(
        "image → text recall@1 {}, @5 {}; text → image recall@1 {}, @5 {}",
        pct(report.image_to_text_recall_at_1),
        pct(report.image_to_text_recall_at_5),
        pct(report.text_to_image_recall_at_1),
        pct(report.text_to_image_recall_at_5)
    );
}

fn eval_model(
    model: &ClipModel,
    tokenizer: &ClipTokenizer,
    data: &str,
    images: usize,
    templates: RetrievalTemplates,
) -> Result<ClipEvalReport, String> {
    let (test, captions) = load_split(data, Split::Test)?;
    evaluate(model, tokenizer, &test, &captions, templates, Some(images)).map_err(|e| e.to_string())
}

fn eval(args: &ClipEvalArgs) -> Result<(), String> {
    let device = args.device.resolve()?;
    let step_dir = checkpoint_dir(&args.clip)?;
    let (model, _store) = ClipModel::load(&step_dir, device).map_err(|e| e.to_string())?;
    let tokenizer =
        ClipTokenizer::load(&step_dir.join(TOKENIZER_DIR)).map_err(|e| e.to_string())?;
    let templates = if args.templates == "held-out" {
        RetrievalTemplates::HeldOut
    } else {
        RetrievalTemplates::Train
    };
    let report = eval_model(&model, &tokenizer, &args.data, args.images, templates)?;
    print_report(&report);
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
        crate::files::write_atomically(path, text.as_bytes())
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}

fn train(args: &ClipTrainArgs) -> Result<(), String> {
    let out = args.resume.as_ref().unwrap_or(&args.out);
    crate::launch::run_training(
        &args.launch,
        &args.device,
        "clip train",
        out,
        |device, collective| train_on(args, device, collective),
    )
}

/// `clip train` as one rank of `collective` (all of it in one process): every rank encodes its shard of each batch
/// and takes the same step; rank 0 alone writes checkpoints, metrics, the progress bar and the evaluation.
fn train_on(
    args: &ClipTrainArgs,
    device: Device,
    collective: Rc<dyn Collective>,
) -> Result<(), String> {
    let leader = collective.is_leader();
    let (data, captions) = load_split(&args.data, Split::Train)?;
    let (mut trainer, out) = match &args.resume {
        Some(dir) => {
            let mut trainer = ClipTrainer::resume(dir, device).map_err(|e| e.to_string())?;
            trainer.set_total_steps(args.steps);
            if leader {
                eprintln!(
                    "resuming {} at step {}",
                    dir.display(),
                    trainer.step_index()
                );
            }
            (trainer, dir.clone())
        }
        None => {
            let config = ClipTrainConfig {
                seed: args.seed,
                steps: args.steps,
                batch_size: args.batch_size,
                lr: LrSchedule::Cosine {
                    lr: args.lr,
                    warmup: args.warmup,
                    total: args.steps,
                    floor: args.lr / 100.0,
                },
                weight_decay: args.weight_decay,
                grad_clip: 1.0,
                architecture: ClipArchitecture {
                    width: args.width,
                    layers: args.layers,
                    heads: args.heads,
                    mlp: args.mlp,
                    patch_size: args.patch_size,
                    projection_dim: args.projection_dim,
                    context_length: args.context_length,
                    vocab_size: args.vocab_size,
                },
            };
            let trainer =
                ClipTrainer::new(config, &data, &captions, device).map_err(|e| e.to_string())?;
            (trainer, args.out.clone())
        }
    };
    trainer.set_collective(Rc::clone(&collective));
    // Refuses a batch smaller than the number of processes before anything is written.
    let shard = trainer.shard().map_err(|e| e.to_string())?;
    let metrics_path = out.join("metrics.jsonl");
    let mut metrics = None;
    if leader {
        metrics = Some(open_metrics(&metrics_path, trainer.step_index())?);
    }
    crate::interrupt::install()?;
    let total = trainer.config().steps;
    let processes = crate::launch::processes_note(collective.size(), shard, "pairs");
    if leader {
        eprintln!(
            "training a CLIP of {} parameters (vocabulary {}, context {}) on {} on {} images, batch {}{processes}, \
             to step {total}; outputs in {}",
            trainer.store.numel(),
            trainer.tokenizer.vocab_size(),
            trainer.tokenizer.context_length(),
            device,
            data.len(),
            trainer.config().batch_size,
            out.display()
        );
    }
    let bar = match leader {
        true => ProgressBar::new(total).with_position(trainer.step_index()),
        false => ProgressBar::hidden(),
    };
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} {msg} ETA {eta}")
            .map_err(|e| e.to_string())?,
    );
    let start = Instant::now();
    let save = |trainer: &ClipTrainer| -> Result<(), String> {
        let dir = trainer
            .save_checkpoint(&out, args.keep)
            .map_err(|e| e.to_string())?;
        bar.suspend(|| {
            eprintln!(
                "step {}: checkpoint {}",
                trainer.step_index(),
                dir.display()
            )
        });
        Ok(())
    };
    let mut smoothed = None::<f32>;
    while trainer.step_index() < total {
        let interrupted = crate::interrupt::requested_on_any(collective.as_ref())?;
        if interrupted && !leader {
            return Ok(());
        }
        if interrupted {
            save(&trainer)?;
            bar.abandon();
            eprintln!(
                "stopped at step {}; continue with --resume {}",
                trainer.step_index(),
                out.display()
            );
            return Ok(());
        }
        let report = trainer.step(&data, &captions).map_err(|e| e.to_string())?;
        let done = trainer.step_index();
        let s = smoothed.map_or(report.loss, |s| 0.95 * s + 0.05 * report.loss);
        smoothed = Some(s);
        bar.set_position(done);
        bar.set_message(format!(
            "loss {s:.3} batch acc {:.2} T {:.3}",
            report.batch_accuracy, report.temperature
        ));
        if let Some(metrics) = metrics.as_mut() {
            if args.log_every > 0 && (done % args.log_every == 0 || done == total) {
                let line = serde_json::json!({
                    "step": report.step, "loss": report.loss, "smoothed_loss": s,
                    "batch_accuracy": report.batch_accuracy, "temperature": report.temperature,
                    "grad_norm": report.grad_norm, "lr": report.lr, "elapsed_s": start.elapsed().as_secs_f64(),
                });
                writeln!(metrics, "{line}")
                    .map_err(|e| format!("{}: {e}", metrics_path.display()))?;
            }
        }
        if leader && args.checkpoint_every > 0 && done % args.checkpoint_every == 0 && done < total
        {
            save(&trainer)?;
        }
    }
    if !leader {
        return Ok(());
    }
    bar.finish();
    save(&trainer)?;
    eprintln!(
        "done: step {}, {:.1} s",
        trainer.step_index(),
        start.elapsed().as_secs_f64()
    );
    if args.eval_images > 0 {
        let report = eval_model(
            &trainer.model,
            &trainer.tokenizer,
            &args.data,
            args.eval_images,
            RetrievalTemplates::Train,
        )?;
        print_report(&report);
        let path = out.join("eval.json");
        let text = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
        crate::files::write_atomically(&path, text.as_bytes())
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    let step_dir = latest_checkpoint(&out).map_err(|e| e.to_string())?;
    eprintln!(
        "the text encoder and tokenizer for a text-to-image run: {} and {}",
        step_dir.join(TEXT_ENCODER_DIR).display(),
        step_dir.join(TOKENIZER_DIR).display()
    );
    Ok(())
}
