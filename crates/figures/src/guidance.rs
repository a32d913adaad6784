//! Classifier-free guidance on a trained class-conditional model: one row of samples per guidance scale (one column
//! per class, the same starting noise in every row, so the rows differ only in w), and the scores of `--num` samples
//! per scale (FD, class accuracy, precision and recall in the shipped classifier's feature space, as
//! `diffuse eval` computes them). The sampler is DPM-Solver++(2M) on the Karras ramp with x̂₀ clipped to [−1, 1].

use diffuse_diffusion::data::{Dataset, Split};
use diffuse_diffusion::eval::{
    evaluate_samples, ClassifierConfig, ImageClassifier, ReferenceFeatures,
};
use diffuse_diffusion::sampler::{
    ClassifierFreeGuidance, Condition, Denoiser, DpmSolver, Sampler, SamplerOptions, SigmaRange,
    SigmaSchedule, SigmaSpacing,
};
use diffuse_diffusion::schedule::{NoiseSchedule, SchedulerConfig, TimestepSpacing};
use diffuse_diffusion::train::target::prediction_of;
use diffuse_diffusion::train::{latest_checkpoint, ModelDenoiser};
use diffuse_models::Backbone;
use diffuse_plot::{Axis, Chart, Figure, ImageGrid, Legend, Panel, RgbImage, Series};
use diffuse_tensor::{Device, Tensor};
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct GuidanceArgs {
    /// A training run (its latest checkpoint's EMA weights) or a step-N checkpoint.
    #[arg(long)]
    checkpoint: PathBuf,
    /// The guidance scales w (diffuse's convention: 1 = the conditional model, 0 = the unconditional one).
    #[arg(long, value_delimiter = ',', default_value = "0,1,2,3,5,8")]
    scales: Vec<f64>,
    /// Sampling steps.
    #[arg(long, default_value_t = 20)]
    steps: usize,
    /// Samples scored per scale (classes in turn).
    #[arg(long, default_value_t = 500)]
    num: usize,
    /// The data folder whose test split is the reference set.
    #[arg(long, default_value = "data/fashion-mnist")]
    data: PathBuf,
    #[arg(long, default_value = "data/classifier/fashion-classifier.safetensors")]
    classifier: PathBuf,
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

/// The EMA model of the checkpoint, its schedule and its prediction target.
fn load(checkpoint: &Path) -> Result<(Backbone, NoiseSchedule, ModelPrediction), String> {
    let step = if checkpoint.join("latest").is_file() {
        latest_checkpoint(checkpoint).map_err(|e| e.to_string())?
    } else {
        checkpoint.to_path_buf()
    };
    let (model, _store) = Backbone::load_diffusers(&step.join("ema"), Device::Cpu)
        .map_err(|e| format!("{}: {e}", step.display()))?;
    let config = SchedulerConfig::from_file(&step.join("scheduler/scheduler_config.json"))
        .map_err(|e| e.to_string())?;
    let schedule = NoiseSchedule::from_config(&config).map_err(|e| e.to_string())?;
    Ok((model, schedule, prediction_of(config.prediction_type)))
}

type ModelPrediction = diffuse_diffusion::train::Prediction;

/// `classes.len()` samples of `model` at guidance `scale`, sample i of class `classes[i]` from the noise of
/// `(seed, i)`.
fn sample(
    model: &Backbone,
    prediction: ModelPrediction,
    schedule: &NoiseSchedule,
    null_class: u32,
    scale: f64,
    classes: &[u32],
    args: &GuidanceArgs,
) -> Result<Tensor, String> {
    let plain = ModelDenoiser { model, prediction };
    let guided = ClassifierFreeGuidance {
        model: &plain,
        scale,
        null_class: Some(null_class),
        null_context: None,
    };
    let denoiser: &dyn Denoiser = &guided;
    let config = model.config();
    let (h, w) = config.sample_size().unwrap_or((28, 28));
    // diffuse's grid setting: trailing timesteps, the Karras ramp over the training range, x̂0 clipped to ±1.
    let options = SamplerOptions {
        steps: args.steps,
        seed: args.seed,
        spacing: TimestepSpacing::Trailing,
        sigmas: SigmaSchedule {
            spacing: SigmaSpacing::Karras,
            range: SigmaRange::Training,
            ..SigmaSchedule::default()
        },
        clip_sample_range: Some(1.0),
        ..SamplerOptions::default()
    };
    Sampler::DpmSolver(DpmSolver::default())
        .sample(
            denoiser,
            schedule,
            &options,
            &[classes.len(), config.in_channels(), h, w],
            Device::Cpu,
            Condition::class(classes),
        )
        .map_err(|e| e.to_string())
}

pub fn draw(args: &GuidanceArgs, out: &Path) -> Result<(), String> {
    let (model, schedule, prediction) = load(&args.checkpoint)?;
    let config = model.config();
    let embeddings = config.num_class_embeds().ok_or(
        "the model is not class-conditional: guidance needs class labels and a null class",
    )?;
    let (classes, null_class) = (embeddings as u32 - 1, embeddings as u32 - 1);
    let channels = config.in_channels();
    let (h, w) = config.sample_size().unwrap_or((28, 28));
    let row: Vec<u32> = (0..classes).collect();
    let mut images = Vec::new();
    for &scale in &args.scales {
        let x = sample(&model, prediction, &schedule, null_class, scale, &row, args)?;
        let values = x.to_vec().map_err(|e| e.to_string())?;
        for image in values.chunks_exact(channels * h * w) {
            images.push(RgbImage::from_signed_unit(channels, h, w, image)?);
        }
        eprintln!("guidance {scale}: grid row done");
    }
    let grid = ImageGrid {
        title: format!(
            "Classifier-free guidance: the same noise at each scale ({} steps)",
            args.steps
        ),
        images,
        columns: row.len(),
        row_labels: args.scales.iter().map(|w| format!("w = {w}")).collect(),
        column_labels: row.iter().map(|c| format!("class {c}")).collect(),
    };
    let height = 90 + 90 * args.scales.len() as u32;
    crate::save(
        &Figure {
            width: 1100,
            height,
            panels: vec![(Panel::Images(grid), 1.0)],
        },
        out,
        "guidance-grid.png",
    )?;

    let classifier = ImageClassifier::load(
        &args.classifier,
        ClassifierConfig::fashion_mnist(),
        Device::Cpu,
    )
    .map_err(|e| format!("{}: {e}", args.classifier.display()))?;
    let test = Dataset::load(&args.data, Split::Test)
        .map_err(|e| format!("{}: {e}", args.data.display()))?;
    let reference_images = Tensor::from_slice(
        &test.images,
        &[test.len(), test.channels, test.height, test.width],
        Device::Cpu,
    )
    .map_err(|e| e.to_string())?;
    let reference = ReferenceFeatures::from_images(&classifier, &reference_images)
        .map_err(|e| e.to_string())?;
    let labels: Vec<u32> = (0..args.num).map(|i| i as u32 % classes).collect();
    let (mut fd, mut accuracy, mut precision, mut recall) = (vec![], vec![], vec![], vec![]);
    for &scale in &args.scales {
        let samples = sample(
            &model, prediction, &schedule, null_class, scale, &labels, args,
        )?;
        let report = evaluate_samples(&classifier, &samples, Some(&labels), &reference)
            .map_err(|e| e.to_string())?;
        eprintln!(
            "guidance {scale}: FD {:.2}, accuracy {:?}, precision {:.3}, recall {:.3}",
            report.fd_fashion_classifier, report.accuracy, report.precision, report.recall
        );
        fd.push((scale, report.fd_fashion_classifier));
        accuracy.push((scale, report.accuracy.unwrap_or(f64::NAN)));
        precision.push((scale, report.precision));
        recall.push((scale, report.recall));
    }
    let fd_chart = Chart::new(
        format!("FD against guidance ({} samples)", args.num),
        Axis::linear("guidance scale w"),
        Axis::linear("FD (classifier features)"),
    )
    .with(Series::line_markers("FD", fd));
    let shares = Chart::new(
        "Fidelity against diversity",
        Axis::linear("guidance scale w"),
        Axis::linear("share").range(0.0, 1.0),
    )
    .with(Series::line_markers("class accuracy", accuracy))
    .with(Series::line_markers("precision", precision))
    .with(Series::line_markers("recall", recall))
    .legend(Legend::LowerLeft);
    crate::save(
        &Figure {
            width: 1300,
            height: 560,
            panels: vec![(Panel::Row(vec![fd_chart, shares]), 1.0)],
        },
        out,
        "guidance-metrics.png",
    )
}
