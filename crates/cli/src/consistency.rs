//! `--sampler consistency`: multistep consistency sampling ([`diffuse_diffusion::distill::consistency`]) of a
//! consistency-distilled or consistency-trained network, through the noise schedule of its folder's scheduler
//! config; `--steps 1|2|4` with the default levels (σ_max, then the inner points of the Karras ramp), or `--sigmas`.
//! Each clean-sample estimate is clipped as the folder's scheduler clips x̂0 (`--clip none` turns it off).

use diffuse_diffusion::distill::{
    consistency_sample_from, default_sampling_sigmas, ConsistencyFunction, NetworkConsistency,
};
use diffuse_diffusion::sampler::scheduler::Scheduler;
use diffuse_diffusion::sampler::{
    ClassifierFreeGuidance, Condition, Denoiser, Prediction, X0Limit,
};
use diffuse_diffusion::schedule::NoiseSchedule;
use diffuse_diffusion::train::ModelDenoiser;
use diffuse_models::Backbone;
use diffuse_tensor::Tensor;

/// The `--sampler` name.
pub const NAME: &str = "consistency";

/// Multistep consistency sampling with its noise levels.
#[derive(Clone, Debug)]
pub struct ConsistencySampler {
    /// The levels, decreasing: the first is the start, each further one a re-noising.
    pub sigmas: Vec<f64>,
    pub schedule: NoiseSchedule,
    pub prediction: Prediction,
    /// How each clean-sample estimate is kept in range: the folder's clipping (`--clip` changes it).
    pub limit: X0Limit,
}

impl ConsistencySampler {
    /// The sampler for a folder whose scheduler is `scheduler`: `steps` default levels, or the comma-separated
    /// `sigmas` (whose count must then be `steps` when steps were given).
    pub fn new(
        scheduler: &Scheduler,
        steps: Option<usize>,
        sigmas: Option<&str>,
    ) -> Result<Self, String> {
        let schedule = scheduler.schedule.clone();
        let param = diffuse_diffusion::distill::ConsistencyParam::for_schedule(&schedule)
            .map_err(|e| e.to_string())?;
        let sigmas = match sigmas {
            Some(text) => {
                let levels = text
                    .split(',')
                    .map(|s| s.trim().parse::<f64>())
                    .collect::<Result<Vec<f64>, _>>()
                    .map_err(|e| format!("--sigmas {text}: {e} (expected numbers like 80,0.8)"))?;
                if let Some(steps) = steps.filter(|&n| n != levels.len()) {
                    return Err(format!(
                        "--sigmas gives {} levels but --steps {steps}; leave --steps out",
                        levels.len()
                    ));
                }
                levels
            }
            None => {
                default_sampling_sigmas(&param, steps.unwrap_or(1)).map_err(|e| e.to_string())?
            }
        };
        diffuse_diffusion::distill::consistency::check_sampling_sigmas(&sigmas, &param)
            .map_err(|e| format!("--sigmas: {e}"))?;
        Ok(Self {
            sigmas,
            schedule,
            prediction: scheduler.prediction(),
            limit: scheduler.options.x0_limit(),
        })
    }

    pub fn steps(&self) -> usize {
        self.sigmas.len()
    }

    /// Its settings, for `info` and `eval`'s JSON.
    pub fn settings(&self) -> Vec<(String, String)> {
        let shown: Vec<String> = self.sigmas.iter().map(|s| format!("{s:.4}")).collect();
        vec![
            ("sampler".into(), NAME.into()),
            ("steps".into(), self.steps().to_string()),
            ("sigmas".into(), shown.join(" ")),
            ("prediction_type".into(), format!("{:?}", self.prediction)),
            ("x0".into(), format!("{:?}", self.limit)),
        ]
    }
}

/// What to draw.
pub struct ConsistencyRequest<'a> {
    pub sampler: &'a ConsistencySampler,
    pub seed: u64,
    pub classes: Option<&'a [u32]>,
    pub count: usize,
    pub guidance: f64,
    pub null_class: Option<u32>,
}

/// Draws `request.count` samples (N, C, H, W); `init_noise` are the unit normal starting latents (the seed's when
/// `None`). `wrap` receives the (guided) denoiser and the sampling run, as [`crate::sampling::draw_with`]'s does.
pub fn draw_with(
    model: &Backbone,
    request: &ConsistencyRequest,
    init_noise: Option<&Tensor>,
    wrap: impl FnOnce(
        &dyn Denoiser,
        &dyn Fn(&dyn Denoiser) -> Result<Tensor, String>,
    ) -> Result<Tensor, String>,
) -> Result<Tensor, String> {
    let config = model.config();
    let (h, w) = config.sample_size().unwrap_or((28, 28));
    let shape = [request.count, config.in_channels(), h, w];
    let sampler = request.sampler;
    let plain = ModelDenoiser {
        model,
        prediction: sampler.prediction,
    };
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
    let cond = Condition::class_opt(request.classes);
    let sample = |denoiser: &dyn Denoiser| -> Result<Tensor, String> {
        let f = NetworkConsistency::new(denoiser, &sampler.schedule).map_err(|e| e.to_string())?;
        let noise = match init_noise {
            Some(noise) => noise.clone(),
            None => {
                Tensor::randn(&shape, request.seed, 0, model.device()).map_err(|e| e.to_string())?
            }
        };
        let f: &dyn ConsistencyFunction = &f;
        consistency_sample_from(
            f,
            &sampler.sigmas,
            sampler.limit,
            &noise,
            request.seed,
            cond,
        )
        .map_err(|e| format!("--sampler consistency: {e}"))
    };
    wrap(denoiser, &sample)
}
