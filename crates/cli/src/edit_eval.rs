//! `diffuse eval-edit`: measures editing on the shipped data (docs/editing.md §5).
//!
//! The guides are the first `--num` *training* images (so that strength 0 scores the data floor, not the reference
//! against itself), or with `--guides test` the first test images (which no model was trained on); the reference is
//! the test split, as in `diffuse eval`.
//!
//! - `--strengths 0.2,0.4,…` (SDEdit): per strength, the root-mean-square distance of the edits to their guides
//!   (faithfulness, in [−1, 1] pixel units) against FD and the other `eval` metrics (realism);
//! - `--mask PNG` (RePaint): every guide with the mask's white region filled, then FD of the whole images, and the
//!   classifier's accuracy against the guides' own labels: does the model restore the class from what is left?
//!
//! The edits are unconditional (a class-conditional model's null class) unless `--conditional`, which gives each
//! edit its guide's label (and allows `--guidance`).

use crate::cascade::image_condition_of;
use crate::datasets::DataSource;
use crate::device::DeviceArgs;
use crate::edit::{read_mask, report_start, EditRequest, EditRun};
use crate::edit_eval_conditioned::ConditionedEval;
use crate::latent::{check_decodes, decoder_for};
use crate::sample::open_folder;
use crate::sampling::SamplerArgs;
use crate::score::{AnySampler, ScoreArgs};
use crate::scoring::{first_images, load_classifier, load_split, Scorer, DEFAULT_CLASSIFIER};
use clap::Args;
use diffuse_diffusion::data::Split;
use diffuse_diffusion::edit::{check_strength, RePaint, Sdedit};
use diffuse_diffusion::eval::{evaluate_samples, EvalReport};
use diffuse_diffusion::image_condition::ImageCondition;
use diffuse_diffusion::pipeline::Weights;
use diffuse_diffusion::sampler::scheduler::Scheduler;
use diffuse_models::Backbone;
use diffuse_tensor::{Device, Tensor};
use serde_json::json;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct EvalEditArgs {
    /// A diffusers pipeline folder, a model folder, a training run (its latest checkpoint) or a step-N checkpoint.
    #[arg(long)]
    checkpoint: PathBuf,
    #[command(flatten)]
    sampling: SamplerArgs,
    #[command(flatten)]
    score: ScoreArgs,
    #[command(flatten)]
    device: DeviceArgs,
    /// SDEdit at each of these strengths (comma-separated, each in [0, 1]).  [default: none]
    #[arg(long, value_delimiter = ',')]
    strengths: Vec<f64>,
    /// RePaint with this mask (white: fill) on every guide.  [default: none]
    #[arg(long)]
    mask: Option<PathBuf>,
    /// RePaint: levels per jump back up.
    #[arg(long, default_value_t = 10)]
    jump_length: usize,
    /// RePaint: passes through each jumped stretch (1: no resampling).
    #[arg(long, default_value_t = 1)]
    jump_n_sample: usize,
    /// Condition each edit on its guide's label (class-conditional models).  [default: unconditional]
    #[arg(long, default_value_t = false)]
    conditional: bool,
    /// Classifier-free guidance scale (with --conditional).
    #[arg(long, default_value_t = 1.0)]
    guidance: f64,
    /// Guides (the first images of the --guides split).
    #[arg(long, default_value_t = 1000)]
    num: usize,
    /// The split the guides come from: train (strength 0 then scores the data floor) or test (images no model was
    /// trained on; the reference is the test split either way).
    #[arg(long, default_value = "train", value_parser = ["train", "test"])]
    guides: String,
    /// Images per model batch.
    #[arg(long, default_value_t = 250)]
    batch: usize,
    /// Seed of the noise.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// The dataset folder (training split: guides; test split: reference).
    #[arg(long, default_value = "data/fashion-mnist")]
    data: PathBuf,
    /// The feature extractor's weights.
    #[arg(long, default_value = DEFAULT_CLASSIFIER)]
    classifier: PathBuf,
    /// Write the settings and one report per row as JSON to this file.  [default: none]
    #[arg(long)]
    json: Option<PathBuf>,
    /// A super-resolution stage (--checkpoint a run of diffuse train --super-resolution): the noise-augmentation
    /// levels to upsample at, one row each (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "1")]
    sr_levels: Vec<u32>,
}

/// One row of the table.
enum Row {
    Sdedit(f64),
    /// RePaint's settings and the known region.
    RePaint(RePaint, Tensor),
}

/// Root-mean-square difference of two image batches.
fn rms_distance(a: &Tensor, b: &Tensor) -> Result<f64, String> {
    let (a, b) = (
        a.to_vec().map_err(|e| e.to_string())?,
        b.to_vec().map_err(|e| e.to_string())?,
    );
    let sum: f64 = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (f64::from(*x) - f64::from(*y)).powi(2))
        .sum();
    Ok((sum / a.len().max(1) as f64).sqrt())
}

/// The classifier, the reference statistics and the first `--num` training images with their labels.
fn classifier_scorer_inputs(args: &EvalEditArgs) -> Result<(Scorer, Tensor, Vec<u32>), String> {
    let classifier = load_classifier(&args.classifier)?;
    let source = DataSource::Folder(args.data.clone());
    let train = load_split(&source, Split::Train, &classifier)?;
    let test = load_split(&source, Split::Test, &classifier)?;
    let scorer = Scorer::new(classifier, &test)?;
    let (guides, labels) = first_images(guide_split(args, &train, &test), args.num)?;
    let labels = labels.ok_or("the guides' split has no labels: accuracy needs them")?;
    Ok((scorer, guides, labels))
}

/// The split `--guides` names.
fn guide_split<'a, T>(args: &EvalEditArgs, train: &'a T, test: &'a T) -> &'a T {
    match args.guides.as_str() {
        "test" => test,
        _ => train,
    }
}

/// eval-edit on an image-conditioned run: a super-resolution stage against interpolation, or a trained inpainting
/// network on `--mask` ([`crate::edit_eval_conditioned`]).
fn run_conditioned(
    args: &EvalEditArgs,
    model: &Backbone,
    scheduler: &Scheduler,
    condition: ImageCondition,
    (scorer, guides, labels): &(Scorer, Tensor, Vec<u32>),
) -> Result<(), String> {
    if !args.strengths.is_empty() {
        return Err(format!(
            "--strengths: {} is image-conditioned; SDEdit is measured on a plain denoiser",
            args.checkpoint.display()
        ));
    }
    let rows = ConditionedEval {
        model,
        checkpoint: &args.checkpoint,
        scheduler,
        condition,
        guides,
        labels,
        scorer,
        mask: args.mask.as_deref(),
        sr_levels: &args.sr_levels,
        conditional: args.conditional,
        guidance: args.guidance,
        batch: args.batch,
        seed: args.seed,
    }
    .run()?;
    println!("| method | PSNR (dB) | SSIM | FD | accuracy (guide's label) | precision | recall |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    for row in &rows {
        println!(
            "| {} | {:.2} | {:.4} | {:.3} | {:.3} | {:.3} | {:.3} |",
            row.name,
            row.psnr,
            row.ssim,
            row.report.fd_fashion_classifier,
            row.report.accuracy.unwrap_or(f64::NAN),
            row.report.precision,
            row.report.recall
        );
    }
    if let Some(path) = &args.json {
        let value = json!({
            "checkpoint": args.checkpoint,
            "sampler": scheduler.sampler.class_name(),
            "steps": scheduler.options.steps,
            "guides": guides.shape()[0],
            "guide_split": args.guides,
            "rows": rows.iter().map(|row| json!({
                "method": row.name, "psnr": row.psnr, "ssim": row.ssim, "report": row.report,
            })).collect::<Vec<_>>(),
        });
        let text = serde_json::to_string_pretty(&value).map_err(|e| e.to_string())?;
        crate::files::write_atomically(path, text.as_bytes())
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}

pub fn run(args: &EvalEditArgs) -> Result<(), String> {
    if args.num < 2 || args.batch == 0 {
        return Err(format!(
            "--num must be at least 2 (got {}) and --batch at least 1 (got {})",
            args.num, args.batch
        ));
    }
    for &s in &args.strengths {
        check_strength(s).map_err(|e| format!("--strengths: {e}"))?;
    }
    let device = args.device.resolve()?;
    let classifier = load_classifier(&args.classifier)?;
    let folder = open_folder(&args.checkpoint, Weights::Ema)?;
    let model_dir = &folder.pipeline.denoiser;
    let (model, _store) = Backbone::load_diffusers(model_dir, device)
        .map_err(|e| format!("{}: {e}", model_dir.display()))?;
    let decoder = decoder_for(model_dir, device)?;
    if let Some(decoder) = &decoder {
        check_decodes(decoder, &model.config())?;
    }
    let (sampler, _) = folder.sampler(&model.config(), &args.sampling, &args.score)?;
    let AnySampler::Discrete(scheduler) = sampler else {
        return Err("editing runs a discrete-time sampler; pick one with --sampler".into());
    };
    if let Some(condition) = image_condition_of(&folder)? {
        return run_conditioned(
            args,
            &model,
            &scheduler,
            condition,
            &classifier_scorer_inputs(args)?,
        );
    }
    if args.strengths.is_empty() && args.mask.is_none() {
        return Err(
            "give --strengths (SDEdit), --mask (RePaint) or both: nothing to measure".into(),
        );
    }
    let null_class = model.config().num_class_embeds().map(|n| n as u32 - 1);
    if args.guidance != 1.0 && !(args.conditional && null_class.is_some()) {
        return Err(
            "--guidance other than 1 needs --conditional and a class-conditional model".into(),
        );
    }
    let source = DataSource::Folder(args.data.clone());
    let train = load_split(&source, Split::Train, &classifier)?;
    let test = load_split(&source, Split::Test, &classifier)?;
    let scorer = Scorer::new(classifier, &test)?;
    let (guides, labels) = first_images(guide_split(args, &train, &test), args.num)?;
    let num = guides.shape()[0];
    let labels = labels.ok_or("the guides' split has no labels: accuracy needs them")?;
    let classes_of = |range: std::ops::Range<usize>| -> Option<Vec<u32>> {
        null_class.map(|null| match args.conditional {
            true => labels[range].to_vec(),
            false => vec![null; range.len()],
        })
    };

    let mut rows: Vec<Row> = args.strengths.iter().map(|&s| Row::Sdedit(s)).collect();
    if let Some(path) = &args.mask {
        let settings = RePaint {
            jump_length: args.jump_length,
            jump_n_sample: args.jump_n_sample,
            eta: 1.0,
        };
        rows.push(Row::RePaint(settings, read_mask(path, guides.shape())?));
    }
    let mut reports: Vec<(String, f64, EvalReport)> = Vec::new();
    for row in &rows {
        let name = match row {
            Row::Sdedit(strength) => {
                report_start(&Sdedit {
                    sampler: &scheduler.sampler,
                    schedule: &scheduler.schedule,
                    options: &scheduler.options,
                    strength: *strength,
                })?;
                format!("SDEdit, strength {strength}")
            }
            Row::RePaint(settings, _) => format!(
                "RePaint, jumps of {} levels × {} passes",
                settings.jump_length, settings.jump_n_sample
            ),
        };
        let request = |images: Tensor| match row {
            Row::Sdedit(strength) => EditRequest::Sdedit {
                images,
                strength: *strength,
            },
            Row::RePaint(settings, known) => EditRequest::RePaint {
                images,
                known: known.clone(),
                settings: *settings,
            },
        };
        let mut parts = Vec::new();
        for start in (0..num).step_by(args.batch) {
            let count = args.batch.min(num - start);
            let images = guides
                .narrow(0, start, count)
                .and_then(|t| t.contiguous())
                .map_err(|e| e.to_string())?;
            let mut scheduler = scheduler.as_ref().clone();
            scheduler.options.seed = args.seed.wrapping_add(start as u64);
            let edited = EditRun {
                model: &model,
                scheduler: &scheduler,
                decoder: decoder.as_ref(),
                count: 1,
                classes: classes_of(start..start + count),
                null_class,
                guidance: args.guidance,
                seed: scheduler.options.seed,
                report: false,
            }
            .run(&request(images))?;
            parts.push(
                edited
                    .images
                    .to_device(Device::Cpu)
                    .map_err(|e| e.to_string())?,
            );
        }
        let refs: Vec<&Tensor> = parts.iter().collect();
        let edited = Tensor::concat(&refs, 0).map_err(|e| e.to_string())?;
        let distance = rms_distance(&edited, &guides)?;
        let report = evaluate_samples(
            &scorer.classifier,
            &edited,
            Some(&labels),
            &scorer.reference,
        )
        .map_err(|e| e.to_string())?;
        eprintln!(
            "{name}: RMS distance to the guides {distance:.4}, FD {:.3}, accuracy {:.3}",
            report.fd_fashion_classifier,
            report.accuracy.unwrap_or(f64::NAN)
        );
        reports.push((name, distance, report));
    }

    println!(
        "| edit | RMS distance to guide | FD | accuracy (guide's label) | precision | recall |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    for (name, distance, report) in &reports {
        println!(
            "| {name} | {distance:.4} | {:.3} | {:.3} | {:.3} | {:.3} |",
            report.fd_fashion_classifier,
            report.accuracy.unwrap_or(f64::NAN),
            report.precision,
            report.recall
        );
    }
    if let Some(path) = &args.json {
        let value = json!({
            "checkpoint": args.checkpoint,
            "sampler": scheduler.sampler.class_name(),
            "steps": scheduler.options.steps,
            "guides": num,
            "guide_split": args.guides,
            "conditional": args.conditional,
            "guidance": args.guidance,
            "rows": reports.iter().map(|(name, distance, report)| json!({
                "edit": name, "rms_distance": distance, "report": report,
            })).collect::<Vec<_>>(),
        });
        let text = serde_json::to_string_pretty(&value).map_err(|e| e.to_string())?;
        crate::files::write_atomically(path, text.as_bytes())
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}
