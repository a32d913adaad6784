//! Score models on the command line ([`diffuse_diffusion::sde`]): how a loaded or trained model reads as a score
//! model, and the score samplers of `diffuse sample`, `diffuse eval` and the training grids (`--sampler
//! langevin|pc|ode-rk45`). Training is in [`crate::sde_train`], the ODE likelihood in [`crate::nll`].
//!
//! Which SDE a model belongs to comes from its scheduler config: diffusers' `ScoreSdeVeScheduler` /
//! `ScoreSdeVpScheduler` (or diffuse's `ScoreSdeSubVpScheduler`) name a score model, any other config a discrete
//! schedule, which is read as the VP SDE through its `ᾱ` ([`Sde::vp_discrete`]) so that every DDPM-style model can also
//! be sampled with these samplers and measured with the ODE likelihood. How the network's output reads as a score
//! follows its time embedding: a Fourier-embedded U-Net takes σ and returns the score (diffusers' convention),
//! any other network takes the fractional training timestep and predicts what its scheduler says (ε for the score
//! SDEs).

use crate::consistency::ConsistencySampler;
use crate::numbers::finite_f64;
use clap::{Args, ValueEnum};
use diffuse_diffusion::sampler::named::{self, label};
use diffuse_diffusion::sampler::scheduler::Scheduler;
use diffuse_diffusion::sampler::{ClassifierFreeGuidance, Condition, Denoiser, Prediction};
use diffuse_diffusion::schedule::{NoiseSchedule, SchedulerConfig};
use diffuse_diffusion::sde::{
    annealed_langevin, predictor_corrector, probability_flow, Corrector, DenoiserScore,
    LangevinOptions, NoiseSource, OdeOptions, PcOptions, PhiloxNoise, Predictor, ScoreNetwork,
    ScoreParameterization, ScoreSdeConfig, Sde, Tolerances,
};
use diffuse_diffusion::train::target::prediction_of;
use diffuse_diffusion::train::{ModelDenoiser, TrainConfig};
use diffuse_models::{Backbone, BackboneConfig};
use diffuse_tensor::{Device, Tensor};
use std::cell::Cell;

/// The `--sampler` names of the score samplers.
pub const SCORE_SAMPLERS: [&str; 3] = ["langevin", "pc", "ode-rk45"];

/// The predictor of `--sampler pc`.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum PredictorArg {
    ReverseDiffusion,
    EulerMaruyama,
    None,
}

/// The settings of the score samplers (`diffuse sample`, `diffuse eval`).
#[derive(Args, Clone, Copy, Debug)]
pub struct ScoreArgs {
    /// pc: the predictor.  [default: reverse-diffusion for a VE model, euler-maruyama otherwise]
    #[arg(long, value_enum, value_name = "NAME")]
    predictor: Option<PredictorArg>,
    /// pc: Langevin corrector steps per step (0: no corrector); langevin: Langevin steps per noise level.
    /// [default: the scheduler's correct_steps (1) for pc, 10 for langevin]
    #[arg(long, value_name = "K")]
    corrector_steps: Option<usize>,
    /// The Langevin corrector's signal-to-noise ratio r.  [default: the scheduler's snr for a VE model (diffusers:
    /// 0.15), 0.16 otherwise]
    #[arg(long, value_parser = finite_f64, value_name = "R")]
    snr: Option<f64>,
    /// langevin: the step size ε at the smallest noise level (level i steps ε·σ_i²/σ_L²).
    #[arg(long, value_parser = finite_f64, value_name = "EPS", default_value_t = 2e-5)]
    langevin_step: f64,
    /// ode-rk45 and --nll ode: the adaptive solver's relative tolerance.
    #[arg(long, value_parser = finite_f64, default_value_t = 1e-5)]
    rtol: f64,
    /// ode-rk45 and --nll ode: the adaptive solver's absolute tolerance.
    #[arg(long, value_parser = finite_f64, default_value_t = 1e-5)]
    atol: f64,
    /// The time the score samplers end at.  [default: the scheduler's sampling_eps (VE 1e-5, VP 1e-3); 1e-3 for a
    /// DDPM model]
    #[arg(long, value_parser = finite_f64, value_name = "T")]
    sde_eps: Option<f64>,
    /// End on the last noisy sample instead of the denoised one (the last predictor mean, or a Tweedie step).
    /// [default: off]
    #[arg(long)]
    no_denoise: bool,
}

impl Default for ScoreArgs {
    /// The command-line defaults.
    fn default() -> Self {
        ScoreArgs {
            predictor: None,
            corrector_steps: None,
            snr: None,
            langevin_step: 2e-5,
            rtol: 1e-5,
            atol: 1e-5,
            sde_eps: None,
            no_denoise: false,
        }
    }
}

impl ScoreArgs {
    /// `--sde-eps`, when given.
    pub fn sde_eps(&self) -> Option<f64> {
        self.sde_eps
    }

    /// The solver tolerances, checked.
    pub fn tolerances(&self) -> Result<Tolerances, String> {
        let tol = Tolerances {
            rtol: self.rtol,
            atol: self.atol,
        };
        tol.validate().map_err(|e| format!("--{e}"))?;
        Ok(tol)
    }
}

/// A model seen as a score model: its SDE, how its output reads as a score, and its scheduler's sampling defaults.
#[derive(Clone, Debug)]
pub struct ScoreView {
    pub sde: Sde,
    pub parameterization: ScoreParameterization,
    pub sampling_eps: f64,
    pub snr: f64,
    pub correct_steps: usize,
}

/// How a timestep-conditioned network's prediction reads as a score.
fn network_of(prediction: Prediction) -> ScoreNetwork {
    match prediction {
        Prediction::Epsilon => ScoreNetwork::Epsilon,
        Prediction::Sample => ScoreNetwork::Sample,
        Prediction::VPrediction => ScoreNetwork::VPrediction,
    }
}

impl ScoreView {
    /// The view of a loaded model folder and its scheduler config.
    pub fn of_checkpoint(
        model: &BackboneConfig,
        scheduler: &SchedulerConfig,
    ) -> Result<ScoreView, String> {
        match ScoreSdeConfig::from_scheduler_config(scheduler).map_err(|e| e.to_string())? {
            Some(config) => Ok(Self::of_score_sde(model, &config)),
            None => Self::of_schedule(model, scheduler),
        }
    }

    /// The view of a model being trained with `config`.
    pub fn of_training(model: &BackboneConfig, config: &TrainConfig) -> Result<ScoreView, String> {
        match &config.score_matching {
            Some(objective) => Ok(Self::of_score_sde(
                model,
                &objective.scheduler_config().map_err(|e| e.to_string())?,
            )),
            None => Self::of_schedule(model, &config.scheduler),
        }
    }

    fn of_score_sde(model: &BackboneConfig, config: &ScoreSdeConfig) -> ScoreView {
        let network = if model.takes_noise_level() {
            ScoreNetwork::NoiseConditional
        } else {
            ScoreNetwork::Epsilon
        };
        ScoreView {
            sde: config.sde.clone(),
            parameterization: ScoreParameterization {
                network,
                num_train_timesteps: config.num_train_timesteps,
            },
            sampling_eps: config.sampling_eps,
            snr: config.snr,
            correct_steps: config.correct_steps,
        }
    }

    fn of_schedule(
        model: &BackboneConfig,
        scheduler: &SchedulerConfig,
    ) -> Result<ScoreView, String> {
        if model.takes_noise_level() {
            return Err(format!(
                "the network takes noise levels (a Fourier time embedding) but its scheduler config is {:?}, not a \
                 score-SDE scheduler ({})",
                scheduler.class_name.as_deref().unwrap_or("unnamed"),
                ["ScoreSdeVeScheduler", "ScoreSdeVpScheduler", "ScoreSdeSubVpScheduler"].join(", ")
            ));
        }
        let schedule = NoiseSchedule::from_config(scheduler).map_err(|e| e.to_string())?;
        Ok(ScoreView {
            sde: Sde::vp_discrete(&schedule).map_err(|e| e.to_string())?,
            parameterization: ScoreParameterization {
                network: network_of(prediction_of(scheduler.prediction_type)),
                num_train_timesteps: schedule.len(),
            },
            sampling_eps: 1e-3,
            snr: diffuse_diffusion::sde::config::DEFAULT_SNR,
            correct_steps: 1,
        })
    }
}

/// Which score sampler, with the command line's settings (resolved against a model's defaults when it runs).
#[derive(Clone, Copy, Debug)]
pub struct ScoreSampler {
    pub name: &'static str,
    /// PC steps, or the noise levels of annealed Langevin (ode-rk45 adapts its own).
    pub steps: usize,
    pub args: ScoreArgs,
}

/// A `--sampler`: a discrete-time sampler of the library (with its options and training schedule), or a score
/// sampler.
#[derive(Clone, Debug)]
pub enum AnySampler {
    Discrete(Box<Scheduler>),
    Score(ScoreSampler),
    /// Multistep consistency sampling of a consistency model.
    Consistency(Box<ConsistencySampler>),
}

impl AnySampler {
    /// Its name in tables and messages: the command-line name with the settings that make it (e.g. `dpm++3m`).
    pub fn label(&self) -> String {
        match self {
            AnySampler::Discrete(scheduler) => label(&scheduler.sampler),
            AnySampler::Score(sampler) => sampler.name.into(),
            AnySampler::Consistency(_) => crate::consistency::NAME.into(),
        }
    }

    /// Its steps (a score sampler's: PC steps or noise levels; ode-rk45 adapts its own).
    pub fn steps(&self) -> usize {
        match self {
            AnySampler::Discrete(scheduler) => scheduler.options.steps,
            AnySampler::Score(sampler) => sampler.steps,
            AnySampler::Consistency(sampler) => sampler.steps(),
        }
    }
}

/// The sampler `name` chooses for a model: a score sampler (with `steps` and the score settings), or the
/// discrete-time sampler `discrete` builds from the model's scheduler config (`name` `None`: the config's own
/// class). A score-SDE model (`score_sde`) has no discrete schedule: it is sampled by `pc` unless `name` picks
/// another score sampler, and a discrete-time name is refused before `discrete` is called.
pub fn any_sampler(
    name: Option<&str>,
    steps: usize,
    args: &ScoreArgs,
    score_sde: bool,
    discrete: impl FnOnce(Option<&str>) -> Result<Scheduler, String>,
) -> Result<AnySampler, String> {
    let name = name.or(score_sde.then_some("pc"));
    if let Some(&score) = name.and_then(|n| SCORE_SAMPLERS.iter().find(|&&s| s == n)) {
        args.tolerances()?;
        return Ok(AnySampler::Score(ScoreSampler {
            name: score,
            steps,
            args: *args,
        }));
    }
    if let Some(Err(e)) = name.map(named::lookup) {
        return Err(format!(
            "--{e}, or a score sampler ({})",
            SCORE_SAMPLERS.join(", ")
        ));
    }
    match name {
        Some(name) if score_sde => Err(refuse_discrete(name)),
        _ => discrete(name).map(|s| AnySampler::Discrete(Box::new(s))),
    }
}

/// The error for a discrete-time sampler asked to sample a score model.
pub fn refuse_discrete(sampler: &str) -> String {
    format!(
        "--sampler {sampler} steps through the training timesteps of a discrete schedule, and this is a score-SDE \
         model, which has none; use --sampler {}",
        SCORE_SAMPLERS.join(", ")
    )
}

/// Refuses the discrete-time samplers' options (`given`, as flags) with a score sampler, which has none of them.
pub fn refuse_discrete_options(sampler: &str, given: &[&str]) -> Result<(), String> {
    match given {
        [] => Ok(()),
        flags => Err(format!(
            "{} set(s) the discrete-time samplers' predicted x0 or timesteps, and --sampler {sampler} is a score \
             sampler (which clamps its final samples to [−1, 1]); drop {}",
            flags.join(", "),
            if flags.len() == 1 { "it" } else { "them" }
        )),
    }
}

/// `first` (a standard normal tensor) as the first draw, then the Philox stream `seed` after as many elements.
struct StartFrom {
    first: Option<Tensor>,
    rest: PhiloxNoise,
}

impl NoiseSource for StartFrom {
    fn next(&mut self, shape: &[usize], device: Device) -> diffuse_diffusion::Result<Tensor> {
        match self.first.take() {
            Some(z) if z.shape() == shape => Ok(z.to_device(device)?),
            Some(z) => Err(diffuse_diffusion::Error::sampler(
                "init_noise",
                format!("has shape {:?}; the samples have {shape:?}", z.shape()),
            )),
            None => self.rest.next(shape, device),
        }
    }
}

/// Counts the model evaluations of a sampling run (a guided evaluation counts once).
struct Counted<'a> {
    inner: &'a dyn Denoiser,
    calls: Cell<usize>,
}

impl Denoiser for Counted<'_> {
    fn predict(
        &self,
        x: &Tensor,
        t: &[f64],
        cond: Condition<'_>,
    ) -> diffuse_diffusion::Result<Tensor> {
        self.calls.set(self.calls.get() + 1);
        self.inner.predict(x, t, cond)
    }

    fn prediction(&self) -> Prediction {
        self.inner.prediction()
    }
}

/// What to draw with a score sampler.
pub struct ScoreRequest<'a> {
    pub sampler: ScoreSampler,
    pub seed: u64,
    /// The class of each sample (`None`: unconditional).
    pub classes: Option<&'a [u32]>,
    pub count: usize,
    pub guidance: f64,
    pub null_class: Option<u32>,
    /// The samples are pixels, clamped to `[−1, 1]` at the end; false for a latent model's latents, which its
    /// decoder turns into images.
    pub pixels: bool,
}

impl ScoreSampler {
    /// Runs the sampler on `model` for `shape` from `noise`.
    fn run(
        &self,
        model: &DenoiserScore,
        view: &ScoreView,
        shape: &[usize],
        device: Device,
        noise: &mut dyn NoiseSource,
        cond: Condition<'_>,
    ) -> Result<Tensor, String> {
        let a = &self.args;
        let eps = a.sde_eps.unwrap_or(view.sampling_eps);
        let denoise = !a.no_denoise;
        let x = match self.name {
            "langevin" => annealed_langevin(
                model,
                &LangevinOptions {
                    levels: self.steps,
                    steps_per_level: a.corrector_steps.unwrap_or(10),
                    step_size: a.langevin_step,
                    t_min: eps,
                    denoise,
                },
                shape,
                device,
                noise,
                cond,
            ),
            "pc" => {
                let predictor = match a.predictor {
                    Some(PredictorArg::ReverseDiffusion) => Predictor::ReverseDiffusion,
                    Some(PredictorArg::EulerMaruyama) => Predictor::EulerMaruyama,
                    Some(PredictorArg::None) => Predictor::None,
                    None if matches!(view.sde, Sde::Ve { .. }) => Predictor::ReverseDiffusion,
                    None => Predictor::EulerMaruyama,
                };
                let corrector = match a.corrector_steps.unwrap_or(view.correct_steps) {
                    0 => Corrector::None,
                    steps => Corrector::Langevin {
                        snr: a.snr.unwrap_or(view.snr),
                        steps,
                    },
                };
                let options = PcOptions {
                    steps: self.steps,
                    predictor,
                    corrector,
                    eps,
                    denoise,
                };
                predictor_corrector(model, &options, shape, device, noise, cond)
            }
            _ => {
                let options = OdeOptions {
                    tolerances: a.tolerances()?,
                    eps,
                    denoise,
                };
                probability_flow(model, &options, shape, device, noise, cond).map(|(x, _)| x)
            }
        };
        x.map_err(|e| format!("--sampler {}: {e}", self.name))
    }
}

/// Draws `request.count` samples (N, C, H, W) of `model` with a score sampler (pixels clamped to `[−1, 1]`); returns
/// them and the number of model evaluations. `wrap` receives the (guided) denoiser and the sampling run, as [`crate::sampling::draw_with`]'s does.
pub fn draw_with(
    model: &Backbone,
    view: &ScoreView,
    request: &ScoreRequest,
    init_noise: Option<&Tensor>,
    wrap: impl FnOnce(
        &dyn Denoiser,
        &dyn Fn(&dyn Denoiser) -> Result<Tensor, String>,
    ) -> Result<Tensor, String>,
) -> Result<(Tensor, usize), String> {
    let config = model.config();
    let (h, w) = config.sample_size().unwrap_or((28, 28));
    let shape = [request.count, config.in_channels(), h, w];
    // The parameterisation, not this, says what the output is.
    let plain = ModelDenoiser {
        model,
        prediction: Prediction::Epsilon,
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
    let counted = Counted {
        inner: denoiser,
        calls: Cell::new(0),
    };
    let sample = |denoiser: &dyn Denoiser| {
        let score = DenoiserScore {
            denoiser,
            sde: view.sde.clone(),
            parameterization: view.parameterization,
        };
        // With a given x_T the later draws continue the stream as if x_T had been its first draw.
        let skipped = init_noise.map_or(0, |_| shape.iter().product::<usize>() as u64);
        let mut noise = StartFrom {
            first: init_noise.cloned(),
            rest: PhiloxNoise::at(request.seed, skipped),
        };
        let cond = Condition::class_opt(request.classes);
        let x = request
            .sampler
            .run(&score, view, &shape, model.device(), &mut noise, cond)?;
        match request.pixels {
            true => x.clamp(-1.0, 1.0).map_err(|e| e.to_string()),
            false => Ok(x),
        }
    };
    let images = wrap(&counted, &sample)?;
    Ok((images, counted.calls.get()))
}

/// [`draw_with`] without a wrapper.
pub fn draw(
    model: &Backbone,
    view: &ScoreView,
    request: &ScoreRequest,
) -> Result<(Tensor, usize), String> {
    draw_with(model, view, request, None, |denoiser, sample| {
        sample(denoiser)
    })
}
