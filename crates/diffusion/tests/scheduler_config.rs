//! How a `scheduler_config.json` becomes a sampler: per-class keys and defaults, settings of other classes ignored as
//! diffusers ignores them, diffusers' `from_config` when another sampler is asked for, single-setting overrides,
//! and a clear error for every setting diffuse cannot honour.

use diffuse_diffusion::sampler::grid::{k_grid, multistep_grid, Multistep, SigmaInterpolation};
use diffuse_diffusion::sampler::scheduler::{SamplerOverrides, Scheduler, SchedulerClass};
use diffuse_diffusion::sampler::sigmas::training_sigmas;
use diffuse_diffusion::sampler::{
    DpmAlgorithm, FinalSigma, Sampler, SigmaRange, SigmaSpacing, UniPcVariant,
};
use diffuse_diffusion::schedule::{python_json, SchedulerConfig, TimestepSpacing, VarianceType};

fn resolve(json: &str) -> Scheduler {
    Scheduler::from_json_str(json).unwrap_or_else(|e| panic!("{json}: {e}"))
}

fn refused(json: &str) -> String {
    match Scheduler::from_json_str(json) {
        Ok(s) => panic!("{json} was accepted as {:?}", s.sampler),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_missing_key_takes_the_class_default_not_ddpms() {
    // Heun's defaults differ from DDPM's: betas 0.00085 → 0.012, linspace spacing, no clipping.
    let heun = resolve(r#"{"_class_name": "HeunDiscreteScheduler"}"#);
    assert_eq!(heun.schedule_config.beta_start, 0.00085);
    assert_eq!(heun.schedule_config.beta_end, 0.012);
    assert_eq!(heun.options.spacing, TimestepSpacing::Linspace);
    assert_eq!(heun.options.clip_sample_range, None);
    let ddpm = resolve("{}");
    assert_eq!(ddpm.class, SchedulerClass::Ddpm);
    assert_eq!(ddpm.options.spacing, TimestepSpacing::Leading);
    assert_eq!(ddpm.options.clip_sample_range, Some(1.0));
}

#[test]
fn python_non_finite_floats_are_read_and_written_back() {
    let dpm = resolve(
        r#"{"_class_name": "DPMSolverMultistepScheduler", "lambda_min_clipped": -Infinity, "variance_type": null}"#,
    );
    match &dpm.sampler {
        Sampler::DpmSolver(d) => assert_eq!(d.lambda_min_clipped, f64::NEG_INFINITY),
        other => panic!("{other:?}"),
    }
    let clipped =
        resolve(r#"{"_class_name": "DPMSolverMultistepScheduler", "lambda_min_clipped": -5.1}"#);
    match &clipped.sampler {
        Sampler::DpmSolver(d) => assert_eq!(d.lambda_min_clipped, -5.1),
        other => panic!("{other:?}"),
    }
    // A config with the token keeps it through SchedulerConfig's round trip.
    let text = r#"{"_class_name": "DPMSolverMultistepScheduler", "lambda_min_clipped": -Infinity, "note": "NaN is text"}"#;
    let config = SchedulerConfig::from_json_str(text).unwrap();
    let written = config.to_json_string();
    assert!(
        written.contains("\"lambda_min_clipped\": -Infinity"),
        "{written}"
    );
    assert!(written.contains("\"NaN is text\""), "{written}");
    assert_eq!(
        python_json::number(&python_json::parse("NaN").unwrap()).map(f64::is_nan),
        Some(true)
    );
}

#[test]
fn settings_of_other_classes_are_ignored_and_listed_typos_are_refused() {
    // Stable Diffusion's PNDM config carries DDIM's clip_sample; diffusers ignores it.
    let pndm = resolve(
        r#"{"_class_name": "PNDMScheduler", "clip_sample": false, "skip_prk_steps": true, "steps_offset": 1}"#,
    );
    assert_eq!(pndm.ignored.len(), 1);
    assert_eq!(pndm.ignored[0].0, "clip_sample");
    assert!(pndm
        .settings()
        .iter()
        .any(|(k, v)| k == "ignored" && v.contains("clip_sample")));
    let err = refused(r#"{"_class_name": "DDIMScheduler", "timestep_spacng": "trailing"}"#);
    assert!(err.contains("timestep_spacng"), "{err}");
}

#[test]
fn unknown_classes_and_unsupported_or_contradictory_settings_are_errors_naming_key_and_value() {
    let cases = [
        (
            r#"{"_class_name": "KarrasVeScheduler"}"#,
            "KarrasVeScheduler",
        ),
        (r#"{"_class_name": 7}"#, "_class_name"),
        (
            r#"{"_class_name": "EulerDiscreteScheduler", "use_beta_sigmas": true}"#,
            "use_beta_sigmas = true",
        ),
        (
            r#"{"_class_name": "EulerDiscreteScheduler", "use_karras_sigmas": true, "use_exponential_sigmas": true}"#,
            "use_karras_sigmas and use_exponential_sigmas",
        ),
        (
            r#"{"_class_name": "DPMSolverMultistepScheduler", "use_karras_sigmas": true, "use_lu_lambdas": true}"#,
            "use_lu_lambdas = true",
        ),
        (
            r#"{"_class_name": "DPMSolverMultistepScheduler", "algorithm_type": "dpmsolver"}"#,
            "final_sigmas_type",
        ),
        (
            r#"{"_class_name": "DPMSolverMultistepScheduler", "solver_order": 4}"#,
            "solver_order",
        ),
        (
            r#"{"_class_name": "DPMSolverMultistepScheduler", "algorithm_type": "edm"}"#,
            "algorithm_type = \"edm\"",
        ),
        (
            r#"{"_class_name": "UniPCMultistepScheduler", "lower_order_final": false}"#,
            "lower_order_final",
        ),
        (
            r#"{"_class_name": "UniPCMultistepScheduler", "use_flow_sigmas": true}"#,
            "use_flow_sigmas = true",
        ),
        (
            r#"{"_class_name": "DPMSolverMultistepScheduler", "use_dynamic_shifting": true}"#,
            "use_dynamic_shifting = true",
        ),
        (
            r#"{"_class_name": "DDPMScheduler", "variance_type": "fixed_large_log"}"#,
            "fixed_large_log",
        ),
        (
            r#"{"_class_name": "EulerDiscreteScheduler", "interpolation_type": "cubic"}"#,
            "interpolation_type = \"cubic\"",
        ),
        (r#"{"beta_schedule": "exp"}"#, "exp"),
        (r#"{"timestep_spacing": "middle"}"#, "middle"),
    ];
    for (json, needle) in cases {
        let err = refused(json);
        assert!(
            err.contains(needle),
            "{json}: '{err}' does not name '{needle}'"
        );
    }
}

#[test]
fn another_sampler_keeps_the_shared_settings_as_diffusers_from_config() {
    let ddpm = resolve(
        r#"{"_class_name": "DDPMScheduler", "beta_schedule": "squaredcos_cap_v2", "prediction_type": "v_prediction",
            "timestep_spacing": "trailing", "clip_sample": true, "variance_type": "fixed_large"}"#,
    );
    let dpm = ddpm.switch_to("dpm++2m").unwrap();
    assert_eq!(dpm.class, SchedulerClass::DpmSolverMultistep);
    assert_eq!(
        dpm.schedule_config.beta_schedule,
        ddpm.schedule_config.beta_schedule
    );
    assert_eq!(dpm.schedule_config.prediction_type.name(), "v_prediction");
    assert_eq!(dpm.options.spacing, TimestepSpacing::Trailing);
    // DPM-Solver has no clip_sample: it is left behind, and said so (variance_type it shares, and ignores unless
    // learned).
    assert_eq!(dpm.options.clip_sample_range, None);
    let dropped: Vec<&str> = dpm.dropped.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(dropped, ["clip_sample"]);
    // Its own settings take its defaults, then what the name fixes.
    match &dpm.sampler {
        Sampler::DpmSolver(d) => {
            assert_eq!(d.algorithm, DpmAlgorithm::DpmSolverPp);
            assert_eq!(d.order, 2);
            assert!(d.lower_order_final);
        }
        other => panic!("{other:?}"),
    }
    let dpm2m = ddpm.switch_to("dpm2m").unwrap();
    assert_eq!(dpm2m.options.sigmas.final_sigma, FinalSigma::SigmaMin);
    let sde = ddpm.switch_to("dpm++3m-sde").unwrap();
    assert!(sde.sampler.is_stochastic());
    let bh1 = ddpm.switch_to("unipc-bh1").unwrap();
    assert!(matches!(&bh1.sampler, Sampler::UniPc(u) if u.variant == UniPcVariant::Bh1));
    let ddim = ddpm.switch_to("ddim").unwrap();
    assert_eq!(ddim.options.clip_sample_range, Some(1.0));
    let err = ddpm.switch_to("dpm++5m").unwrap_err().to_string();
    assert!(err.contains("unknown sampler 'dpm++5m'"), "{err}");
}

/// diffusers remembers which keys a config left out (`_use_default_values`); `from_config` into another class gives
/// those the new class's defaults. Heun's betas default to 0.00085 → 0.012, DDPM's to 0.0001 → 0.02.
#[test]
fn keys_a_file_leaves_out_take_the_new_class_defaults() {
    let implicit = resolve(r#"{"_class_name": "DDPMScheduler", "steps_offset": 1}"#);
    assert_eq!(implicit.schedule_config.beta_start, 0.0001);
    let heun = implicit.switch_to("heun").unwrap();
    assert_eq!(heun.schedule_config.beta_start, 0.00085);
    assert_eq!(heun.options.steps_offset, 1);
    assert_eq!(heun.options.spacing, TimestepSpacing::Linspace);
    let given = resolve(r#"{"_class_name": "DDPMScheduler", "beta_start": 0.0001}"#);
    assert_eq!(
        given.switch_to("heun").unwrap().schedule_config.beta_start,
        0.0001
    );
}

#[test]
fn overrides_change_single_settings_and_refuse_what_does_not_apply() {
    let euler = Scheduler::named("euler").unwrap();
    let karras = euler
        .clone()
        .apply(&SamplerOverrides {
            karras: Some(true),
            spacing: Some(TimestepSpacing::Trailing),
            clip: Some(Some(1.5)),
            steps: Some(12),
            ..SamplerOverrides::default()
        })
        .unwrap();
    assert_eq!(karras.options.sigmas.spacing, SigmaSpacing::Karras);
    assert_eq!(karras.options.spacing, TimestepSpacing::Trailing);
    assert_eq!(karras.options.clip_sample_range, Some(1.5));
    assert_eq!(karras.options.steps, 12);
    for (overrides, needle) in [
        (
            SamplerOverrides {
                eta: Some(0.5),
                ..SamplerOverrides::default()
            },
            "eta",
        ),
        (
            SamplerOverrides {
                order: Some(2),
                ..SamplerOverrides::default()
            },
            "an order",
        ),
    ] {
        let err = euler.clone().apply(&overrides).unwrap_err().to_string();
        assert!(err.contains(needle) && err.contains("euler"), "{err}");
    }
    let err = Scheduler::named("ddim")
        .unwrap()
        .apply(&SamplerOverrides {
            karras: Some(true),
            ..SamplerOverrides::default()
        })
        .unwrap_err()
        .to_string();
    assert!(err.contains("Karras σ does not apply to ddim"), "{err}");
    let err = Scheduler::named("unipc")
        .unwrap()
        .apply(&SamplerOverrides {
            order: Some(5),
            ..SamplerOverrides::default()
        })
        .unwrap_err()
        .to_string();
    assert!(err.contains("UniPC order 5"), "{err}");
    let ddim = Scheduler::named("ddim")
        .unwrap()
        .apply(&SamplerOverrides {
            eta: Some(0.3),
            clip: Some(None),
            ..SamplerOverrides::default()
        })
        .unwrap();
    assert!(matches!(&ddim.sampler, Sampler::Ddim(d) if d.eta == 0.3));
    assert_eq!(ddim.options.clip_sample_range, None);
}

#[test]
fn a_ddpm_config_names_its_variance_type() {
    let learned = resolve(r#"{"variance_type": "learned_range"}"#);
    assert_eq!(
        learned.sampler,
        Sampler::Ddpm {
            variance: VarianceType::LearnedRange
        }
    );
}

/// Issue 26: the Karras ramp of the k-diffusion-style samplers spans the σ of the timesteps they visit, as diffusers'
/// Euler computes it (the fixtures `euler-karras-*` hold it to diffusers); the ramp over the training range, diffuse's
/// earlier choice, is an option. DPM-Solver and UniPC span the training range, as diffusers does.
#[test]
fn karras_sigmas_span_the_visited_timesteps_unless_asked_for_the_training_range() {
    let euler = Scheduler::named("euler")
        .unwrap()
        .apply(&SamplerOverrides {
            karras: Some(true),
            spacing: Some(TimestepSpacing::Trailing),
            steps: Some(10),
            ..SamplerOverrides::default()
        })
        .unwrap();
    let table = training_sigmas(&euler.schedule).unwrap();
    let grid = k_grid(
        &euler.schedule,
        &euler.options,
        SigmaInterpolation::Linear,
        false,
    )
    .unwrap();
    // Trailing with 10 of 1000 steps visits 999, 899, …, 99.
    let f32_close = |a: f64, b: f64| (a - b).abs() <= 1e-6 * b;
    assert!(f32_close(grid.sigmas[0], table[999]));
    assert!(f32_close(grid.sigmas[9], table[99]), "{:?}", grid.sigmas);
    assert_eq!(grid.sigmas[10], 0.0);
    let training = euler
        .clone()
        .apply(&SamplerOverrides {
            sigma_range: Some(SigmaRange::Training),
            ..SamplerOverrides::default()
        })
        .unwrap();
    let grid = k_grid(
        &training.schedule,
        &training.options,
        SigmaInterpolation::Linear,
        false,
    )
    .unwrap();
    assert!(f32_close(grid.sigmas[9], table[0]), "{:?}", grid.sigmas);
    // DPM-Solver's Karras ramp spans the training range whatever the spacing.
    let dpm = Scheduler::named("dpm++2m")
        .unwrap()
        .apply(&SamplerOverrides {
            karras: Some(true),
            spacing: Some(TimestepSpacing::Trailing),
            steps: Some(10),
            ..SamplerOverrides::default()
        })
        .unwrap();
    assert_eq!(dpm.options.sigmas.range, SigmaRange::Training);
    let grid = multistep_grid(
        &dpm.schedule,
        &dpm.options,
        Multistep::DpmSolver {
            lambda_min_clipped: f64::NEG_INFINITY,
            truncate_ramp_timesteps: false,
        },
    )
    .unwrap();
    assert!(f32_close(grid.sigmas[9], table[0]), "{:?}", grid.sigmas);
    assert_eq!(grid.timesteps[9], 0.0);
}

/// diffusers truncates (rather than rounds) the Karras timesteps of DPM-Solver on a `squaredcos_cap_v2` schedule.
/// Its own run of this case starts at 998 instead of 999, because `_sigma_to_t` returns 998.99999… for σ_max in
/// float32 and the truncation drops it; the other timesteps are diffusers' [998, 998, 997, 983, 682, 0].
#[test]
fn dpm_solver_truncates_karras_timesteps_on_a_cosine_schedule() {
    let dpm = resolve(
        r#"{"_class_name": "DPMSolverMultistepScheduler", "use_karras_sigmas": true,
            "beta_schedule": "squaredcos_cap_v2"}"#,
    )
    .apply(&SamplerOverrides {
        steps: Some(7),
        ..SamplerOverrides::default()
    })
    .unwrap();
    let Sampler::DpmSolver(settings) = &dpm.sampler else {
        panic!("{:?}", dpm.sampler)
    };
    assert!(settings.truncate_ramp_timesteps);
    let grid = multistep_grid(
        &dpm.schedule,
        &dpm.options,
        Multistep::DpmSolver {
            lambda_min_clipped: settings.lambda_min_clipped,
            truncate_ramp_timesteps: true,
        },
    )
    .unwrap();
    assert_eq!(
        grid.timesteps[1..],
        [998.0, 998.0, 997.0, 983.0, 682.0, 0.0]
    );
}

#[test]
fn every_named_sampler_resolves_and_reports_its_settings() {
    for name in diffuse_diffusion::sampler::named::ALL.iter().chain(&[
        "plms",
        "unipc-bh1",
        "dpm1m",
        "dpm++1m",
        "dpm3m",
        "dpm2m-sde",
    ]) {
        let scheduler = Scheduler::named(name).unwrap();
        let settings = scheduler.settings();
        assert_eq!(settings[0], ("sampler".to_string(), name.to_string()));
        assert!(settings.iter().any(|(k, _)| k == "prediction_type"));
    }
}
