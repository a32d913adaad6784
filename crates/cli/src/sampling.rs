//! How the commands that sample choose their sampler, and sample grids from a denoising network.
//!
//! The folder's scheduler config decides, as in diffusers ([`diffuse_diffusion::sampler::scheduler`]): with no
//! `--sampler`, its class runs with all of its settings; `--sampler NAME` builds another sampler from the same
//! config (diffusers' `from_config`); `--eta`, `--spacing`, `--karras` / `--no-karras`, `--sigma-range`,
//! `--clip`, `--order`, `--clipped-eps` and the thresholding options change single settings.
//!
//! A grid is one row per class (or plain rows for an unconditional model), drawn with the resolved sampler and, for
//! `guidance ≠ 1`, classifier-free guidance around the null class.

use crate::numbers::finite_f64;
use crate::prompt::PromptContexts;
use clap::Args;
use diffuse_diffusion::sampler::scheduler::{SamplerOverrides, Scheduler};
use diffuse_diffusion::sampler::{
    ClassifierFreeGuidance, Condition, Denoiser, DynamicThreshold, SigmaRange,
};
use diffuse_diffusion::schedule::{SchedulerConfig, TimestepSpacing};
use diffuse_diffusion::train::ModelDenoiser;
use diffuse_models::Backbone;
use diffuse_tensor::Tensor;

/// The steps of a run that does not say.
pub const DEFAULT_STEPS: usize = 20;

/// The sampler options of `diffuse sample`, `eval` and `info`.
#[derive(Args, Clone, Debug)]
pub struct SamplerArgs {
    /// The sampler: ddpm, ddim, pndm, plms, euler, euler-a, heun, lms, dpm2m, dpm++2m, dpm++3m, dpm++2m-sde,
    /// unipc, unipc-bh1 (and dpm[++]Km[-sde] for orders K = 1–3), built from the folder's scheduler config; a
    /// score sampler: langevin (annealed Langevin dynamics), pc (predictor–corrector) or ode-rk45 (the
    /// probability-flow ODE, adaptive); or consistency (a consistency model's multistep sampling).  [default: the
    /// folder's scheduler, with all its settings; pc for a score-SDE model; consistency for a consistency model]
    #[arg(long)]
    pub sampler: Option<String>,
    /// Denoising steps (langevin: noise levels; ode-rk45 chooses its own; consistency: 1, 2, 4, …).  [default: 20;
    /// a distilled student's own count; 1 for a consistency model]
    #[arg(long)]
    pub steps: Option<usize>,
    /// consistency: the noise levels, decreasing from at most σ_max (e.g. 80,0.8).  [default: σ_max, then the
    /// inner points of the Karras ramp]
    #[arg(long, value_name = "LIST")]
    pub sigmas: Option<String>,
    /// DDIM's stochasticity η (0: deterministic, 1: DDPM's variance).  [default: 0]
    #[arg(long, value_parser = finite_f64)]
    pub eta: Option<f64>,
    /// Which training timesteps are visited: leading, trailing or linspace.  [default: the config's]
    #[arg(long, value_parser = ["leading", "trailing", "linspace"])]
    pub spacing: Option<String>,
    /// Step through the Karras σ ramp (σ-samplers).  [default: the config's use_karras_sigmas]
    #[arg(long, conflicts_with = "no_karras")]
    pub karras: bool,
    /// Do not use the Karras σ ramp.  [default: the config's use_karras_sigmas]
    #[arg(long)]
    pub no_karras: bool,
    /// Where a σ ramp starts and ends: the visited timesteps' σ (diffusers' Euler, Heun, LMS) or the training range
    /// (diffusers' DPM-Solver and UniPC).  [default: the sampler's, as in diffusers]
    #[arg(long, value_parser = ["visited", "training"])]
    pub sigma_range: Option<String>,
    /// Clip every predicted x0 to [−RANGE, RANGE], or `none` for no clipping or thresholding.  [default: the config's
    /// clip_sample and clip_sample_range]
    #[arg(long, value_name = "RANGE|none")]
    pub clip: Option<String>,
    /// The order of DPM-Solver (1–3), UniPC (1–3) or LMS (1–6).  [default: the config's]
    #[arg(long)]
    pub order: Option<usize>,
    /// DDIM: take the noise from the clipped x0 (diffusers' use_clipped_model_output) instead of the network's.
    /// [default: off, as diffusers' pipelines]
    #[arg(long)]
    pub clipped_eps: bool,
    /// Dynamic thresholding (Imagen): scale each predicted x0 back into [−1, 1] by this quantile of |x0| (0.995 in
    /// Imagen and diffusers).  [default: the config's thresholding]
    #[arg(long, value_parser = finite_f64, value_name = "RATIO")]
    pub dynamic_threshold: Option<f64>,
    /// The largest threshold dynamic thresholding may use (diffusers' sample_max_value).  [default: no cap]
    #[arg(long, value_parser = finite_f64, value_name = "MAX")]
    pub threshold_max: Option<f64>,
}

impl SamplerArgs {
    /// The single-setting changes asked for, checked.
    pub fn overrides(&self) -> Result<SamplerOverrides, String> {
        let spacing = self
            .spacing
            .as_deref()
            .map(|s| TimestepSpacing::from_name(s).expect("clap admits the spacing names only"));
        let clip = match self.clip.as_deref() {
            None => None,
            Some("none") => Some(None),
            Some(text) => match text.parse::<f64>() {
                Ok(r) if r.is_finite() && r > 0.0 => Some(Some(r)),
                _ => return Err(format!("--clip {text}: expected a positive range or none")),
            },
        };
        let threshold = match self.dynamic_threshold {
            None if self.threshold_max.is_some() => {
                return Err("--threshold-max needs --dynamic-threshold".into())
            }
            None => None,
            Some(ratio) => {
                let threshold = DynamicThreshold {
                    ratio,
                    max: self.threshold_max.unwrap_or(f64::MAX),
                };
                threshold
                    .validate()
                    .map_err(|e| format!("--dynamic-threshold: {e}"))?;
                Some(threshold)
            }
        };
        Ok(SamplerOverrides {
            steps: Some(self.steps.unwrap_or(DEFAULT_STEPS)),
            eta: self.eta,
            spacing,
            karras: match (self.karras, self.no_karras) {
                (true, _) => Some(true),
                (_, true) => Some(false),
                _ => None,
            },
            sigma_range: self.sigma_range.as_deref().map(|r| match r {
                "training" => SigmaRange::Training,
                _ => SigmaRange::Visited,
            }),
            clip,
            threshold,
            order: self.order,
            use_clipped_model_output: self.clipped_eps.then_some(true),
        })
    }

    /// The discrete-time samplers' options given (as flags), which a score sampler refuses.
    pub fn discrete_options(&self) -> Vec<&'static str> {
        [
            ("--eta", self.eta.is_some()),
            ("--spacing", self.spacing.is_some()),
            ("--karras", self.karras),
            ("--no-karras", self.no_karras),
            ("--sigma-range", self.sigma_range.is_some()),
            ("--clip", self.clip.is_some()),
            ("--order", self.order.is_some()),
            ("--clipped-eps", self.clipped_eps),
            ("--dynamic-threshold", self.dynamic_threshold.is_some()),
            ("--threshold-max", self.threshold_max.is_some()),
        ]
        .into_iter()
        .filter_map(|(flag, given)| given.then_some(flag))
        .collect()
    }

    /// The sampler these options choose for a folder whose scheduler is `base`.
    pub fn resolve(&self, base: &Scheduler) -> Result<Scheduler, String> {
        let scheduler = match &self.sampler {
            Some(name) => base
                .switch_to(name)
                .map_err(|e| format!("--sampler: {e}"))?,
            None => base.clone(),
        };
        scheduler
            .apply(&self.overrides()?)
            .map_err(|e| e.to_string())
    }
}

/// The sampler `name` of a training run whose scheduler config is `config`, with `steps` steps: the command-line
/// `--sampler` rule, used for the grids and evaluations during training.
pub fn run_sampler(
    config: &SchedulerConfig,
    name: &str,
    steps: usize,
) -> Result<Scheduler, String> {
    Scheduler::from_config(config)
        .and_then(|s| s.switch_to(name))
        .and_then(|s| {
            s.apply(&SamplerOverrides {
                steps: Some(steps),
                ..SamplerOverrides::default()
            })
        })
        .map_err(|e| e.to_string())
}

/// What to draw.
pub struct GridRequest<'a> {
    /// The sampler, its options (steps, seed, step noise) and its training schedule.
    pub scheduler: &'a Scheduler,
    /// The class of each sample (`None`: unconditional).
    pub classes: Option<&'a [u32]>,
    pub count: usize,
    pub guidance: f64,
    pub null_class: Option<u32>,
    /// A text-to-image model's prompt states and unconditional context (then `classes` is `None`).
    pub prompts: Option<&'a PromptContexts>,
}

/// Draws `request.count` samples (N, C, H, W) from `model`; `init_noise` are the unit normal latents (the seed's
/// when `None`).
pub fn draw(
    model: &Backbone,
    request: &GridRequest,
    init_noise: Option<&Tensor>,
) -> Result<Tensor, String> {
    draw_with(model, request, init_noise, |denoiser, sample| {
        sample(denoiser)
    })
}

/// As [`draw`], but `wrap` receives the (guided) denoiser and the sampling run, so that it can run it around a
/// wrapper of the denoiser (to record the trajectory).
pub fn draw_with(
    model: &Backbone,
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
    let scheduler = request.scheduler;
    let plain = ModelDenoiser {
        model,
        prediction: scheduler.prediction(),
    };
    let guided;
    let denoiser: &dyn Denoiser = match (request.classes, request.null_class, request.prompts) {
        // diffusers' StableDiffusionPipeline guides only above 1 (`do_classifier_free_guidance`).
        (None, _, Some(prompts)) if request.guidance > 1.0 => {
            guided = ClassifierFreeGuidance {
                model: &plain,
                scale: request.guidance,
                null_class: None,
                null_context: Some(prompts.null_context.clone()),
            };
            &guided
        }
        (Some(_), Some(null), None) if request.guidance != 1.0 => {
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
    let cond = Condition {
        class: request.classes,
        context: request.prompts.map(|p| &p.context),
    };
    let sample = |denoiser: &dyn Denoiser| {
        let result = match init_noise {
            Some(noise) => scheduler.sample_from(denoiser, noise, cond),
            None => scheduler.sampler.sample(
                denoiser,
                &scheduler.schedule,
                &scheduler.options,
                &shape,
                model.device(),
                cond,
            ),
        };
        result.map_err(|e| e.to_string())
    };
    wrap(denoiser, &sample)
}
