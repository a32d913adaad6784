//! `SchedulerConfig`: reading real diffusers `scheduler_config.json` files, rejecting bad values by key, writing back.

use diffuse_diffusion::schedule::{
    BetaSchedule, NoiseSchedule, PredictionType, SchedulerConfig, TimestepSpacing, VarianceType,
    MAX_TRAIN_TIMESTEPS,
};
use serde_json::Value;

/// The scheduler config shipped with Stable Diffusion 1.5 (a PNDM scheduler, keys as diffusers writes them).
const STABLE_DIFFUSION_15: &str = r#"{
  "_class_name": "PNDMScheduler",
  "_diffusers_version": "0.6.0",
  "beta_end": 0.012,
  "beta_schedule": "scaled_linear",
  "beta_start": 0.00085,
  "num_train_timesteps": 1000,
  "set_alpha_to_one": false,
  "skip_prk_steps": true,
  "steps_offset": 1,
  "trained_betas": null,
  "clip_sample": false
}"#;

#[test]
fn stable_diffusion_config_reads_known_keys_and_keeps_the_rest() {
    let config = SchedulerConfig::from_json_str(STABLE_DIFFUSION_15).unwrap();
    assert_eq!(config.class_name.as_deref(), Some("PNDMScheduler"));
    assert_eq!(config.diffusers_version.as_deref(), Some("0.6.0"));
    assert_eq!(config.beta_schedule, BetaSchedule::ScaledLinear);
    assert_eq!((config.beta_start, config.beta_end), (0.00085, 0.012));
    assert_eq!(config.steps_offset, 1);
    assert!(!config.clip_sample);
    assert_eq!(config.trained_betas, None);
    // Keys absent from the file take DDPMScheduler's defaults.
    assert_eq!(config.prediction_type, PredictionType::Epsilon);
    assert_eq!(config.timestep_spacing, TimestepSpacing::Leading);
    assert_eq!(config.variance_type, VarianceType::FixedSmall);
    assert_eq!(config.extra.len(), 2);
    assert_eq!(config.extra["skip_prk_steps"], Value::Bool(true));
    assert_eq!(config.extra["set_alpha_to_one"], Value::Bool(false));
}

#[test]
fn every_known_value_of_every_enum_key_parses() {
    for (key, names) in [
        (
            "beta_schedule",
            vec![
                "linear",
                "scaled_linear",
                "squaredcos_cap_v2",
                "sigmoid",
                "laplace",
            ],
        ),
        ("prediction_type", vec!["epsilon", "sample", "v_prediction"]),
        ("timestep_spacing", vec!["linspace", "leading", "trailing"]),
        (
            "variance_type",
            vec![
                "fixed_small",
                "fixed_small_log",
                "fixed_large",
                "fixed_large_log",
                "learned",
                "learned_range",
            ],
        ),
    ] {
        for name in names {
            let config =
                SchedulerConfig::from_json_str(&format!(r#"{{"{key}": "{name}"}}"#)).unwrap();
            let written = config.to_json_value();
            assert_eq!(
                written[key],
                Value::from(name),
                "{key} = {name} survives a round trip"
            );
        }
    }
}

#[test]
fn config_round_trips_through_json_text() {
    let mut config = SchedulerConfig::from_json_str(STABLE_DIFFUSION_15).unwrap();
    config.timestep_spacing = TimestepSpacing::Trailing;
    config.rescale_betas_zero_snr = true;
    config.prediction_type = PredictionType::VPrediction;
    config.trained_betas = Some(vec![0.1, 0.25]);
    let text = config.to_json_string();
    assert!(text.ends_with("}\n"));
    let back = SchedulerConfig::from_json_str(&text).unwrap();
    assert_eq!(back, config);
    // Keys are written sorted, as diffusers does; floats stay floats.
    let keys: Vec<&str> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix('"')?.split('"').next())
        .collect();
    let mut sorted = keys.clone();
    sorted.sort_unstable();
    assert_eq!(keys, sorted);
    assert!(text.contains("\"clip_sample_range\": 1.0"), "{text}");
}

/// Found by the `scheduler_config` fuzz target: serde_json's default float parser can land one ulp off the nearest
/// f64, so a value Python wrote (shortest round-trip form) read back as a different number and a config did not
/// survive a write/read round trip.
#[test]
fn floats_read_as_the_nearest_f64_and_round_trip() {
    let text = "0.06000000000000101";
    let nearest: f64 = text.parse().unwrap();
    let config = SchedulerConfig::from_json_str(&format!(
        r#"{{"beta_start": {text}, "trained_betas": [{text}], "other": [{text}]}}"#
    ))
    .unwrap();
    assert_eq!(config.beta_start, nearest);
    assert_eq!(config.trained_betas, Some(vec![nearest]));
    assert_eq!(
        SchedulerConfig::from_json_str(&config.to_json_string()).unwrap(),
        config
    );
}

#[test]
fn default_config_is_ddpm_schedulers_default() {
    let config = SchedulerConfig::from_json_str("{}").unwrap();
    assert_eq!(config, SchedulerConfig::default());
    assert_eq!(config.num_train_timesteps, 1000);
    assert_eq!((config.beta_start, config.beta_end), (0.0001, 0.02));
    assert!(config.clip_sample);
}

#[test]
fn unsupported_or_mistyped_values_are_errors_naming_key_and_value() {
    let cases = [
        (
            r#"{"beta_schedule": "cosine"}"#,
            "beta_schedule: unsupported value \"cosine\"; expected one of linear,",
        ),
        (
            r#"{"prediction_type": "flow"}"#,
            "prediction_type: unsupported value \"flow\"",
        ),
        (
            r#"{"timestep_spacing": 3}"#,
            "timestep_spacing: unsupported value 3",
        ),
        (
            r#"{"variance_type": "fixed"}"#,
            "variance_type: unsupported value \"fixed\"",
        ),
        (
            r#"{"num_train_timesteps": "1000"}"#,
            "num_train_timesteps: expected a non-negative integer, found \"1000\"",
        ),
        (
            r#"{"num_train_timesteps": 0}"#,
            "num_train_timesteps: must be at least 1",
        ),
        (
            r#"{"num_train_timesteps": 10.5}"#,
            "num_train_timesteps: expected a non-negative integer, found 10.5",
        ),
        (
            r#"{"steps_offset": -1}"#,
            "steps_offset: expected a non-negative integer, found -1",
        ),
        (r#"{"beta_start": 1.5}"#, "beta_start: 1.5 is not in [0, 1)"),
        (
            r#"{"beta_end": "0.02"}"#,
            "beta_end: expected a number, found \"0.02\"",
        ),
        (
            r#"{"clip_sample": "yes"}"#,
            "clip_sample: expected true or false, found \"yes\"",
        ),
        (
            r#"{"clip_sample_range": 0}"#,
            "clip_sample_range: 0 must be positive",
        ),
        (
            r#"{"trained_betas": [0.1, 2]}"#,
            "trained_betas: element 1 is 2, not a beta in [0, 1]",
        ),
        (
            r#"{"trained_betas": "none"}"#,
            "trained_betas: expected a list of numbers",
        ),
        (
            r#"{"_class_name": 5}"#,
            "_class_name: expected a string, found 5",
        ),
        (
            r#"[1, 2]"#,
            "scheduler_config.json: the top level must be a JSON object",
        ),
        (
            r#"{"beta_start": "#,
            "scheduler_config.json: not valid JSON",
        ),
    ];
    for (json, expected) in cases {
        let error = SchedulerConfig::from_json_str(json)
            .expect_err(json)
            .to_string();
        assert!(
            error.starts_with(expected),
            "{json}: {error:?} should start with {expected:?}"
        );
    }
}

#[test]
fn config_file_errors_name_the_file() {
    let path = std::env::temp_dir().join(format!(
        "diffuse-scheduler-config-{}.json",
        std::process::id()
    ));
    std::fs::write(&path, r#"{"beta_schedule": "karras"}"#).unwrap();
    let error = SchedulerConfig::from_file(&path).unwrap_err().to_string();
    std::fs::remove_file(&path).unwrap();
    assert!(
        error.contains(&path.display().to_string()) && error.contains("beta_schedule"),
        "{error}"
    );
}

/// Found by the `scheduler_config` fuzz target: `num_train_timesteps` of ten billion made building the schedule
/// allocate 80 GB. Past the supported maximum the schedule is refused with an error naming the key.
#[test]
fn a_schedule_with_billions_of_steps_is_refused_before_allocating() {
    let config = SchedulerConfig::from_json_str(r#"{"num_train_timesteps": 10000000000}"#).unwrap();
    let error = NoiseSchedule::from_config(&config).unwrap_err().to_string();
    assert!(
        error.contains("num_train_timesteps") && error.contains(&MAX_TRAIN_TIMESTEPS.to_string()),
        "{error}"
    );
    let config = SchedulerConfig {
        num_train_timesteps: MAX_TRAIN_TIMESTEPS,
        ..SchedulerConfig::default()
    };
    assert_eq!(
        NoiseSchedule::from_config(&config).unwrap().len(),
        MAX_TRAIN_TIMESTEPS
    );
}
