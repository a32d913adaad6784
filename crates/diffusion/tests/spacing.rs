//! Inference timesteps and Karras sigmas against diffusers' `set_timesteps` and `_convert_to_karras`
//! (`fixtures/make_schedule_fixtures.py`). Timesteps are integers and must agree exactly; Karras sigmas are numpy f64
//! computed with the same operations in the same order, so they agree to 1e-12 relative.

use diffuse_diffusion::schedule::{
    karras_sigmas, leading_timesteps, linspace_timesteps, timesteps, trailing_timesteps,
    NoiseSchedule, TimestepSpacing,
};
use serde_json::Value;

fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn usize_of(value: &Value) -> usize {
    value.as_u64().unwrap() as usize
}

#[test]
fn timesteps_equal_diffusers_for_every_spacing_and_offset() {
    let golden = fixture("timesteps.json");
    let cases = golden["cases"].as_array().unwrap();
    assert!(cases.len() > 40);
    for case in cases {
        let spacing = TimestepSpacing::from_name(case["spacing"].as_str().unwrap()).unwrap();
        let train = usize_of(&case["num_train_timesteps"]);
        let steps = usize_of(&case["num_inference_steps"]);
        let offset = usize_of(&case["steps_offset"]);
        let want: Vec<usize> = case["timesteps"]
            .as_array()
            .unwrap()
            .iter()
            .map(usize_of)
            .collect();
        let got = timesteps(spacing, train, steps, offset).unwrap();
        assert_eq!(
            got,
            want,
            "{} T={train} N={steps} offset={offset}",
            spacing.name()
        );
    }
}

#[test]
fn timesteps_agree_with_diffusers_for_every_step_count_up_to_1000() {
    let golden = fixture("timesteps.json");
    for spacing in TimestepSpacing::ALL {
        let rows = golden["sweep_T1000"][spacing.name()].as_array().unwrap();
        assert_eq!(rows.len(), 1000);
        for row in rows {
            let [n, sum, weighted] = [0, 1, 2].map(|i| row[i].as_u64().unwrap());
            let got = timesteps(spacing, 1000, n as usize, 0).unwrap();
            assert_eq!(got.len() as u64, n);
            let got_sum: u64 = got.iter().map(|&t| t as u64).sum();
            let got_weighted: u64 = got
                .iter()
                .enumerate()
                .map(|(k, &t)| (k as u64 + 1) * t as u64)
                .sum();
            assert_eq!(
                (got_sum, got_weighted),
                (sum, weighted),
                "{} N={n}",
                spacing.name()
            );
        }
    }
}

#[test]
fn trailing_spacing_returns_exactly_n_steps_where_numpy_arange_overshoots() {
    // For T = 1000, N = 61, numpy's arange(1000, 0, -1000/61) has 62 elements and diffusers appends timestep -1.
    let got = trailing_timesteps(1000, 61).unwrap();
    assert_eq!(got.len(), 61);
    assert_eq!((got[0], got[60]), (999, 15));
}

#[test]
fn spacings_are_strictly_descending_and_in_range() {
    for spacing in TimestepSpacing::ALL {
        for (train, steps) in [
            (1000, 1),
            (1000, 7),
            (1000, 999),
            (1000, 1000),
            (17, 5),
            (2, 2),
        ] {
            let ts = timesteps(spacing, train, steps, 0).unwrap();
            assert_eq!(ts.len(), steps);
            assert!(
                ts.windows(2).all(|w| w[0] > w[1]),
                "{} T={train} N={steps}: {ts:?}",
                spacing.name()
            );
            assert!(ts.iter().all(|&t| t < train));
        }
    }
    assert_eq!(trailing_timesteps(1000, 10).unwrap()[0], 999);
    assert_eq!(
        linspace_timesteps(1000, 10).unwrap(),
        [999, 888, 777, 666, 555, 444, 333, 222, 111, 0]
    );
    assert_eq!(
        leading_timesteps(1000, 10, 1).unwrap(),
        [901, 801, 701, 601, 501, 401, 301, 201, 101, 1]
    );
}

#[test]
fn bad_step_counts_and_offsets_are_errors_naming_the_parameter() {
    for spacing in TimestepSpacing::ALL {
        let error = timesteps(spacing, 1000, 0, 0).unwrap_err().to_string();
        assert!(
            error.starts_with("num_inference_steps: must be at least 1"),
            "{error}"
        );
        let error = timesteps(spacing, 50, 51, 0).unwrap_err().to_string();
        assert!(
            error.contains("51 exceeds num_train_timesteps = 50"),
            "{error}"
        );
    }
    // diffusers would hand out timestep 50 here, one past the last; the crate refuses.
    let error = leading_timesteps(50, 50, 1).unwrap_err().to_string();
    assert!(
        error.starts_with("steps_offset: 1 moves the largest leading timestep 49"),
        "{error}"
    );
    assert!(leading_timesteps(50, 10, usize::MAX).is_err());
}

#[test]
fn karras_sigmas_match_diffusers_to_1e_12_relative() {
    let golden = fixture("karras.json");
    for case in golden["cases"].as_array().unwrap() {
        let n = usize_of(&case["n"]);
        let [sigma_min, sigma_max, rho] =
            ["sigma_min", "sigma_max", "rho"].map(|k| case[k].as_f64().unwrap());
        let want: Vec<f64> = case["sigmas"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        let got = karras_sigmas(n, sigma_min, sigma_max, rho).unwrap();
        assert_eq!(got.len(), want.len());
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(
                (g - w).abs() <= 1e-12 * w.abs(),
                "n={n} σ_min={sigma_min} [{i}]: {g:e} vs {w:e}"
            );
        }
        assert_eq!(got[0], sigma_max.powf(1.0 / rho).powf(rho));
    }
}

#[test]
fn karras_range_from_a_schedule_matches_diffusers_sigmas() {
    let golden = fixture("karras.json");
    let schedule = NoiseSchedule::new(
        diffuse_diffusion::schedule::BetaSchedule::ScaledLinear,
        1000,
        0.00085,
        0.012,
        false,
    )
    .unwrap();
    let first = golden["scaled_linear_sigma_first"].as_f64().unwrap();
    let last = golden["scaled_linear_sigma_last"].as_f64().unwrap();
    assert!((schedule.sigma(0).unwrap() - first).abs() <= 1e-12 * first);
    assert!((schedule.sigma(999).unwrap() - last).abs() <= 1e-12 * last);
}

#[test]
fn karras_rejects_bad_ranges() {
    assert!(karras_sigmas(0, 0.1, 10.0, 7.0).is_err());
    assert!(karras_sigmas(5, 10.0, 0.1, 7.0).is_err());
    assert!(karras_sigmas(5, -1.0, 10.0, 7.0).is_err());
    assert!(karras_sigmas(5, 0.1, f64::INFINITY, 7.0).is_err());
    assert!(karras_sigmas(5, 0.1, 10.0, 0.0).is_err());
    assert_eq!(karras_sigmas(1, 0.1, 10.0, 7.0).unwrap().len(), 1);
    let sigmas = karras_sigmas(20, 0.002, 80.0, 7.0).unwrap();
    assert!(sigmas.windows(2).all(|w| w[0] > w[1]));
    assert!((sigmas[19] - 0.002).abs() < 1e-15);
}
