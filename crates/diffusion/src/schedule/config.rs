//! diffusers' `scheduler_config.json`: the keys `DDPMScheduler` (and its DDIM / Euler relatives) are built from.
//!
//! Reading checks every known key's type and value; a value this crate does not support is an error that names the key
//! and the value. A missing key or a `null` takes diffusers' `DDPMScheduler` default. Keys this struct does not type
//! (other schedulers' options such as `set_alpha_to_one` or `use_karras_sigmas`) are kept verbatim in
//! [`SchedulerConfig::extra`] and written back unchanged, so a config survives a round trip; what each scheduler
//! class makes of them is [`crate::sampler::scheduler`]'s business.

use std::collections::BTreeMap;

use serde_json::{Map, Number, Value};

use super::betas::BetaSchedule;
use super::error::{Result, ScheduleError};
use super::python_json;
use super::spacing::TimestepSpacing;

/// What the denoising network predicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PredictionType {
    /// The added noise `ε`.
    Epsilon,
    /// The clean sample `x_0`.
    Sample,
    /// The velocity `v = √ᾱ_t ε − √(1−ᾱ_t) x_0` (Salimans & Ho 2022).
    VPrediction,
}

/// The variance of the DDPM reverse step `p(x_{t−1} | x_t)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VarianceType {
    /// `β̃_t = (1 − ᾱ_{t−1})/(1 − ᾱ_t) · β_t`, the posterior variance.
    FixedSmall,
    /// As `FixedSmall`, handled in log space.
    FixedSmallLog,
    /// `β_t`.
    FixedLarge,
    /// As `FixedLarge`, handled in log space.
    FixedLargeLog,
    /// Predicted by the network.
    Learned,
    /// Predicted by the network as an interpolation between the small and large values (Nichol & Dhariwal 2021).
    LearnedRange,
}

macro_rules! named_enum {
    ($ty:ty, [$($variant:ident => $name:literal),+ $(,)?]) => {
        impl $ty {
            /// The name used in `scheduler_config.json`.
            pub fn name(self) -> &'static str {
                match self { $(Self::$variant => $name),+ }
            }

            /// The value called `name` in a config, if there is one.
            pub fn from_name(name: &str) -> Option<Self> {
                match name { $($name => Some(Self::$variant),)+ _ => None }
            }

            const NAMES: &'static [&'static str] = &[$($name),+];
        }
    };
}

named_enum!(PredictionType, [Epsilon => "epsilon", Sample => "sample", VPrediction => "v_prediction"]);
named_enum!(VarianceType, [
    FixedSmall => "fixed_small",
    FixedSmallLog => "fixed_small_log",
    FixedLarge => "fixed_large",
    FixedLargeLog => "fixed_large_log",
    Learned => "learned",
    LearnedRange => "learned_range",
]);

/// The contents of a diffusers `scheduler_config.json`. [`Default`] gives `DDPMScheduler`'s defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct SchedulerConfig {
    /// `_class_name`, e.g. `"DDPMScheduler"`.
    pub class_name: Option<String>,
    /// `_diffusers_version` of the writer.
    pub diffusers_version: Option<String>,
    pub num_train_timesteps: usize,
    pub beta_start: f64,
    pub beta_end: f64,
    pub beta_schedule: BetaSchedule,
    /// Explicit betas; when present they replace `beta_schedule`.
    pub trained_betas: Option<Vec<f64>>,
    pub variance_type: VarianceType,
    pub clip_sample: bool,
    pub clip_sample_range: f64,
    pub prediction_type: PredictionType,
    pub thresholding: bool,
    pub dynamic_thresholding_ratio: f64,
    pub sample_max_value: f64,
    pub timestep_spacing: TimestepSpacing,
    pub steps_offset: usize,
    pub rescale_betas_zero_snr: bool,
    /// Every other key, kept as read.
    pub extra: BTreeMap<String, Value>,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            class_name: None,
            diffusers_version: None,
            num_train_timesteps: 1000,
            beta_start: 0.0001,
            beta_end: 0.02,
            beta_schedule: BetaSchedule::Linear,
            trained_betas: None,
            variance_type: VarianceType::FixedSmall,
            clip_sample: true,
            clip_sample_range: 1.0,
            prediction_type: PredictionType::Epsilon,
            thresholding: false,
            dynamic_thresholding_ratio: 0.995,
            sample_max_value: 1.0,
            timestep_spacing: TimestepSpacing::Leading,
            steps_offset: 0,
            rescale_betas_zero_snr: false,
            extra: BTreeMap::new(),
        }
    }
}

impl SchedulerConfig {
    /// Parses the text of a `scheduler_config.json` (as Python writes JSON: `NaN`, `Infinity` and `-Infinity` are
    /// accepted, see [`python_json`]).
    pub fn from_json_str(text: &str) -> Result<Self> {
        let value: Value = python_json::parse(text).map_err(|e| {
            ScheduleError::new("scheduler_config.json", format!("not valid JSON: {e}"))
        })?;
        Self::from_json_value(value)
    }

    /// Reads a config from its JSON object (non-finite floats as [`python_json::parse`] leaves them).
    pub fn from_json_value(value: Value) -> Result<Self> {
        let Value::Object(map) = value else {
            return Err(ScheduleError::new(
                "scheduler_config.json",
                "the top level must be a JSON object",
            ));
        };
        let mut config = Self::default();
        for (key, value) in map {
            // diffusers writes `null` for unset options; a known key that is null keeps its default.
            if value.is_null() && KNOWN_KEYS.contains(&key.as_str()) {
                continue;
            }
            match key.as_str() {
                "_class_name" => config.class_name = optional_string(&key, &value)?,
                "_diffusers_version" => config.diffusers_version = optional_string(&key, &value)?,
                "num_train_timesteps" => {
                    config.num_train_timesteps = integer(&key, &value)?;
                    if config.num_train_timesteps == 0 {
                        return Err(ScheduleError::new(key, "must be at least 1, found 0"));
                    }
                }
                "beta_start" => config.beta_start = probability(&key, &value)?,
                "beta_end" => config.beta_end = probability(&key, &value)?,
                "beta_schedule" => {
                    config.beta_schedule = named(
                        &key,
                        &value,
                        BetaSchedule::from_name,
                        &BetaSchedule::ALL.map(BetaSchedule::name),
                    )?
                }
                "trained_betas" => config.trained_betas = Some(float_list(&key, &value)?),
                "variance_type" => {
                    config.variance_type =
                        named(&key, &value, VarianceType::from_name, VarianceType::NAMES)?
                }
                "clip_sample" => config.clip_sample = boolean(&key, &value)?,
                "clip_sample_range" => config.clip_sample_range = positive(&key, &value)?,
                "prediction_type" => {
                    config.prediction_type = named(
                        &key,
                        &value,
                        PredictionType::from_name,
                        PredictionType::NAMES,
                    )?
                }
                "thresholding" => config.thresholding = boolean(&key, &value)?,
                "dynamic_thresholding_ratio" => {
                    config.dynamic_thresholding_ratio = probability(&key, &value)?
                }
                "sample_max_value" => config.sample_max_value = positive(&key, &value)?,
                "timestep_spacing" => {
                    config.timestep_spacing = named(
                        &key,
                        &value,
                        TimestepSpacing::from_name,
                        &TimestepSpacing::ALL.map(TimestepSpacing::name),
                    )?
                }
                "steps_offset" => config.steps_offset = integer(&key, &value)?,
                "rescale_betas_zero_snr" => config.rescale_betas_zero_snr = boolean(&key, &value)?,
                _ => {
                    config.extra.insert(key, value);
                }
            }
        }
        Ok(config)
    }

    /// Reads a `scheduler_config.json` file.
    pub fn from_file(path: &std::path::Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ScheduleError::new(path.display().to_string(), format!("cannot read: {e}"))
        })?;
        Self::from_json_str(&text).map_err(|e| ScheduleError {
            what: format!("{}: {}", path.display(), e.what),
            ..e
        })
    }

    /// The config as a JSON object with keys in sorted order (as diffusers writes them); every known key is written,
    /// followed by [`extra`](Self::extra).
    pub fn to_json_value(&self) -> Value {
        let mut map: BTreeMap<String, Value> = self.extra.clone();
        let mut put = |key: &str, value: Value| {
            map.insert(key.to_string(), value);
        };
        if let Some(name) = &self.class_name {
            put("_class_name", Value::from(name.as_str()));
        }
        if let Some(version) = &self.diffusers_version {
            put("_diffusers_version", Value::from(version.as_str()));
        }
        put("num_train_timesteps", Value::from(self.num_train_timesteps));
        put("beta_start", float_value(self.beta_start));
        put("beta_end", float_value(self.beta_end));
        put("beta_schedule", Value::from(self.beta_schedule.name()));
        put(
            "trained_betas",
            match &self.trained_betas {
                Some(betas) => Value::Array(betas.iter().map(|&b| float_value(b)).collect()),
                None => Value::Null,
            },
        );
        put("variance_type", Value::from(self.variance_type.name()));
        put("clip_sample", Value::from(self.clip_sample));
        put("clip_sample_range", float_value(self.clip_sample_range));
        put("prediction_type", Value::from(self.prediction_type.name()));
        put("thresholding", Value::from(self.thresholding));
        put(
            "dynamic_thresholding_ratio",
            float_value(self.dynamic_thresholding_ratio),
        );
        put("sample_max_value", float_value(self.sample_max_value));
        put(
            "timestep_spacing",
            Value::from(self.timestep_spacing.name()),
        );
        put("steps_offset", Value::from(self.steps_offset));
        put(
            "rescale_betas_zero_snr",
            Value::from(self.rescale_betas_zero_snr),
        );
        Value::Object(map.into_iter().collect::<Map<String, Value>>())
    }

    /// The config as pretty-printed JSON text: keys sorted, two-space indent, trailing newline.
    pub fn to_json_string(&self) -> String {
        // The object was filled from a BTreeMap, so its keys are in sorted order with or without serde_json's
        // `preserve_order` feature.
        format!("{}\n", python_json::to_string_pretty(&self.to_json_value()))
    }
}

const KNOWN_KEYS: [&str; 15] = [
    "num_train_timesteps",
    "beta_start",
    "beta_end",
    "beta_schedule",
    "trained_betas",
    "variance_type",
    "clip_sample",
    "clip_sample_range",
    "prediction_type",
    "thresholding",
    "dynamic_thresholding_ratio",
    "sample_max_value",
    "timestep_spacing",
    "steps_offset",
    "rescale_betas_zero_snr",
];

/// A float as JSON; whole numbers stay floats (`1.0`, not `1`) so Python reads them back as `float`.
fn float_value(x: f64) -> Value {
    Number::from_f64(x).map_or(Value::Null, Value::Number)
}

fn found(value: &Value) -> String {
    if let Some(x) = python_json::non_finite(value) {
        return x.to_string();
    }
    let text = value.to_string();
    if text.chars().count() > 60 {
        format!("{}…", text.chars().take(60).collect::<String>())
    } else {
        text
    }
}

fn named<T>(key: &str, value: &Value, parse: fn(&str) -> Option<T>, names: &[&str]) -> Result<T> {
    value.as_str().and_then(parse).ok_or_else(|| {
        ScheduleError::new(
            key,
            format!(
                "unsupported value {}; expected one of {}",
                found(value),
                names.join(", ")
            ),
        )
    })
}

fn integer(key: &str, value: &Value) -> Result<usize> {
    value
        .as_u64()
        .and_then(|n| usize::try_from(n).ok())
        .ok_or_else(|| {
            ScheduleError::new(
                key,
                format!("expected a non-negative integer, found {}", found(value)),
            )
        })
}

fn float(key: &str, value: &Value) -> Result<f64> {
    value.as_f64().filter(|x| x.is_finite()).ok_or_else(|| {
        ScheduleError::new(key, format!("expected a number, found {}", found(value)))
    })
}

fn probability(key: &str, value: &Value) -> Result<f64> {
    let x = float(key, value)?;
    if (0.0..1.0).contains(&x) {
        Ok(x)
    } else {
        Err(ScheduleError::new(key, format!("{x} is not in [0, 1)")))
    }
}

fn positive(key: &str, value: &Value) -> Result<f64> {
    let x = float(key, value)?;
    if x > 0.0 {
        Ok(x)
    } else {
        Err(ScheduleError::new(key, format!("{x} must be positive")))
    }
}

fn boolean(key: &str, value: &Value) -> Result<bool> {
    value.as_bool().ok_or_else(|| {
        ScheduleError::new(
            key,
            format!("expected true or false, found {}", found(value)),
        )
    })
}

fn optional_string(key: &str, value: &Value) -> Result<Option<String>> {
    match value {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        _ => Err(ScheduleError::new(
            key,
            format!("expected a string, found {}", found(value)),
        )),
    }
}

fn float_list(key: &str, value: &Value) -> Result<Vec<f64>> {
    let items = value.as_array().ok_or_else(|| {
        ScheduleError::new(
            key,
            format!("expected a list of numbers, found {}", found(value)),
        )
    })?;
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            item.as_f64()
                .filter(|b| (0.0..=1.0).contains(b))
                .ok_or_else(|| {
                    ScheduleError::new(
                        key,
                        format!("element {i} is {}, not a beta in [0, 1]", found(item)),
                    )
                })
        })
        .collect()
}
