//! The `scheduler_config.json` of a score-SDE model, in diffusers' format: `ScoreSdeVeScheduler` for VE and
//! `ScoreSdeVpScheduler` for VP (diffusers 0.42.1 keys and defaults), and diffuse's own `ScoreSdeSubVpScheduler`
//! (the VP keys) for sub-VP, which diffusers does not have.
//!
//! Reading is strict: a key the class does not have is an error naming it (keys starting with `_` are metadata
//! and ignored), a missing key takes diffusers' default.

use super::pc::{Corrector, PcOptions, Predictor};
use super::process::Sde;
use crate::error::{Error, Result};
use crate::schedule::SchedulerConfig;
use serde_json::{Map, Value};

/// diffusers' class of the VE scheduler.
pub const VE_CLASS: &str = "ScoreSdeVeScheduler";
/// diffusers' class of the VP scheduler.
pub const VP_CLASS: &str = "ScoreSdeVpScheduler";
/// diffuse's class for the sub-VP SDE (not in diffusers).
pub const SUB_VP_CLASS: &str = "ScoreSdeSubVpScheduler";
/// The diffusers version whose score-SDE schedulers this module reads and writes.
pub const DIFFUSERS_VERSION: &str = "0.42.1";

/// The signal-to-noise ratio of the Langevin corrector for the VP-type SDEs, which have no `snr` key (the paper's
/// value for its CIFAR-10 models).
pub const DEFAULT_SNR: f64 = 0.16;

/// A score-SDE scheduler configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct ScoreSdeConfig {
    /// VE, VP or sub-VP.
    pub sde: Sde,
    /// `T`: a timestep-conditioned network sees `(T − 1)·t`.
    pub num_train_timesteps: usize,
    /// The last time `ε` of sampling.
    pub sampling_eps: f64,
    /// The Langevin corrector's signal-to-noise ratio (a key of the VE class only).
    pub snr: f64,
    /// Corrector steps per sampling step (a key of the VE class only).
    pub correct_steps: usize,
}

fn error(message: impl Into<String>) -> Error {
    Error::model("scheduler_config.json", message)
}

impl ScoreSdeConfig {
    /// Whether `class_name` is one of the score-SDE scheduler classes.
    pub fn is_score_sde_class(class_name: Option<&str>) -> bool {
        matches!(class_name, Some(VE_CLASS | VP_CLASS | SUB_VP_CLASS))
    }

    /// diffusers' `ScoreSdeVeScheduler()` defaults with the given noise levels.
    pub fn ve(sigma_min: f64, sigma_max: f64) -> Result<ScoreSdeConfig> {
        Ok(ScoreSdeConfig {
            sde: Sde::ve(sigma_min, sigma_max)?,
            num_train_timesteps: 2000,
            sampling_eps: 1e-5,
            snr: 0.15,
            correct_steps: 1,
        })
    }

    /// diffusers' `ScoreSdeVpScheduler()` defaults for `sde` (VP or sub-VP).
    pub fn vp_like(sde: Sde) -> Result<ScoreSdeConfig> {
        sde.validate()?;
        if !matches!(sde, Sde::Vp { .. } | Sde::SubVp { .. }) {
            return Err(error(format!(
                "the VP scheduler classes hold a VP or sub-VP SDE with linear β, not {}",
                sde.name()
            )));
        }
        Ok(ScoreSdeConfig {
            sde,
            num_train_timesteps: 2000,
            sampling_eps: 1e-3,
            snr: DEFAULT_SNR,
            correct_steps: 1,
        })
    }

    /// The diffusers class name of the SDE.
    pub fn class_name(&self) -> &'static str {
        match self.sde {
            Sde::Ve { .. } => VE_CLASS,
            Sde::SubVp { .. } => SUB_VP_CLASS,
            _ => VP_CLASS,
        }
    }

    /// Parses a score-SDE `scheduler_config.json`.
    pub fn from_json_str(text: &str) -> Result<ScoreSdeConfig> {
        let value: Value =
            serde_json::from_str(text).map_err(|e| error(format!("not valid JSON: {e}")))?;
        let Value::Object(map) = value else {
            return Err(error("the top level must be a JSON object"));
        };
        let class = map.get("_class_name").and_then(Value::as_str);
        let keys: &[&str] = match class {
            Some(VE_CLASS) => &[
                "num_train_timesteps",
                "snr",
                "sigma_min",
                "sigma_max",
                "sampling_eps",
                "correct_steps",
            ],
            Some(VP_CLASS | SUB_VP_CLASS) => {
                &["num_train_timesteps", "beta_min", "beta_max", "sampling_eps"]
            }
            other => {
                return Err(error(format!(
                    "_class_name {other:?} is not a score-SDE scheduler ({VE_CLASS}, {VP_CLASS} or {SUB_VP_CLASS})"
                )))
            }
        };
        if let Some(key) = map
            .keys()
            .find(|k| !k.starts_with('_') && !keys.contains(&k.as_str()))
        {
            return Err(error(format!(
                "{class:?} has no key '{key}'; its keys: {}",
                keys.join(", ")
            )));
        }
        let number = |key: &str, default: f64| -> Result<f64> {
            match map.get(key) {
                None | Some(Value::Null) => Ok(default),
                Some(v) => v
                    .as_f64()
                    .ok_or_else(|| error(format!("{key} must be a number, got {v}"))),
            }
        };
        let count = |key: &str, default: usize| -> Result<usize> {
            match map.get(key) {
                None | Some(Value::Null) => Ok(default),
                Some(v) => v
                    .as_u64()
                    .map(|n| n as usize)
                    .ok_or_else(|| error(format!("{key} must be a whole number ≥ 0, got {v}"))),
            }
        };
        let mut config = match class {
            Some(VE_CLASS) => {
                ScoreSdeConfig::ve(number("sigma_min", 0.01)?, number("sigma_max", 1348.0)?)?
            }
            Some(VP_CLASS) => ScoreSdeConfig::vp_like(Sde::vp(
                number("beta_min", 0.1)?,
                number("beta_max", 20.0)?,
            )?)?,
            _ => ScoreSdeConfig::vp_like(Sde::sub_vp(
                number("beta_min", 0.1)?,
                number("beta_max", 20.0)?,
            )?)?,
        };
        config.num_train_timesteps = count("num_train_timesteps", config.num_train_timesteps)?;
        config.sampling_eps = number("sampling_eps", config.sampling_eps)?;
        config.snr = number("snr", config.snr)?;
        config.correct_steps = count("correct_steps", config.correct_steps)?;
        config.validate()?;
        Ok(config)
    }

    /// The score-SDE config inside a `scheduler_config.json` read as a [`SchedulerConfig`] (which keeps the keys it
    /// does not know in `extra`): `None` when its class is not a score-SDE scheduler.
    pub fn from_scheduler_config(config: &SchedulerConfig) -> Result<Option<ScoreSdeConfig>> {
        if !Self::is_score_sde_class(config.class_name.as_deref()) {
            return Ok(None);
        }
        let mut map: Map<String, Value> = config.extra.clone().into_iter().collect();
        map.insert("_class_name".into(), config.class_name.clone().into());
        map.insert(
            "num_train_timesteps".into(),
            config.num_train_timesteps.into(),
        );
        Self::from_json_str(&Value::Object(map).to_string()).map(Some)
    }

    /// Refuses values no sampler can use.
    pub fn validate(&self) -> Result<()> {
        self.sde.validate()?;
        if self.num_train_timesteps == 0 {
            return Err(error("num_train_timesteps must be at least 1"));
        }
        if !(self.sampling_eps > 0.0 && self.sampling_eps < 1.0) {
            return Err(error(format!(
                "sampling_eps = {} must lie in (0, 1)",
                self.sampling_eps
            )));
        }
        if !(self.snr > 0.0 && self.snr.is_finite()) {
            return Err(error(format!("snr = {} must be positive", self.snr)));
        }
        Ok(())
    }

    /// The `scheduler_config.json` text: the class's keys only, as diffusers writes them.
    pub fn to_json_string(&self) -> String {
        let mut map = Map::new();
        map.insert("_class_name".into(), self.class_name().into());
        map.insert("_diffusers_version".into(), DIFFUSERS_VERSION.into());
        map.insert(
            "num_train_timesteps".into(),
            self.num_train_timesteps.into(),
        );
        map.insert("sampling_eps".into(), self.sampling_eps.into());
        match self.sde {
            Sde::Ve {
                sigma_min,
                sigma_max,
            } => {
                map.insert("sigma_min".into(), sigma_min.into());
                map.insert("sigma_max".into(), sigma_max.into());
                map.insert("snr".into(), self.snr.into());
                map.insert("correct_steps".into(), self.correct_steps.into());
            }
            Sde::Vp { beta_min, beta_max } | Sde::SubVp { beta_min, beta_max } => {
                map.insert("beta_min".into(), beta_min.into());
                map.insert("beta_max".into(), beta_max.into());
            }
            Sde::VpDiscrete(_) => {}
        }
        serde_json::to_string_pretty(&Value::Object(map)).expect("a JSON map always serialises")
    }

    /// The predictor–corrector sampler diffusers' `ScoreSdeVePipeline` runs with this config in `steps` steps:
    /// `correct_steps` Langevin corrections at `snr`, then a reverse-diffusion prediction, ending on the
    /// predictor's mean.
    pub fn pc_options(&self, steps: usize) -> PcOptions {
        PcOptions {
            steps,
            predictor: Predictor::ReverseDiffusion,
            corrector: match self.correct_steps {
                0 => Corrector::None,
                steps => Corrector::Langevin {
                    snr: self.snr,
                    steps,
                },
            },
            eps: self.sampling_eps,
            denoise: true,
        }
    }
}
