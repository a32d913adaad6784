//! A diffusers scheduler config, resolved as diffusers resolves it, into the [`Sampler`] and [`SamplerOptions`] that
//! run it.
//!
//! - **Class.** `_class_name` names one of the nine scheduler classes of [`SchedulerClass`] (missing: `DDPMScheduler`);
//!   any other name is an error.
//! - **Settings.** Each class has its own keys and defaults ([`SchedulerClass::defaults`], those of its
//!   `__init__`); a key the file leaves out takes the class's default. A key of another class (a Stable Diffusion
//!   `PNDMScheduler` config carries `clip_sample`) is ignored, as diffusers ignores it, and listed in
//!   [`Scheduler::ignored`]; a key no class knows is an error. A value diffuse cannot honour (beta σ, flow matching,
//!   dynamic shifting, …) is an error naming the key and the value, never silently dropped; contradictory settings
//!   (two σ ramps at once) are errors too.
//! - **Another sampler** ([`Scheduler::switch_to`], the command line's `--sampler`): as diffusers'
//!   `OtherScheduler.from_config(config)`, the new class keeps every setting the config gave that the two classes
//!   share (the training schedule, the prediction type, the spacing, …) and takes its own defaults for the rest,
//!   including the keys the file left out (diffusers' `_use_default_values`); the settings of the old class the new
//!   one lacks are listed in [`Scheduler::dropped`].
//! - **Overrides** ([`Scheduler::apply`]) change single settings of the resolved sampler (η, spacing, Karras σ,
//!   clipping, order); they may go beyond what the class offers in diffusers (Karras σ for Euler ancestral, clipping
//!   for DPM-Solver), which is then diffuse's own choice, and each is listed in [`Scheduler::notes`].

use super::dpm_solver::{DpmAlgorithm, DpmSolver, DpmSolverType};
use super::grid::{FinalSigma, SigmaInterpolation, SigmaRange, SigmaSchedule, SigmaSpacing};
use super::named;
use super::unipc::{UniPc, UniPcVariant};
use super::{Ddim, DynamicThreshold, Euler, Pndm, Sampler, SamplerOptions};
use crate::error::{Error, Result};
use crate::schedule::python_json;
use crate::schedule::{
    BetaSchedule, NoiseSchedule, PredictionType, SchedulerConfig, TimestepSpacing, VarianceType,
};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};

/// The scheduler classes of diffusers that diffuse runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SchedulerClass {
    Ddpm,
    Ddim,
    Pndm,
    Euler,
    EulerAncestral,
    Heun,
    Lms,
    DpmSolverMultistep,
    UniPcMultistep,
}

impl SchedulerClass {
    pub const ALL: [SchedulerClass; 9] = [
        SchedulerClass::Ddpm,
        SchedulerClass::Ddim,
        SchedulerClass::Pndm,
        SchedulerClass::Euler,
        SchedulerClass::EulerAncestral,
        SchedulerClass::Heun,
        SchedulerClass::Lms,
        SchedulerClass::DpmSolverMultistep,
        SchedulerClass::UniPcMultistep,
    ];

    /// The class name (`_class_name`).
    pub fn name(self) -> &'static str {
        match self {
            SchedulerClass::Ddpm => "DDPMScheduler",
            SchedulerClass::Ddim => "DDIMScheduler",
            SchedulerClass::Pndm => "PNDMScheduler",
            SchedulerClass::Euler => "EulerDiscreteScheduler",
            SchedulerClass::EulerAncestral => "EulerAncestralDiscreteScheduler",
            SchedulerClass::Heun => "HeunDiscreteScheduler",
            SchedulerClass::Lms => "LMSDiscreteScheduler",
            SchedulerClass::DpmSolverMultistep => "DPMSolverMultistepScheduler",
            SchedulerClass::UniPcMultistep => "UniPCMultistepScheduler",
        }
    }

    /// The class called `name`, if diffuse runs it.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.name() == name)
    }

    /// Every key of the class's config with diffusers' default (diffusers 0.42.1, the `__init__` signatures).
    pub fn defaults(self) -> Vec<(&'static str, Value)> {
        let leading = matches!(
            self,
            SchedulerClass::Ddpm | SchedulerClass::Ddim | SchedulerClass::Pndm
        );
        let (beta_start, beta_end) = match self {
            SchedulerClass::Heun => (0.00085, 0.012),
            _ => (0.0001, 0.02),
        };
        let mut keys: Vec<(&'static str, Value)> = vec![
            ("num_train_timesteps", json!(1000)),
            ("beta_start", json!(beta_start)),
            ("beta_end", json!(beta_end)),
            ("beta_schedule", json!("linear")),
            ("trained_betas", Value::Null),
            ("prediction_type", json!("epsilon")),
            (
                "timestep_spacing",
                json!(if leading { "leading" } else { "linspace" }),
            ),
            ("steps_offset", json!(0)),
        ];
        let thresholding = || {
            vec![
                ("thresholding", json!(false)),
                ("dynamic_thresholding_ratio", json!(0.995)),
                ("sample_max_value", json!(1.0)),
            ]
        };
        let sigma_ramps = || {
            vec![
                ("use_karras_sigmas", json!(false)),
                ("use_exponential_sigmas", json!(false)),
                ("use_beta_sigmas", json!(false)),
            ]
        };
        let flow = || {
            vec![
                ("use_flow_sigmas", json!(false)),
                ("flow_shift", json!(1.0)),
                ("use_dynamic_shifting", json!(false)),
                ("time_shift_type", json!("exponential")),
            ]
        };
        let rescale = ("rescale_betas_zero_snr", json!(false));
        match self {
            SchedulerClass::Ddpm => {
                keys.extend([
                    ("variance_type", json!("fixed_small")),
                    ("clip_sample", json!(true)),
                    ("clip_sample_range", json!(1.0)),
                    rescale,
                ]);
                keys.extend(thresholding());
            }
            SchedulerClass::Ddim => {
                keys.extend([
                    ("clip_sample", json!(true)),
                    ("clip_sample_range", json!(1.0)),
                    ("set_alpha_to_one", json!(true)),
                    rescale,
                ]);
                keys.extend(thresholding());
            }
            SchedulerClass::Pndm => keys.extend([
                ("skip_prk_steps", json!(false)),
                ("set_alpha_to_one", json!(false)),
            ]),
            SchedulerClass::Euler => {
                keys.extend([
                    ("interpolation_type", json!("linear")),
                    ("sigma_min", Value::Null),
                    ("sigma_max", Value::Null),
                    ("timestep_type", json!("discrete")),
                    ("final_sigmas_type", json!("zero")),
                    rescale,
                ]);
                keys.extend(sigma_ramps());
            }
            SchedulerClass::EulerAncestral => keys.push(rescale),
            SchedulerClass::Heun => {
                keys.extend([
                    ("clip_sample", json!(false)),
                    ("clip_sample_range", json!(1.0)),
                ]);
                keys.extend(sigma_ramps());
            }
            SchedulerClass::Lms => keys.extend(sigma_ramps()),
            SchedulerClass::DpmSolverMultistep => {
                keys.extend([
                    ("solver_order", json!(2)),
                    ("algorithm_type", json!("dpmsolver++")),
                    ("solver_type", json!("midpoint")),
                    ("lower_order_final", json!(true)),
                    ("euler_at_final", json!(false)),
                    ("use_lu_lambdas", json!(false)),
                    ("final_sigmas_type", json!("zero")),
                    (
                        "lambda_min_clipped",
                        python_json::float_value(f64::NEG_INFINITY),
                    ),
                    ("variance_type", Value::Null),
                    rescale,
                ]);
                keys.extend(thresholding());
                keys.extend(sigma_ramps());
                keys.extend(flow());
            }
            SchedulerClass::UniPcMultistep => {
                keys.extend([
                    ("solver_order", json!(2)),
                    ("predict_x0", json!(true)),
                    ("solver_type", json!("bh2")),
                    ("lower_order_final", json!(true)),
                    ("disable_corrector", json!([])),
                    ("solver_p", Value::Null),
                    ("final_sigmas_type", json!("zero")),
                    ("sigma_min", Value::Null),
                    ("sigma_max", Value::Null),
                    ("shift_terminal", Value::Null),
                    rescale,
                ]);
                keys.extend(thresholding());
                keys.extend(sigma_ramps());
                keys.extend(flow());
            }
        }
        keys
    }
}

/// Whether any supported class has `key`.
fn known_to_some_class(key: &str) -> bool {
    SchedulerClass::ALL
        .iter()
        .any(|c| c.defaults().iter().any(|(k, _)| *k == key))
}

/// Keys diffusers writes for itself, not settings.
fn is_private(key: &str) -> bool {
    key.starts_with('_')
}

/// The error of a setting diffuse cannot use.
fn unsupported(key: &str, value: &Value, why: &str) -> Error {
    Error::sampler(
        "scheduler_config.json",
        format!("{key} = {}: {why}", shown(value)),
    )
}

/// A value as a reader would write it (non-finite floats as Python writes them).
fn shown(value: &Value) -> String {
    match python_json::non_finite(value) {
        Some(x) => x.to_string(),
        None => value.to_string(),
    }
}

/// Changes to single settings of a resolved scheduler, as the command line takes them. `None` keeps the config's.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SamplerOverrides {
    /// Denoising steps.
    pub steps: Option<usize>,
    /// DDIM's η.
    pub eta: Option<f64>,
    pub spacing: Option<TimestepSpacing>,
    /// Karras σ on (`true`) or off (`false`).
    pub karras: Option<bool>,
    /// Where a σ ramp starts and ends.
    pub sigma_range: Option<SigmaRange>,
    /// `Some(Some(r))`: clip x̂0 to `[−r, r]` (and no thresholding); `Some(None)`: neither.
    pub clip: Option<Option<f64>>,
    /// Dynamic thresholding instead of clipping.
    pub threshold: Option<DynamicThreshold>,
    /// The order of DPM-Solver, UniPC or LMS.
    pub order: Option<usize>,
    /// DDIM: ε̂ from the clipped x̂0.
    pub use_clipped_model_output: Option<bool>,
}

/// A resolved diffusers scheduler: the class, its complete config, and the sampler, options and training schedule
/// it runs with.
#[derive(Clone, Debug)]
pub struct Scheduler {
    pub class: SchedulerClass,
    /// Every key of the class, from the file or diffusers' default.
    pub config: BTreeMap<String, Value>,
    /// The keys whose values came from the file (or the sampler name), not from the class's defaults: only these
    /// carry over to another class, whose own defaults fill the rest (diffusers' `_use_default_values`).
    pub explicit: BTreeSet<String>,
    /// Keys of the file that belong to other classes, ignored (as diffusers ignores them).
    pub ignored: Vec<(String, Value)>,
    /// Settings of the original class that a switch to another sampler left behind (as diffusers' `from_config`).
    pub dropped: Vec<(String, Value)>,
    /// What the resolution decided beyond the config: diffusers' own substitutions, overrides, diffuse's extensions.
    pub notes: Vec<String>,
    pub sampler: Sampler,
    pub options: SamplerOptions,
    /// The training schedule's config (betas, prediction type) as a typed [`SchedulerConfig`].
    pub schedule_config: SchedulerConfig,
    /// Its tables as diffusers computes them, in float32 ([`NoiseSchedule::from_config_float32`]).
    pub schedule: NoiseSchedule,
}

impl Scheduler {
    /// Resolves the text of a `scheduler_config.json`.
    pub fn from_json_str(text: &str) -> Result<Self> {
        let value = python_json::parse(text)
            .map_err(|e| Error::sampler("scheduler_config.json", format!("not valid JSON: {e}")))?;
        Self::from_json_value(&value)
    }

    /// Reads and resolves a `scheduler_config.json` file; errors name the file.
    pub fn from_file(path: &std::path::Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::model(path.display().to_string(), format!("cannot read: {e}")))?;
        Self::from_json_str(&text).map_err(|e| match e {
            Error::Sampler { message, .. } => Error::model(path.display().to_string(), message),
            Error::Schedule(e) => Error::model(path.display().to_string(), e.to_string()),
            other => other,
        })
    }

    /// Resolves a typed config (e.g. a training run's), its extra keys included.
    pub fn from_config(config: &SchedulerConfig) -> Result<Self> {
        Self::from_json_value(&config.to_json_value())
    }

    /// Resolves a config given as a JSON object.
    pub fn from_json_value(value: &Value) -> Result<Self> {
        let Value::Object(map) = value else {
            return Err(Error::sampler(
                "scheduler_config.json",
                "the top level must be a JSON object",
            ));
        };
        let class = match map.get("_class_name") {
            None | Some(Value::Null) => SchedulerClass::Ddpm,
            Some(Value::String(name)) => SchedulerClass::from_name(name).ok_or_else(|| {
                Error::sampler(
                    "_class_name",
                    format!(
                        "unknown scheduler class '{name}'; diffuse runs {}",
                        SchedulerClass::ALL.map(SchedulerClass::name).join(", ")
                    ),
                )
            })?,
            Some(other) => {
                return Err(Error::sampler(
                    "_class_name",
                    format!("expected a string, found {other}"),
                ))
            }
        };
        let mut config: BTreeMap<String, Value> = class
            .defaults()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        let mut ignored = Vec::new();
        let mut explicit = BTreeSet::new();
        for (key, value) in map {
            if is_private(key) {
                continue;
            }
            if config.contains_key(key) {
                // diffusers writes `null` for an unset option; it keeps the default.
                if !value.is_null() {
                    config.insert(key.clone(), value.clone());
                    explicit.insert(key.clone());
                }
            } else if known_to_some_class(key) {
                ignored.push((key.clone(), value.clone()));
            } else {
                return Err(Error::sampler(
                    "scheduler_config.json",
                    format!(
                        "unknown setting '{key}' (= {}) for {}: no diffusers scheduler diffuse knows has it",
                        shown(value),
                        class.name()
                    ),
                ));
            }
        }
        Self::resolve(class, config, explicit, ignored, Vec::new(), Vec::new())
    }

    /// The scheduler `name` (a command-line sampler name, see [`named`]) with diffusers' defaults for everything.
    pub fn named(name: &str) -> Result<Self> {
        let (class, _) = named::lookup(name)?;
        let empty = json!({ "_class_name": class.name() });
        Self::from_json_value(&empty)?.switch_to(name)
    }

    /// The same training schedule and shared settings sampled by `name` instead (see [`named`]), as diffusers'
    /// `NewScheduler.from_config(config)` followed by the settings the name fixes: the settings the config gave
    /// (not those it left to the old class's defaults) carry over where the new class has them.
    pub fn switch_to(&self, name: &str) -> Result<Self> {
        let (class, fixed) = named::lookup(name)?;
        let mut config: BTreeMap<String, Value> = class
            .defaults()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        let mut explicit = BTreeSet::new();
        let mut dropped = Vec::new();
        for key in &self.explicit {
            let value = &self.config[key];
            match config.get_mut(key) {
                Some(slot) => {
                    *slot = value.clone();
                    explicit.insert(key.clone());
                }
                None => dropped.push((key.clone(), value.clone())),
            }
        }
        for (key, value) in fixed {
            config.insert(key.to_string(), value);
            explicit.insert(key.to_string());
        }
        let mut notes = self.notes.clone();
        if class != self.class {
            notes.push(format!(
                "{name}: {} built from the {} config (shared settings kept, the rest {} defaults)",
                class.name(),
                self.class.name(),
                class.name()
            ));
        }
        Self::resolve(
            class,
            config,
            explicit,
            self.ignored.clone(),
            dropped,
            notes,
        )
    }

    /// Builds the sampler and options a complete class config describes.
    fn resolve(
        class: SchedulerClass,
        config: BTreeMap<String, Value>,
        explicit: BTreeSet<String>,
        ignored: Vec<(String, Value)>,
        dropped: Vec<(String, Value)>,
        mut notes: Vec<String>,
    ) -> Result<Self> {
        let read = Reader { config: &config };
        let schedule_config = SchedulerConfig::from_json_value(Value::Object(
            config
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect::<Map<String, Value>>(),
        ))?;
        let schedule = NoiseSchedule::from_config_float32(&schedule_config)?;
        let mut options = SamplerOptions {
            spacing: schedule_config.timestep_spacing,
            steps_offset: schedule_config.steps_offset,
            ..SamplerOptions::default()
        };
        if read.has("thresholding") && read.bool("thresholding")? {
            options.dynamic_threshold = Some(DynamicThreshold {
                ratio: read.f64("dynamic_thresholding_ratio")?,
                max: read.f64("sample_max_value")?,
            });
            if read.has("clip_sample") && read.bool("clip_sample")? {
                notes.push(
                    "thresholding and clip_sample are both set: thresholding is used, as in diffusers".into(),
                );
            }
        } else if read.has("clip_sample") && read.bool("clip_sample")? {
            options.clip_sample_range = Some(read.f64("clip_sample_range")?);
        }
        if read.has("use_karras_sigmas") {
            options.sigmas = read.sigma_schedule(class)?;
        }
        for (key, why) in [
            ("use_flow_sigmas", "flow-matching σ are not supported"),
            ("use_dynamic_shifting", "dynamic shifting is not supported"),
        ] {
            if read.has(key) && read.bool(key)? {
                return Err(unsupported(key, &config[key], why));
            }
        }
        for (key, why) in [
            ("solver_p", "a solver object cannot come from a config file"),
            (
                "shift_terminal",
                "applies to flow-matching σ only, which are not supported",
            ),
        ] {
            if read.has(key) && !config[key].is_null() {
                return Err(unsupported(key, &config[key], why));
            }
        }
        let prediction = schedule_config.prediction_type;
        let sampler = match class {
            SchedulerClass::Ddpm => {
                let variance = schedule_config.variance_type;
                if variance == VarianceType::FixedLargeLog {
                    return Err(unsupported(
                        "variance_type",
                        &config["variance_type"],
                        "diffusers takes the square root of log β here, which is NaN; use fixed_large",
                    ));
                }
                Sampler::Ddpm { variance }
            }
            SchedulerClass::Ddim => Sampler::Ddim(Ddim {
                set_alpha_to_one: read.bool("set_alpha_to_one")?,
                ..Ddim::default()
            }),
            SchedulerClass::Pndm => {
                if prediction == PredictionType::Sample {
                    notes.push(
                        "PNDM with x0-prediction: diffusers refuses it; diffuse converts x̂0 to ε̂"
                            .into(),
                    );
                }
                Sampler::Pndm(Pndm {
                    skip_prk_steps: read.bool("skip_prk_steps")?,
                    set_alpha_to_one: read.bool("set_alpha_to_one")?,
                })
            }
            SchedulerClass::Euler => {
                let interpolation = match read.str("interpolation_type")? {
                    "linear" => SigmaInterpolation::Linear,
                    "log_linear" => SigmaInterpolation::LogLinear,
                    _ => return Err(read.expected("interpolation_type", "linear or log_linear")),
                };
                let continuous = match read.str("timestep_type")? {
                    "discrete" => false,
                    "continuous" => true,
                    _ => return Err(read.expected("timestep_type", "discrete or continuous")),
                };
                if continuous && prediction != PredictionType::VPrediction {
                    notes.push(
                        "timestep_type continuous applies to v-prediction only (as in diffusers): discrete timesteps"
                            .into(),
                    );
                }
                Sampler::Euler(Euler {
                    interpolation,
                    continuous_timesteps: continuous && prediction == PredictionType::VPrediction,
                })
            }
            SchedulerClass::EulerAncestral => {
                if prediction == PredictionType::Sample {
                    notes.push(
                        "Euler ancestral with x0-prediction: diffusers refuses it; diffuse takes the x0 as is".into(),
                    );
                }
                Sampler::EulerAncestral
            }
            SchedulerClass::Heun => Sampler::Heun,
            SchedulerClass::Lms => Sampler::Lms { order: 4 },
            SchedulerClass::DpmSolverMultistep => {
                let algorithm = match read.str("algorithm_type")? {
                    "deis" => {
                        notes.push(
                            "algorithm_type deis runs as dpmsolver++, as in diffusers".into(),
                        );
                        DpmAlgorithm::DpmSolverPp
                    }
                    name => DpmAlgorithm::ALL
                        .into_iter()
                        .find(|a| a.name() == name)
                        .ok_or_else(|| {
                            read.expected(
                                "algorithm_type",
                                "dpmsolver, dpmsolver++, sde-dpmsolver or sde-dpmsolver++",
                            )
                        })?,
                };
                let solver_type = match read.str("solver_type")? {
                    "midpoint" => DpmSolverType::Midpoint,
                    "heun" => DpmSolverType::Heun,
                    other @ ("logrho" | "bh1" | "bh2") => {
                        notes.push(format!(
                            "solver_type {other} runs as midpoint, as in diffusers"
                        ));
                        DpmSolverType::Midpoint
                    }
                    _ => return Err(read.expected("solver_type", "midpoint or heun")),
                };
                if read.bool("use_karras_sigmas")? && read.bool("use_lu_lambdas")? {
                    return Err(unsupported(
                        "use_lu_lambdas",
                        &config["use_lu_lambdas"],
                        "contradicts use_karras_sigmas = true (diffusers silently uses Karras σ); set one of them",
                    ));
                }
                let settings = DpmSolver {
                    algorithm,
                    order: read.usize("solver_order")?,
                    solver_type,
                    lower_order_final: read.bool("lower_order_final")?,
                    euler_at_final: read.bool("euler_at_final")?,
                    lambda_min_clipped: read.f64("lambda_min_clipped")?,
                    truncate_ramp_timesteps: schedule_config.beta_schedule
                        == BetaSchedule::SquaredcosCapV2,
                    exact_third_order: false,
                };
                settings.validate(options.sigmas.final_sigma)?;
                if matches!(
                    config["variance_type"].as_str(),
                    Some("learned" | "learned_range")
                ) {
                    notes.push(
                        "variance_type: the first half of a learned-variance output is the prediction".into(),
                    );
                }
                Sampler::DpmSolver(settings)
            }
            SchedulerClass::UniPcMultistep => {
                let variant = match read.str("solver_type")? {
                    "bh1" => UniPcVariant::Bh1,
                    "bh2" => UniPcVariant::Bh2,
                    other @ ("midpoint" | "heun" | "logrho") => {
                        notes.push(format!("solver_type {other} runs as bh2, as in diffusers"));
                        UniPcVariant::Bh2
                    }
                    _ => return Err(read.expected("solver_type", "bh1 or bh2")),
                };
                let disable_corrector = config["disable_corrector"]
                    .as_array()
                    .and_then(|steps| {
                        steps
                            .iter()
                            .map(|s| s.as_u64().map(|s| s as usize))
                            .collect::<Option<Vec<usize>>>()
                    })
                    .ok_or_else(|| read.expected("disable_corrector", "a list of step indices"))?;
                Sampler::UniPc(UniPc {
                    order: read.usize("solver_order")?,
                    variant,
                    predict_x0: read.bool("predict_x0")?,
                    lower_order_final: read.bool("lower_order_final")?,
                    disable_corrector,
                })
            }
        };
        let scheduler = Self {
            class,
            config,
            explicit,
            ignored,
            dropped,
            notes,
            sampler,
            options,
            schedule_config,
            schedule,
        };
        scheduler.check()?;
        Ok(scheduler)
    }

    /// Refuses combinations that cannot run.
    fn check(&self) -> Result<()> {
        self.options.x0_limit().validate()?;
        match &self.sampler {
            Sampler::DpmSolver(dpm) => dpm.validate(self.options.sigmas.final_sigma),
            Sampler::UniPc(unipc) => {
                if !(1..=super::unipc::MAX_UNIPC_ORDER).contains(&unipc.order) {
                    return Err(Error::sampler(
                        "solver_order",
                        format!("UniPC order {} must be 1, 2 or 3", unipc.order),
                    ));
                }
                if !unipc.lower_order_final
                    && unipc.order > 1
                    && self.options.sigmas.final_sigma == FinalSigma::Zero
                {
                    return Err(Error::sampler(
                        "lower_order_final",
                        format!(
                            "false with solver_order {} and final_sigmas_type zero: the last step would divide by \
                             σ = 0 (diffusers returns NaN); keep lower_order_final or use sigma_min",
                            unipc.order
                        ),
                    ));
                }
                Ok(())
            }
            Sampler::Lms { order } if !(1..=super::lms::MAX_LMS_ORDER).contains(order) => {
                Err(Error::sampler(
                    "order",
                    format!(
                        "LMS order {order} must be between 1 and {}",
                        super::lms::MAX_LMS_ORDER
                    ),
                ))
            }
            _ => Ok(()),
        }
    }

    /// What the network predicts, by the config's `prediction_type`.
    pub fn prediction(&self) -> super::Prediction {
        crate::train::target::prediction_of(self.schedule_config.prediction_type)
    }

    /// Samples from the unit normal latents `noise` with this sampler, its options and its training schedule.
    pub fn sample_from(
        &self,
        model: &dyn super::Denoiser,
        noise: &diffuse_tensor::Tensor,
        cond: super::Condition<'_>,
    ) -> Result<diffuse_tensor::Tensor> {
        self.sampler
            .sample_from(model, &self.schedule, &self.options, noise, cond)
    }

    /// Applies single-setting changes; each one is recorded in [`Scheduler::notes`]. A change that does not apply to
    /// this sampler is an error.
    pub fn apply(mut self, overrides: &SamplerOverrides) -> Result<Self> {
        let name = format!("{} ({})", named::label(&self.sampler), self.class.name());
        let refuse = |what: &str| -> Result<Self> {
            Err(Error::sampler(
                "override",
                format!("{what} does not apply to {name}"),
            ))
        };
        if let Some(steps) = overrides.steps {
            self.options.steps = steps;
        }
        if let Some(eta) = overrides.eta {
            match &mut self.sampler {
                Sampler::Ddim(ddim) => ddim.eta = eta,
                _ => return refuse("eta (DDIM's stochasticity)"),
            }
            self.notes.push(format!("eta = {eta}"));
        }
        if let Some(flag) = overrides.use_clipped_model_output {
            match &mut self.sampler {
                Sampler::Ddim(ddim) => ddim.use_clipped_model_output = flag,
                _ => return refuse("use_clipped_model_output"),
            }
            self.notes
                .push(format!("use_clipped_model_output = {flag}"));
        }
        if let Some(spacing) = overrides.spacing {
            self.options.spacing = spacing;
            self.notes
                .push(format!("timestep_spacing = {}", spacing.name()));
        }
        if let Some(karras) = overrides.karras {
            if !self.sampler.uses_sigmas() {
                return refuse("Karras σ");
            }
            let spacing = &mut self.options.sigmas.spacing;
            if karras {
                *spacing = SigmaSpacing::Karras;
            } else if *spacing == SigmaSpacing::Karras {
                *spacing = SigmaSpacing::Timesteps;
            }
            self.notes.push(format!("use_karras_sigmas = {karras}"));
        }
        if let Some(range) = overrides.sigma_range {
            if !self.sampler.uses_sigmas() {
                return refuse("a σ range");
            }
            self.options.sigmas.range = range;
            self.notes.push(format!("σ ramp range = {range:?}"));
        }
        if let Some(clip) = overrides.clip {
            self.options.clip_sample_range = clip;
            self.options.dynamic_threshold = None;
            self.notes.push(match clip {
                Some(r) => format!("clip x̂0 to ±{r}"),
                None => "no clipping or thresholding of x̂0".into(),
            });
        }
        if let Some(threshold) = overrides.threshold {
            self.options.dynamic_threshold = Some(threshold);
            self.notes.push(format!(
                "dynamic thresholding (ratio {}, max {})",
                threshold.ratio, threshold.max
            ));
        }
        if let Some(order) = overrides.order {
            match &mut self.sampler {
                Sampler::DpmSolver(dpm) => dpm.order = order,
                Sampler::UniPc(unipc) => unipc.order = order,
                Sampler::Lms { order: lms } => *lms = order,
                _ => return refuse("an order"),
            }
            self.notes.push(format!("order = {order}"));
        }
        self.check()?;
        Ok(self)
    }

    /// Every setting the sampler runs with, as `(name, value)` lines for a person to read.
    pub fn settings(&self) -> Vec<(String, String)> {
        let mut lines: Vec<(String, String)> = Vec::new();
        let mut put = |k: &str, v: String| lines.push((k.to_string(), v));
        let options = &self.options;
        let config = &self.schedule_config;
        put("sampler", named::label(&self.sampler));
        put("class", self.class.name().into());
        put("steps", options.steps.to_string());
        put(
            "schedule",
            match &config.trained_betas {
                Some(b) => format!("trained_betas ({} values)", b.len()),
                None => format!(
                    "{} from {} to {} over {} timesteps",
                    config.beta_schedule.name(),
                    config.beta_start,
                    config.beta_end,
                    config.num_train_timesteps
                ),
            },
        );
        put(
            "rescale_betas_zero_snr",
            config.rescale_betas_zero_snr.to_string(),
        );
        put("prediction_type", config.prediction_type.name().into());
        put("timestep_spacing", options.spacing.name().into());
        put("steps_offset", options.steps_offset.to_string());
        put(
            "x0",
            match (&options.dynamic_threshold, options.clip_sample_range) {
                (Some(t), _) => format!("dynamic thresholding, ratio {}, max {}", t.ratio, t.max),
                (None, Some(r)) => format!("clipped to ±{r}"),
                (None, None) => "as predicted (no clipping)".into(),
            },
        );
        if self.sampler.uses_sigmas() {
            let s = &options.sigmas;
            put(
                "sigmas",
                format!(
                    "{:?}{}",
                    s.spacing,
                    match s.spacing {
                        SigmaSpacing::Timesteps => String::new(),
                        _ => format!(
                            " between the {:?} σ{}{}",
                            s.range,
                            s.sigma_min
                                .map_or(String::new(), |m| format!(", sigma_min {m}")),
                            s.sigma_max
                                .map_or(String::new(), |m| format!(", sigma_max {m}"))
                        ),
                    }
                ),
            );
            put("final_sigmas_type", format!("{:?}", s.final_sigma));
        }
        match &self.sampler {
            Sampler::Ddpm { variance } => put("variance_type", variance.name().into()),
            Sampler::Ddim(d) => {
                put("eta", d.eta.to_string());
                put("set_alpha_to_one", d.set_alpha_to_one.to_string());
                put(
                    "use_clipped_model_output",
                    d.use_clipped_model_output.to_string(),
                );
            }
            Sampler::Pndm(p) => {
                put("skip_prk_steps", p.skip_prk_steps.to_string());
                put("set_alpha_to_one", p.set_alpha_to_one.to_string());
            }
            Sampler::Euler(e) => {
                put("interpolation_type", format!("{:?}", e.interpolation));
                put("continuous_timesteps", e.continuous_timesteps.to_string());
            }
            Sampler::EulerAncestral | Sampler::Heun => {}
            Sampler::Lms { order } => put("order", order.to_string()),
            Sampler::DpmSolver(d) => {
                put("algorithm_type", d.algorithm.name().into());
                put("solver_order", d.order.to_string());
                put("solver_type", format!("{:?}", d.solver_type));
                put("lower_order_final", d.lower_order_final.to_string());
                put("euler_at_final", d.euler_at_final.to_string());
                put("lambda_min_clipped", d.lambda_min_clipped.to_string());
            }
            Sampler::UniPc(u) => {
                put("solver_order", u.order.to_string());
                put("solver_type", format!("{:?}", u.variant));
                put("predict_x0", u.predict_x0.to_string());
                put("lower_order_final", u.lower_order_final.to_string());
                put("disable_corrector", format!("{:?}", u.disable_corrector));
            }
        }
        for (key, value) in &self.ignored {
            put(
                "ignored",
                format!(
                    "{key} = {} (not a {} setting; diffusers ignores it too)",
                    shown(value),
                    self.class.name()
                ),
            );
        }
        for (key, value) in &self.dropped {
            put(
                "dropped",
                format!(
                    "{key} = {} (not a {} setting)",
                    shown(value),
                    self.class.name()
                ),
            );
        }
        for note in &self.notes {
            put("note", note.clone());
        }
        lines
    }
}

/// Typed access to a complete class config.
struct Reader<'a> {
    config: &'a BTreeMap<String, Value>,
}

impl Reader<'_> {
    fn has(&self, key: &str) -> bool {
        self.config.contains_key(key)
    }

    fn value(&self, key: &str) -> &Value {
        self.config.get(key).unwrap_or(&Value::Null)
    }

    fn expected(&self, key: &str, what: &str) -> Error {
        Error::sampler(
            "scheduler_config.json",
            format!("{key} = {}: expected {what}", shown(self.value(key))),
        )
    }

    fn bool(&self, key: &str) -> Result<bool> {
        self.value(key)
            .as_bool()
            .ok_or_else(|| self.expected(key, "true or false"))
    }

    fn f64(&self, key: &str) -> Result<f64> {
        python_json::number(self.value(key)).ok_or_else(|| self.expected(key, "a number"))
    }

    fn opt_f64(&self, key: &str) -> Result<Option<f64>> {
        match self.value(key) {
            Value::Null => Ok(None),
            _ => {
                let x = self.f64(key)?;
                if !(x.is_finite() && x > 0.0) {
                    return Err(self.expected(key, "a finite positive number or null"));
                }
                Ok(Some(x))
            }
        }
    }

    fn usize(&self, key: &str) -> Result<usize> {
        self.value(key)
            .as_u64()
            .map(|n| n as usize)
            .ok_or_else(|| self.expected(key, "a non-negative integer"))
    }

    fn str(&self, key: &str) -> Result<&str> {
        self.value(key)
            .as_str()
            .ok_or_else(|| self.expected(key, "a string"))
    }

    /// The σ ramp settings of a class that has `use_karras_sigmas`.
    fn sigma_schedule(&self, class: SchedulerClass) -> Result<SigmaSchedule> {
        let mut ramps = vec![];
        for key in [
            "use_karras_sigmas",
            "use_exponential_sigmas",
            "use_beta_sigmas",
        ] {
            if self.bool(key)? {
                ramps.push(key);
            }
        }
        if ramps.len() > 1 {
            return Err(Error::sampler(
                "scheduler_config.json",
                format!(
                    "{} are all true; at most one σ ramp can be used",
                    ramps.join(" and ")
                ),
            ));
        }
        let spacing = match ramps.first() {
            Some(&"use_karras_sigmas") => SigmaSpacing::Karras,
            Some(&"use_exponential_sigmas") => SigmaSpacing::Exponential,
            Some(_) => {
                return Err(unsupported(
                    "use_beta_sigmas",
                    self.value("use_beta_sigmas"),
                    "beta-distributed σ are not supported; use use_karras_sigmas or use_exponential_sigmas",
                ))
            }
            None if self.has("use_lu_lambdas") && self.bool("use_lu_lambdas")? => SigmaSpacing::Lu,
            None => SigmaSpacing::Timesteps,
        };
        let final_sigma = if self.has("final_sigmas_type") {
            match self.str("final_sigmas_type")? {
                "zero" => FinalSigma::Zero,
                "sigma_min" => FinalSigma::SigmaMin,
                _ => return Err(self.expected("final_sigmas_type", "zero or sigma_min")),
            }
        } else {
            FinalSigma::Zero
        };
        let range = match class {
            SchedulerClass::DpmSolverMultistep | SchedulerClass::UniPcMultistep => {
                SigmaRange::Training
            }
            _ => SigmaRange::Visited,
        };
        Ok(SigmaSchedule {
            spacing,
            range,
            sigma_min: if self.has("sigma_min") {
                self.opt_f64("sigma_min")?
            } else {
                None
            },
            sigma_max: if self.has("sigma_max") {
                self.opt_f64("sigma_max")?
            } else {
                None
            },
            final_sigma,
        })
    }
}
