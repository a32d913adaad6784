//! `diffuse eval`: scores a trained U-Net by drawing `--num` samples and comparing them with the test set in the
//! feature space of a classifier — the shipped Fashion-MNIST one, or with `--classifier DIR` one `diffuse classifier
//! train` fitted to another dataset — (Fréchet distance, class accuracy of conditional samples, Inception-style
//! score, precision and recall with k = 3 nearest-neighbour radii), optionally with the variational bound in bits per dimension on
//! test images and with the floor (the same metrics for real training images). `--sweep-steps` repeats the
//! sampling for several step counts and samplers, and plots FD against steps. A text-to-image model is scored on
//! `--prompts` instead ([`crate::prompt_eval`]: prompt and attribute adherence, CLIP score, FD).
//!
//! Every run (sampler, steps) starts sample batch `b` from the same noise: batch seeds are the successive outputs of
//! `SplitMix64::new(--seed)`, so the rows of a sweep differ only in how they integrate, not in their starting points.

use crate::cascade::{check_sr_steps, stage_sampling, Upscaler};
use crate::datasets::{DataSource, SHIPPED_DATA};
use crate::device::DeviceArgs;
use crate::eval_table::{print_report, print_sweep};
use crate::latent::{check_decodes, decoder_for, LatentDecoder};
use crate::nll::{ode_bits_per_dim, NllArgs, NllMethod};
use crate::numbers::finite_f64;
use crate::plots::save_fd_sweep;
use crate::prompt::TextEncoder;
use crate::prompt_eval::{PromptEvalArgs, PromptSampling};
use crate::sample::{open_folder, Folder};
use crate::sampling::{SamplerArgs, DEFAULT_STEPS};
use crate::score::{AnySampler, ScoreArgs, ScoreView, SCORE_SAMPLERS};
use crate::scoring::{
    check_image_shape, first_images, load_classifier, load_split, SampleModel, Sampling, Scorer,
    DEFAULT_CLASSIFIER, SAMPLE_BATCH,
};
use clap::Args;
use diffuse_diffusion::data::{Dataset, Split};
use diffuse_diffusion::eval::{
    evaluate_samples, variational_bound, BoundOptions, BpdSummary, EvalReport, ImageClassifier,
};
use diffuse_diffusion::pipeline::Weights;
use diffuse_diffusion::sampler::named;
use diffuse_diffusion::schedule::NoiseSchedule;
use diffuse_diffusion::sde::OdeLikelihood;
use diffuse_diffusion::train::ModelDenoiser;
use diffuse_models::Backbone;
use diffuse_nn::ParamStore;
use diffuse_plot::Curve;
use diffuse_tensor::Device;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// A diffusers pipeline folder, a model folder, a training run (its latest checkpoint) or a step-N checkpoint.
    #[arg(long)]
    checkpoint: PathBuf,
    /// Which weights of a checkpoint to sample: the EMA weights or the raw model weights.
    #[arg(long, default_value = "ema", value_parser = ["ema", "model"])]
    weights: String,
    #[command(flatten)]
    sampling: SamplerArgs,
    #[command(flatten)]
    score: ScoreArgs,
    #[command(flatten)]
    nll: NllArgs,
    /// Classifier-free guidance scale (1: plain conditional; needs a class-conditional model otherwise).
    #[arg(long, value_parser = finite_f64, default_value_t = 1.0)]
    guidance: f64,
    #[command(flatten)]
    device: DeviceArgs,
    /// Samples to generate (a class-conditional model cycles through its classes: 0, 1, …, 9, 0, …).
    #[arg(long, default_value_t = 10_000)]
    num: usize,
    /// Samples per model batch.
    #[arg(long, default_value_t = SAMPLE_BATCH)]
    batch: usize,
    /// Seed of the starting noise and of the stochastic samplers' noise.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// The dataset whose test split is the reference set (and whose training split gives --floor): a folder, or
    /// `fashion-mnist`, the shipped subset compiled into the binary.
    #[arg(long, default_value = SHIPPED_DATA)]
    data: String,
    /// The feature extractor: a classifier folder written by `diffuse classifier train` (for images other than
    /// Fashion-MNIST's), or a Fashion-MNIST weights file (the default path is the shipped classifier, compiled in).
    #[arg(long, default_value = DEFAULT_CLASSIFIER)]
    classifier: PathBuf,
    /// Compute bits/dim on the first N test images (0: skip) by --nll: the variational bound (each image costs as
    /// many model evaluations as the schedule has timesteps) and/or the probability-flow ODE.
    #[arg(long, default_value_t = 0)]
    bpd: usize,
    /// Write the settings and the report (a list of them with --sweep-steps) as JSON to this file.  [default: none]
    #[arg(long)]
    json: Option<PathBuf>,
    /// Evaluate at each of these step counts (comma-separated), for each of --samplers, instead of --steps once.
    /// [default: none]
    #[arg(long, value_delimiter = ',')]
    sweep_steps: Vec<usize>,
    /// The samplers of a sweep (comma-separated), or `all` for the twelve of docs/samplers.md (the three score
    /// samplers for a score-SDE model).  [default: --sampler]
    #[arg(long, value_delimiter = ',', requires = "sweep_steps")]
    samplers: Vec<String>,
    /// The PNG of FD against steps of a sweep.  [default: the --json file with extension .png, else sweep.png]
    #[arg(long, requires = "sweep_steps")]
    plot: Option<PathBuf>,
    /// Also evaluate the floor: the first --num training images of --data scored as samples against the test set.
    #[arg(long)]
    floor: bool,
    #[command(flatten)]
    prompts: PromptEvalArgs,
    /// Score a cascade: upsample every batch of samples with this super-resolution stage (a run of diffuse train
    /// --super-resolution) before scoring, as diffuse sample --upscale does.  [default: none]
    #[arg(long, value_name = "SR_RUN")]
    upscale: Option<PathBuf>,
    /// The noise-conditioning augmentation level of --upscale.
    #[arg(long, default_value_t = 1)]
    sr_level: u32,
    /// Denoising steps of the --upscale stage.  [default: --steps]
    #[arg(long)]
    sr_steps: Option<usize>,
}

/// A loaded model and how to sample it.
struct Model {
    unet: Backbone,
    /// Its parameters (frozen for the ODE likelihood, which differentiates with respect to the input only).
    store: ParamStore,
    /// The folder, with its own scheduler (before `--sampler` and the other sampler options).
    folder: Folder,
    /// The model as a score model, or why it is not one.
    score: Result<ScoreView, String>,
    /// The classes of a class-conditional model (its null class is the last embedding).
    num_classes: Option<u32>,
    /// The N of the `step-N` checkpoint the weights come from, when they do.
    step: Option<u64>,
    /// The autoencoder of a latent model.
    decoder: Option<LatentDecoder>,
    /// The super-resolution stage of a cascade.
    upscaler: Option<Upscaler>,
}

fn load_model(
    args: &EvalArgs,
    classifier: &ImageClassifier,
    device: Device,
) -> Result<Model, String> {
    let weights = if args.weights == "ema" {
        Weights::Ema
    } else {
        Weights::Model
    };
    let folder = open_folder(&args.checkpoint, weights)?;
    let model_dir = &folder.pipeline.denoiser;
    let (unet, store) = Backbone::load_diffusers(model_dir, device)
        .map_err(|e| format!("{}: {e}", model_dir.display()))?;
    let config = unet.config();
    let (h, w) = config.sample_size().unwrap_or((28, 28));
    let decoder = decoder_for(model_dir, device)?;
    let samples = match &decoder {
        Some(decoder) => {
            check_decodes(decoder, &config)?;
            decoder.image_shape((h, w))
        }
        None => (config.in_channels(), h, w),
    };
    check_sr_steps(args.upscale.as_deref(), args.sr_steps)?;
    let stage_args = stage_sampling(&args.sampling, args.sr_steps);
    let upscaler = args
        .upscale
        .as_deref()
        .map(|stage| Upscaler::load(stage, &stage_args, args.sr_level, device))
        .transpose()?;
    let samples = match &upscaler {
        Some(upscaler) => {
            let high = upscaler.high()?;
            (samples.0, high, high)
        }
        None => samples,
    };
    check_image_shape(
        classifier,
        &format!("{} (its samples)", model_dir.display()),
        samples,
    )?;
    let step = model_dir
        .ancestors()
        .find_map(|p| p.file_name()?.to_str()?.strip_prefix("step-")?.parse().ok());
    Ok(Model {
        num_classes: config.num_class_embeds().map(|n| n as u32 - 1),
        score: ScoreView::of_checkpoint(&config, &folder.config),
        folder,
        store,
        unet,
        step,
        decoder,
        upscaler,
    })
}

impl Model {
    /// The view of it that sampling and scoring take.
    fn sample_model(&self) -> SampleModel<'_> {
        SampleModel {
            unet: &self.unet,
            null_class: self.num_classes,
            score: &self.score,
            decoder: self.decoder.as_ref(),
            upscale: self.upscaler.as_ref(),
        }
    }

    /// Whether it is a score-SDE model, which only the score samplers serve.
    fn is_score_sde(&self) -> bool {
        self.folder.scheduler.is_none()
    }
}

/// The sampler of one evaluation: the sampler options with `sampler` (when given) and `steps`.
fn sampler_for(
    args: &EvalArgs,
    model: &Model,
    sampler: Option<&str>,
    steps: usize,
) -> Result<AnySampler, String> {
    let mut sampling = args.sampling.clone();
    if let Some(name) = sampler {
        sampling.sampler = Some(name.to_string());
    }
    sampling.steps = Some(steps);
    let (sampler, _) = model
        .folder
        .sampler(&model.unet.config(), &sampling, &args.score)?;
    Ok(sampler)
}

/// Draws `args.num` samples with `sampler`, `args.batch` at a time, behind a progress bar, and scores them; with a
/// score sampler, also the model evaluations per batch.
fn evaluate(
    args: &EvalArgs,
    model: &Model,
    scorer: &Scorer,
    sampler: &AnySampler,
) -> Result<(EvalReport, Option<f64>), String> {
    let sampling = Sampling {
        sampler: sampler.clone(),
        guidance: args.guidance,
        num: args.num,
        batch: args.batch,
        seed: args.seed,
    };
    let bar = ProgressBar::new(args.num as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} samples ETA {eta}")
            .map_err(|e| e.to_string())?,
    );
    let report = scorer.evaluate(&model.sample_model(), &sampling, &bar);
    bar.finish_and_clear();
    report
}

/// Bits/dim on the first `args.bpd` test images (with their labels for a conditional model): the variational
/// bound and/or the probability-flow ODE's likelihood, as `--nll` asks.
fn bits_per_dim(
    args: &EvalArgs,
    model: &Model,
    test: &Dataset,
) -> Result<(Option<BpdSummary>, Option<OdeLikelihood>), String> {
    if let Some(decoder) = &model.decoder {
        return Err(format!(
            "--bpd bounds the likelihood of pixels, but this model generates latents of {}: its bound would be in \
             bits per latent dimension, not comparable; pass --bpd 0",
            decoder.dir.display()
        ));
    }
    let (images, labels) = first_images(test, args.bpd)?;
    if model.num_classes.is_some() && labels.is_none() {
        return Err(format!(
            "--bpd on a class-conditional model needs the test images' labels, and {} has none \
             (t10k-labels-idx1-ubyte[.gz] beside IDX images; class sub-folders or a labels.txt in an image folder's \
             test/); pass --bpd 0 to skip the bound",
            args.data
        ));
    }
    let n = images.shape()[0];
    let vlb = match (&model.folder.scheduler, args.nll.nll) {
        (_, NllMethod::Ode) => None,
        (None, _) => {
            return Err(
                "the variational bound needs a discrete schedule, and this is a score-SDE model; use --nll ode"
                    .into(),
            )
        }
        (Some(scheduler), _) => {
            // The training schedule in f64, as training defines it.
            let schedule = NoiseSchedule::from_config(&scheduler.schedule_config)
                .map_err(|e| e.to_string())?;
            eprintln!(
                "bits/dim (variational bound) on {n} test images ({} model evaluations each)",
                schedule.len()
            );
            let denoiser = ModelDenoiser {
                model: &model.unet,
                prediction: scheduler.prediction(),
            };
            let bound = variational_bound(
                &denoiser,
                &schedule,
                &images,
                labels.as_deref(),
                &BoundOptions {
                    seed: args.seed,
                    ..BoundOptions::default()
                },
            )
            .map_err(|e| e.to_string())?;
            Some(BpdSummary::from(&bound))
        }
    };
    let ode = if args.nll.nll == NllMethod::Vlb {
        None
    } else {
        let view = model
            .score
            .as_ref()
            .map_err(|e| format!("--nll ode: {e}"))?;
        eprintln!(
            "bits/dim (probability-flow ODE, {} {:?} probe(s) per image) on {n} test images",
            args.nll.probes, args.nll.probe
        );
        model.store.freeze("").map_err(|e| e.to_string())?;
        let result = ode_bits_per_dim(
            &model.unet,
            view,
            &images,
            labels.as_deref(),
            &args.nll,
            &args.score,
            args.seed,
        )?;
        Some(result)
    };
    Ok((vlb, ode))
}

/// The settings of one row, as recorded in the JSON.
fn settings(args: &EvalArgs, model: &Model, sampler: &AnySampler) -> Value {
    let settings = match sampler {
        AnySampler::Discrete(scheduler) => scheduler.settings(),
        AnySampler::Score(score) => vec![("score".to_string(), format!("{:?}", score.args))],
        AnySampler::Consistency(sampler) => sampler.settings(),
    };
    let sampler_settings: serde_json::Map<String, Value> =
        settings
            .into_iter()
            .fold(serde_json::Map::new(), |mut map, (key, value)| {
                // Repeated keys (ignored settings, notes) are joined.
                match map.get_mut(&key) {
                    Some(Value::String(s)) => {
                        s.push_str("; ");
                        s.push_str(&value);
                    }
                    _ => {
                        map.insert(key, Value::String(value));
                    }
                }
                map
            });
    json!({
        "checkpoint": args.checkpoint,
        "checkpoint_step": model.step,
        "weights": args.weights,
        "sampler": sampler.label(),
        "steps": sampler.steps(),
        "sampler_settings": sampler_settings,
        "guidance": args.guidance,
        "num": args.num,
        "batch": args.batch,
        "seed": args.seed,
        "data": args.data,
        "classifier": args.classifier,
        "bpd_images": args.bpd,
        "nll": format!("{:?}", args.nll.nll).to_lowercase(),
    })
}

fn write_json(path: &Path, value: &Value) -> Result<(), String> {
    let text = serde_json::to_string_pretty(value).map_err(|e| e.to_string())?;
    crate::files::write_atomically(path, text.as_bytes())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Plots FD against steps, one curve per sampler in the order given (rows come sampler-major).
fn plot_sweep(args: &EvalArgs, rows: &[(String, usize, EvalReport)]) -> Result<(), String> {
    let mut curves: Vec<Curve> = Vec::new();
    for (sampler, steps, report) in rows {
        if curves.last().map(|c| c.name.as_str()) != Some(sampler.as_str()) {
            curves.push(Curve {
                name: sampler.clone(),
                points: Vec::new(),
            });
        }
        if let Some(curve) = curves.last_mut() {
            curve.points.push((*steps, report.fd_fashion_classifier));
        }
    }
    for curve in &mut curves {
        curve.points.sort_by_key(|p| p.0);
    }
    let plot = args.plot.clone().unwrap_or_else(|| {
        args.json
            .as_ref()
            .map_or(PathBuf::from("sweep.png"), |j| j.with_extension("png"))
    });
    save_fd_sweep(&curves, &plot)?;
    eprintln!("FD against steps in {}", plot.display());
    Ok(())
}

/// The test split of `source`, the reference set of FD and precision/recall; a folder without one is told where
/// to put held-out images.
fn reference_split(source: &DataSource, classifier: &ImageClassifier) -> Result<Dataset, String> {
    load_split(source, Split::Test, classifier).map_err(|e| match source {
        DataSource::Folder(dir) if !dir.join("test").exists() => format!(
            "{e}. diffuse eval compares samples with held-out images: put them in {test}/ (and the training images in \
             {train}/), labelled or not",
            test = dir.join("test").display(),
            train = dir.join("train").display(),
        ),
        _ => e,
    })
}

/// `--prompts` on a text-to-image model (see [`crate::prompt_eval`]).
fn run_prompts(
    args: &EvalArgs,
    model: &Model,
    classifier: ImageClassifier,
    device: Device,
) -> Result<(), String> {
    let checkpoint = args.checkpoint.display();
    let config = model.unet.config();
    let Some(given) = &args.prompts.prompts else {
        return Err(format!(
            "{checkpoint} is a text-to-image model: pass --prompts FILE (one prompt per line) or --prompts default"
        ));
    };
    let pipeline = &model.folder.pipeline;
    let (Some(tokenizer), Some(encoder), Some(_)) = (
        &pipeline.tokenizer,
        &pipeline.text_encoder,
        config.context_dim(),
    ) else {
        return Err(format!(
            "--prompts scores a text-to-image model (a StableDiffusionPipeline folder with tokenizer/ and \
             text_encoder/); {checkpoint} is a {} without them",
            config.class_name()
        ));
    };
    let per_prompt = args.prompts.per_prompt;
    if per_prompt == 0 {
        return Err("--per-prompt must be at least 1".into());
    }
    let text = TextEncoder::load(tokenizer, encoder, config.context_dim(), device)?;
    let prompts = crate::prompt_eval::read(given)?;
    let clip = args
        .prompts
        .clip_model
        .as_deref()
        .map(|dir| crate::prompt_eval::load_clip(dir, device))
        .transpose()?;
    let steps = args.sampling.steps.unwrap_or(DEFAULT_STEPS);
    let sampler = sampler_for(args, model, None, steps)?;
    let AnySampler::Discrete(scheduler) = &sampler else {
        return Err(format!(
            "--prompts samples with a discrete-time sampler; --sampler {} is not one",
            sampler.label()
        ));
    };
    let source = DataSource::named(&args.data)?;
    let test = reference_split(&source, &classifier)?;
    eprintln!("reference: {} test images of {source}", test.len());
    let scorer = Scorer::new(classifier, &test)?;
    eprintln!(
        "{}, {steps} steps, guidance {}: {} prompts × {per_prompt} samples",
        sampler.label(),
        args.guidance,
        prompts.len()
    );
    let sampling = PromptSampling {
        model: &model.unet,
        text: &text,
        decoder: model.decoder.as_ref(),
        scheduler,
        guidance: args.guidance,
        seed: args.seed,
    };
    let images = crate::prompt_eval::sample_prompts(&sampling, &prompts, per_prompt)?;
    let report = crate::prompt_eval::score(&scorer, clip.as_ref(), &images, &prompts, per_prompt)?;
    crate::prompt_eval::print(&report);
    if let Some(path) = &args.json {
        let mut settings = settings(args, model, &sampler);
        if let Some(map) = settings.as_object_mut() {
            // --num does not apply: --per-prompt samples of each prompt.
            map.remove("num");
        }
        settings["prompts"] = json!(given);
        settings["per_prompt"] = json!(per_prompt);
        settings["clip_model"] = json!(args.prompts.clip_model);
        write_json(
            path,
            &json!({ "settings": settings, "prompt_report": report }),
        )?;
    }
    Ok(())
}

pub fn run(args: &EvalArgs) -> Result<(), String> {
    if args.num < 2 || args.batch == 0 {
        return Err(format!(
            "--num must be at least 2 (got {}) and --batch at least 1 (got {})",
            args.num, args.batch
        ));
    }
    let device = args.device.resolve()?;
    let classifier = load_classifier(&args.classifier)?;
    let model = load_model(args, &classifier, device)?;
    if model.unet.config().context_dim().is_some() || args.prompts.prompts.is_some() {
        if model.upscaler.is_some() {
            return Err("--upscale scores a cascade of class-conditional or unconditional stages; leave it out \
                        with a text-to-image model or --prompts"
                .into());
        }
        return run_prompts(args, &model, classifier, device);
    }
    if model.upscaler.is_some() && args.bpd > 0 {
        return Err("--bpd scores the base model's likelihood; leave it out with --upscale".into());
    }
    if args.guidance != 1.0 && model.num_classes.is_none() {
        return Err("--guidance other than 1 needs a class-conditional model".into());
    }
    let source = DataSource::named(&args.data)?;
    let test = reference_split(&source, &classifier)?;
    eprintln!("reference: {} test images of {source}", test.len());
    let scorer = Scorer::new(classifier, &test)?;
    let classes = scorer.classifier.config().num_classes;
    if model.num_classes.is_none() {
        eprintln!(
            "the model is unconditional: FD, IS-style score and precision/recall are scored; accuracy, which needs \
             samples drawn for requested classes, is not"
        );
    }
    if let Some(n) = model
        .num_classes
        .filter(|_| !model.sample_model().scores_accuracy(&scorer.classifier))
    {
        eprintln!(
            "the model has {n} classes, not the classifier's {classes}: accuracy is not scored"
        );
    }

    let samplers: Vec<Option<String>> = if args.sweep_steps.is_empty() || args.samplers.is_empty() {
        vec![args.sampling.sampler.clone()]
    } else {
        let all: Vec<&str> = match model.is_score_sde() {
            true => SCORE_SAMPLERS.to_vec(),
            false => named::ALL.to_vec(),
        };
        args.samplers
            .iter()
            .flat_map(|s| match s.as_str() {
                "all" => all.iter().map(|n| Some(n.to_string())).collect(),
                name => vec![Some(name.to_string())],
            })
            .collect()
    };
    let step_counts = if args.sweep_steps.is_empty() {
        vec![args.sampling.steps.unwrap_or(DEFAULT_STEPS)]
    } else {
        args.sweep_steps.clone()
    };
    // Resolve every row before any sampling (and the bound), so that a bad name or setting, or a discrete-time
    // sampler for a score model, fails at once.
    let mut runs = Vec::new();
    for sampler in &samplers {
        for &steps in &step_counts {
            let sampler = sampler_for(args, &model, sampler.as_deref(), steps)?;
            let name = sampler.label();
            if let AnySampler::Discrete(scheduler) = &sampler {
                scheduler
                    .sampler
                    .model_timesteps(&scheduler.schedule, &scheduler.options)
                    .map_err(|e| format!("{name}, {steps} steps: {e}"))?;
            }
            runs.push((name, sampler));
        }
    }

    let (bpd, ode_bpd) = if args.bpd > 0 {
        bits_per_dim(args, &model, &test)?
    } else {
        (None, None)
    };
    if let Some(ode) = &ode_bpd {
        eprintln!(
            "bits/dim (probability-flow ODE): {:.4} ± {:.4} over {} images, {:.0} model evaluations per solve",
            ode.mean,
            ode.std_error,
            ode.per_image.len(),
            ode.nfe as f64 / ode.solves as f64
        );
    }
    let floor = if args.floor {
        let train = load_split(&source, Split::Train, &scorer.classifier)?;
        let (images, labels) = first_images(&train, args.num)?;
        let labels = labels.filter(|_| train.num_classes <= classes);
        Some(
            evaluate_samples(
                &scorer.classifier,
                &images,
                labels.as_deref(),
                &scorer.reference,
            )
            .map_err(|e| e.to_string())?,
        )
    } else {
        None
    };

    let mut rows = Vec::with_capacity(runs.len());
    let mut samplers = Vec::with_capacity(runs.len());
    let mut evaluations = Vec::with_capacity(runs.len());
    for (name, sampler) in runs {
        let steps = sampler.steps();
        eprintln!("{name}, {steps} steps: {} samples", args.num);
        let (mut report, nfe) = evaluate(args, &model, &scorer, &sampler)?;
        if let Some(nfe) = nfe {
            eprintln!(
                "{name}: {nfe:.1} model evaluations per batch of {}",
                args.batch
            );
        }
        report.bpd = bpd;
        rows.push((name, steps, report));
        samplers.push(sampler);
        evaluations.push(nfe);
    }

    let record = |i: usize| {
        json!({
            "settings": settings(args, &model, &samplers[i]),
            "report": rows[i].2,
            "model_evaluations_per_batch": evaluations[i],
            "ode_bpd": ode_bpd,
            "floor": floor,
        })
    };
    let checkpoint = args.checkpoint.display();
    if args.sweep_steps.is_empty() {
        print_report(&rows[0].2, floor.as_ref());
        if let Some(path) = &args.json {
            write_json(path, &record(0))?;
        }
        eprintln!(
            "next: diffuse eval --checkpoint {checkpoint} --sweep-steps 5,10,20,50 --samplers all   (FD against \
             sampling steps for every sampler, plotted)"
        );
        return Ok(());
    }
    print_sweep(&rows, floor.as_ref());
    if let Some(path) = &args.json {
        write_json(path, &Value::Array((0..rows.len()).map(record).collect()))?;
    }
    plot_sweep(args, &rows)?;
    eprintln!(
        "next: diffuse sample --checkpoint {checkpoint} --sampler NAME --steps N --out grid.png   (with the \
         sampler and steps the sweep favours)"
    );
    Ok(())
}
