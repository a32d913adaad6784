//! Beta schedules and `NoiseSchedule` against golden tables made by diffusers (`fixtures/make_schedule_fixtures.py`).
//!
//! Two comparisons per table:
//! - against diffusers' own `DDPMScheduler` run in float64 (`*_f64`): the same formulas in the same order at the same
//!   precision, so the tables agree to 1e-12 (in practice to a few ulps of 1);
//! - against the unmodified float32 `DDPMScheduler` (`alphas_cumprod_diffusers_f32`): there ᾱ_t is a running product of
//!   t + 1 float32 factors in [0, 1], each rounding by at most 2^-24 absolute, plus the float32 rounding of each beta and,
//!   with zero-SNR rescaling, a few more roundings per step; so |Δᾱ_t| ≤ 4 (t + 1) 2^-24 (observed: ≤ 2.7 (t + 1) 2^-24).
//!   That bound grows to 2.4e-4 at t = 999, but the errors partly cancel: the largest |Δᾱ_t| in any table is 1.04e-6.

use diffuse_diffusion::schedule::{
    beta_schedule, rescale_zero_terminal_snr, BetaSchedule, NoiseSchedule, SchedulerConfig,
};
use serde_json::Value;

const F64_TOLERANCE: f64 = 1e-12;

fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap()
}

fn floats(value: &Value) -> Vec<f64> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect()
}

fn assert_close(what: &str, got: &[f64], want: &[f64], tolerance: impl Fn(usize) -> f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (t, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tolerance(t),
            "{what}[{t}]: got {g:e}, diffusers {w:e}, diff {:e}",
            (g - w).abs()
        );
    }
}

#[test]
fn every_schedule_matches_diffusers_float64_to_1e_12_and_float32_within_rounding() {
    for schedule in BetaSchedule::ALL {
        for steps in [1000, 50] {
            let golden = fixture(&format!("schedule_{}_T{steps}.json", schedule.name()));
            let beta_start = golden["beta_start"].as_f64().unwrap();
            let beta_end = golden["beta_end"].as_f64().unwrap();
            for table in golden["tables"].as_array().unwrap() {
                let rescale = table["rescale_betas_zero_snr"].as_bool().unwrap();
                let what = format!("{} T={steps} rescale={rescale}", schedule.name());
                let ours =
                    NoiseSchedule::new(schedule, steps, beta_start, beta_end, rescale).unwrap();
                assert_close(
                    &format!("{what} betas"),
                    &ours.betas,
                    &floats(&table["betas_f64"]),
                    |_| F64_TOLERANCE,
                );
                assert_close(
                    &format!("{what} alphas_cumprod"),
                    &ours.alphas_cumprod,
                    &floats(&table["alphas_cumprod_f64"]),
                    |_| F64_TOLERANCE,
                );
                assert_close(
                    &format!("{what} alphas_cumprod vs float32 diffusers"),
                    &ours.alphas_cumprod,
                    &floats(&table["alphas_cumprod_diffusers_f32"]),
                    |t| 4.0 * (t + 1) as f64 * f64::from(f32::EPSILON) / 2.0,
                );
            }
        }
    }
}

/// What `docs/diffusion-schedules.md` says of float32: its rounding moves ᾱ_t by far more than 1e-12 (so a float64
/// implementation cannot match the float32 table to that tolerance) but by at most about 1e-6 in every table (1.04e-6,
/// scaled linear rescaled at T = 50), while the worst-case bound 2.7 (t + 1) 2^-24 is 1.6e-4 at t = 999.
#[test]
fn float32_rounding_moves_alpha_bar_by_more_than_1e_12_and_about_1e_6_at_most() {
    let mut largest: f64 = 0.0;
    for schedule in BetaSchedule::ALL {
        for steps in [1000, 50] {
            let golden = fixture(&format!("schedule_{}_T{steps}.json", schedule.name()));
            for table in golden["tables"].as_array().unwrap() {
                let f64s = floats(&table["alphas_cumprod_f64"]);
                let f32s = floats(&table["alphas_cumprod_diffusers_f32"]);
                let gap = f64s
                    .iter()
                    .zip(&f32s)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0.0, f64::max);
                assert!(
                    gap > 1e-12,
                    "{} T={steps}: float32 agrees to {gap:e}",
                    schedule.name()
                );
                largest = largest.max(gap);
            }
        }
    }
    assert!(largest < 1.1e-6, "largest float32 deviation {largest:e}");
    let bound_at_999 = 2.7 * 1000.0 * 2f64.powi(-24);
    assert!((bound_at_999 - 1.6e-4).abs() < 0.05e-4, "{bound_at_999:e}");
}

/// Nichol & Dhariwal's ᾱ is `f(t/T)/f(0)` with `f(s) = cos²((s + 0.008)/1.008·π/2)`; the code builds the betas from
/// ratios of `f`, where the division by `f(0)` cancels. So the running product of (1 − β) at code index `i` (paper
/// step `t = i + 1`) is `f((i + 1)/T)/f(0)` wherever no beta was capped.
#[test]
fn cosine_alpha_bar_is_f_over_f_of_zero_at_the_next_step() {
    let schedule =
        NoiseSchedule::new(BetaSchedule::SquaredcosCapV2, 1000, 0.0, 0.0, false).unwrap();
    let f = |s: f64| {
        ((s + 0.008) / 1.008 * std::f64::consts::FRAC_PI_2)
            .cos()
            .powi(2)
    };
    let capped = schedule.betas.iter().position(|&b| b == 0.999).unwrap();
    assert!(
        capped > 990,
        "the cap binds only at the very end (first at index {capped})"
    );
    for i in 0..capped {
        let want = f((i + 1) as f64 / 1000.0) / f(0.0);
        let got = schedule.alphas_cumprod[i];
        // A product of up to 1000 f64 factors: a few hundred ulps at most.
        assert!(
            (got - want).abs() < 1e-13 * (1.0 + i as f64),
            "index {i}: {got} vs {want}"
        );
    }
    assert!(f(0.0) < 1.0 && (schedule.alphas_cumprod[0] - f(0.001)).abs() > 1e-6);
}

#[test]
fn linear_schedule_hits_both_end_points_exactly() {
    let betas = beta_schedule(BetaSchedule::Linear, 1000, 0.0001, 0.02).unwrap();
    assert_eq!((betas[0], betas[999]), (0.0001, 0.02));
    let single = beta_schedule(BetaSchedule::Linear, 1, 0.0001, 0.02).unwrap();
    assert_eq!(single, [0.0001]);
}

#[test]
fn cosine_schedule_caps_beta_at_0_999() {
    let betas = beta_schedule(BetaSchedule::SquaredcosCapV2, 1000, 0.0, 0.0).unwrap();
    assert_eq!(betas[999], 0.999);
    assert!(betas.iter().all(|&b| (0.0..=0.999).contains(&b)));
}

#[test]
fn zero_snr_rescaling_ends_at_zero_signal_and_keeps_the_first_step() {
    let betas = beta_schedule(BetaSchedule::ScaledLinear, 1000, 0.00085, 0.012).unwrap();
    let plain = NoiseSchedule::from_betas(betas.clone()).unwrap();
    let rescaled = NoiseSchedule::from_betas(rescale_zero_terminal_snr(&betas).unwrap()).unwrap();
    assert_eq!(rescaled.betas[999], 1.0);
    assert_eq!(rescaled.alpha_bar(999).unwrap(), 0.0);
    assert_eq!(rescaled.snr(999).unwrap(), 0.0);
    assert_eq!(rescaled.sigma(999).unwrap(), f64::INFINITY);
    assert!((rescaled.alpha_bar(0).unwrap() - plain.alpha_bar(0).unwrap()).abs() < 1e-15);
    assert!(rescale_zero_terminal_snr(&[0.1]).is_err());
    assert!(rescale_zero_terminal_snr(&[0.0, 0.0])
        .unwrap_err()
        .to_string()
        .contains("nothing to rescale"));
}

#[test]
fn sigma_and_snr_follow_from_alpha_bar() {
    let schedule = NoiseSchedule::new(BetaSchedule::Linear, 1000, 0.0001, 0.02, false).unwrap();
    for t in [0, 1, 500, 999] {
        let a = schedule.alpha_bar(t).unwrap();
        let sigma = schedule.sigma(t).unwrap();
        let snr = schedule.snr(t).unwrap();
        assert!((sigma * sigma - (1.0 - a) / a).abs() <= 1e-12 * sigma * sigma);
        assert!((snr * sigma * sigma - 1.0).abs() <= 1e-12);
    }
    // ᾱ_0 = 1 − β_0, so σ_0 = √(β_0 / (1 − β_0)).
    assert!((schedule.sigma(0).unwrap() - (0.0001f64 / 0.9999).sqrt()).abs() < 1e-15);
    let error = schedule.alpha_bar(1000).unwrap_err().to_string();
    assert!(
        error.contains("t = 1000 is out of range for a schedule of 1000 steps"),
        "{error}"
    );
}

#[test]
fn bad_schedule_inputs_are_errors_naming_the_parameter() {
    let error = beta_schedule(BetaSchedule::Linear, 0, 0.1, 0.2)
        .unwrap_err()
        .to_string();
    assert!(error.starts_with("num_train_timesteps"), "{error}");
    let error = beta_schedule(BetaSchedule::Linear, 10, 0.1, 1.5)
        .unwrap_err()
        .to_string();
    assert!(error.starts_with("beta_end: 1.5"), "{error}");
    let error = beta_schedule(BetaSchedule::Linear, 10, f64::NAN, 0.2)
        .unwrap_err()
        .to_string();
    assert!(error.starts_with("beta_start"), "{error}");
    let error = NoiseSchedule::from_betas(vec![0.1, -0.2])
        .unwrap_err()
        .to_string();
    assert!(error.contains("β_1 = -0.2"), "{error}");
    assert!(NoiseSchedule::from_betas(vec![]).is_err());
}

#[test]
fn schedule_from_config_uses_trained_betas_when_given() {
    let config = SchedulerConfig::from_json_str(
        r#"{"num_train_timesteps": 3, "trained_betas": [0.1, 0.2, 0.5]}"#,
    )
    .unwrap();
    let schedule = NoiseSchedule::from_config(&config).unwrap();
    let expected = [0.9, 0.9 * 0.8, 0.9 * 0.8 * 0.5];
    assert_close("trained", &schedule.alphas_cumprod, &expected, |_| 1e-15);

    let mismatch =
        SchedulerConfig::from_json_str(r#"{"num_train_timesteps": 4, "trained_betas": [0.1]}"#)
            .unwrap();
    let error = NoiseSchedule::from_config(&mismatch)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("trained_betas: has 1 values but num_train_timesteps is 4"),
        "{error}"
    );
}

#[test]
fn schedule_from_config_matches_the_direct_constructor() {
    let config = SchedulerConfig::from_json_str(
        r#"{"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012,
            "rescale_betas_zero_snr": true}"#,
    )
    .unwrap();
    let from_config = NoiseSchedule::from_config(&config).unwrap();
    let direct =
        NoiseSchedule::new(BetaSchedule::ScaledLinear, 1000, 0.00085, 0.012, true).unwrap();
    assert_eq!(from_config, direct);
}
