//! Sample grids from a denoising network: one row per class (or plain rows for an unconditional model), drawn with one of the
//! library's samplers and, for `guidance ≠ 1`, classifier-free guidance around the null class.

use diffuse_diffusion::sampler::{
    ClassifierFreeGuidance, Condition, Denoiser, DynamicThreshold, Sampler, SamplerOptions,
    Scheduler, SigmaRange, SigmaSchedule, SigmaSpacing,
};
use diffuse_diffusion::schedule::NoiseSchedule;
use diffuse_diffusion::schedule::TimestepSpacing;
use diffuse_diffusion::train::{ModelDenoiser, Prediction};
use diffuse_models::Backbone;
use diffuse_tensor::Tensor;

/// The sampler a command-line name stands for.
pub fn sampler_named(name: &str) -> Result<Sampler, String> {
    Scheduler::named(name)
        .map(|s| s.sampler)
        .map_err(|e| e.to_string())
}

/// What to draw.
pub struct GridRequest<'a> {
    pub sampler: Sampler,
    pub steps: usize,
    pub seed: u64,
    /// The class of each sample (`None`: unconditional).
    pub classes: Option<&'a [u32]>,
    pub count: usize,
    pub guidance: f64,
    pub null_class: Option<u32>,
    /// Dynamic thresholding of the predicted x0 instead of clipping it to [−1, 1].
    pub threshold: Option<DynamicThreshold>,
}

/// Dynamic thresholding on the command line (`diffuse sample` and `diffuse eval`).
#[derive(clap::Args, Clone, Debug)]
pub struct ThresholdArgs {
    /// Dynamic thresholding (Imagen): scale each predicted x0 back into [−1, 1] by this quantile of |x0| (0.995 in
    /// Imagen and diffusers) instead of clipping it there.  [default: none: clip to [−1, 1]]
    #[arg(long, value_name = "RATIO")]
    pub dynamic_threshold: Option<f64>,
    /// The largest threshold dynamic thresholding may use (diffusers' sample_max_value).  [default: none: no cap]
    #[arg(long, value_name = "MAX")]
    pub threshold_max: Option<f64>,
}

impl ThresholdArgs {
    /// The threshold asked for, checked.
    pub fn threshold(&self) -> Result<Option<DynamicThreshold>, String> {
        let Some(ratio) = self.dynamic_threshold else {
            return match self.threshold_max {
                Some(_) => Err("--threshold-max needs --dynamic-threshold".into()),
                None => Ok(None),
            };
        };
        let threshold = DynamicThreshold {
            ratio,
            max: self.threshold_max.unwrap_or(f64::MAX),
        };
        threshold
            .validate()
            .map_err(|e| format!("--dynamic-threshold: {e}"))?;
        Ok(Some(threshold))
    }
}

/// Draws `request.count` samples (N, C, H, W) from `model`, which predicts `prediction` under `schedule`.
pub fn draw(
    model: &Backbone,
    prediction: Prediction,
    schedule: &NoiseSchedule,
    request: &GridRequest,
    init_noise: Option<&Tensor>,
) -> Result<Tensor, String> {
    draw_with(
        model,
        prediction,
        schedule,
        request,
        init_noise,
        |denoiser, sample| sample(denoiser),
    )
}

/// As [`draw`], but `wrap` receives the (guided) denoiser and the sampling run, so that it can run it around a
/// wrapper of the denoiser (to record the trajectory).
pub fn draw_with(
    model: &Backbone,
    prediction: Prediction,
    schedule: &NoiseSchedule,
    request: &GridRequest,
    init_noise: Option<&Tensor>,
    wrap: impl FnOnce(
        &dyn Denoiser,
        &dyn Fn(&dyn Denoiser) -> Result<Tensor, String>,
    ) -> Result<Tensor, String>,
) -> Result<Tensor, String> {
    let config = model.config();
    let (h, w) = config.sample_size().unwrap_or((28, 28));
    let shape = [request.count, config.in_channels(), h, w];
    let plain = ModelDenoiser { model, prediction };
    let guided;
    let denoiser: &dyn Denoiser = match (request.classes, request.null_class) {
        (Some(_), Some(null)) if request.guidance != 1.0 => {
            guided = ClassifierFreeGuidance {
                model: &plain,
                scale: request.guidance,
                null_class: Some(null),
                null_context: None,
            };
            &guided
        }
        _ => &plain,
    };
    let options = SamplerOptions {
        steps: request.steps,
        seed: request.seed,
        spacing: TimestepSpacing::Trailing,
        sigmas: SigmaSchedule {
            spacing: SigmaSpacing::Karras,
            range: SigmaRange::Training,
            ..SigmaSchedule::default()
        },
        clip_sample_range: Some(1.0),
        dynamic_threshold: request.threshold,
        ..SamplerOptions::default()
    };
    let sample = |denoiser: &dyn Denoiser| {
        let result = match init_noise {
            Some(noise) => request.sampler.sample_from(
                denoiser,
                schedule,
                &options,
                noise,
                Condition::class_opt(request.classes),
            ),
            None => request.sampler.sample(
                denoiser,
                schedule,
                &options,
                &shape,
                model.device(),
                Condition::class_opt(request.classes),
            ),
        };
        result.map_err(|e| e.to_string())
    };
    wrap(denoiser, &sample)
}
