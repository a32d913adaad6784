//! Fused q_sample / sampler_step against closed-form f64 formulas written independently of the coefficient algebra.

mod common;

use common::{assert_close, values, with_threads};
use diffuse_cpu_kernels::noise::{
    q_sample, sampler_step, DdpmVariance, Prediction, StepCoefficients,
};
use diffuse_cpu_kernels::philox::{fill_normal, normal_at};
use proptest::prelude::*;

const SEED: u64 = 0x0D1F_F05E;

#[test]
fn q_sample_noise_is_the_philox_stream_and_x_t_the_forward_process() {
    let (batch, per) = (3, 5 * 8192 / 3 + 7); // chunks that straddle samples, ragged end
    let x0 = values(1, batch * per);
    let ab = [0.9f64, 0.5, 0.01];
    let sab: Vec<f32> = ab.iter().map(|a| a.sqrt() as f32).collect();
    let somab: Vec<f32> = ab.iter().map(|a| (1.0 - a).sqrt() as f32).collect();
    let (mut x_t, mut eps) = (vec![0.0; x0.len()], vec![0.0; x0.len()]);
    q_sample(&x0, &sab, &somab, SEED, 123, &mut x_t, &mut eps).unwrap();

    let mut expected_eps = vec![0.0; x0.len()];
    fill_normal(SEED, 123, &mut expected_eps);
    assert_eq!(eps, expected_eps);
    let expected: Vec<f64> = (0..x0.len())
        .map(|i| {
            let a = ab[i / per];
            a.sqrt() * f64::from(x0[i]) + (1.0 - a).sqrt() * f64::from(eps[i])
        })
        .collect();
    // Two products and a sum in f32, plus the f32 rounding of the coefficients: ~4 ulp of |terms| ≤ ~6.
    assert_close("x_t", &x_t, &expected, 0.0, 6.0 * 4.0 * 2f64.powi(-24));
}

#[test]
fn q_sample_noise_has_unit_moments() {
    let n = 1 << 20;
    let (mut x_t, mut eps) = (vec![0.0; n], vec![0.0; n]);
    q_sample(&vec![0.0; n], &[0.0], &[1.0], 77, 0, &mut x_t, &mut eps).unwrap();
    let mean = eps.iter().map(|&v| f64::from(v)).sum::<f64>() / n as f64;
    let var = eps
        .iter()
        .map(|&v| (f64::from(v) - mean).powi(2))
        .sum::<f64>()
        / n as f64;
    // Five standard errors: 5/sqrt(n) for the mean, 5·sqrt(2/n) for the variance.
    assert!(mean.abs() < 5.0 / (n as f64).sqrt(), "mean {mean}");
    assert!(
        (var - 1.0).abs() < 5.0 * (2.0 / n as f64).sqrt(),
        "variance {var}"
    );
    assert_eq!(x_t, eps);
}

/// ε̂ implied by the model output, written from the definitions of each target.
fn epsilon_hat(ab: f64, target: Prediction, x_t: f64, out: f64) -> f64 {
    match target {
        Prediction::Epsilon => out,
        Prediction::Sample => (x_t - ab.sqrt() * out) / (1.0 - ab).sqrt(),
        // v = sqrt(ᾱ)ε − sqrt(1−ᾱ)x0 and x_t = sqrt(ᾱ)x0 + sqrt(1−ᾱ)ε give ε = sqrt(ᾱ)v + sqrt(1−ᾱ)x_t.
        Prediction::VPrediction => ab.sqrt() * out + (1.0 - ab).sqrt() * x_t,
    }
}

/// DDPM's reverse step in Ho et al.'s ε-form (Algorithm 2): `(x_t − β/sqrt(1−ᾱ)·ε̂)/sqrt(α) + σz`.
fn ddpm_reference(
    ab: f64,
    ab_prev: f64,
    small: bool,
    target: Prediction,
    x_t: f64,
    out: f64,
    z: f64,
) -> f64 {
    let alpha = ab / ab_prev;
    let beta = 1.0 - alpha;
    let var = if ab_prev == 1.0 {
        0.0
    } else if small {
        beta * (1.0 - ab_prev) / (1.0 - ab)
    } else {
        beta
    };
    (x_t - beta / (1.0 - ab).sqrt() * epsilon_hat(ab, target, x_t, out)) / alpha.sqrt()
        + var.sqrt() * z
}

/// DDIM's step (Song et al., eq. 12) in its ε-form.
fn ddim_reference(
    ab: f64,
    ab_prev: f64,
    eta: f64,
    target: Prediction,
    x_t: f64,
    out: f64,
    z: f64,
) -> f64 {
    let eps = epsilon_hat(ab, target, x_t, out);
    let x0 = (x_t - (1.0 - ab).sqrt() * eps) / ab.sqrt();
    let sigma = eta * ((1.0 - ab_prev) / (1.0 - ab)).sqrt() * (1.0 - ab / ab_prev).sqrt();
    ab_prev.sqrt() * x0 + (1.0 - ab_prev - sigma * sigma).max(0.0).sqrt() * eps + sigma * z
}

const TARGETS: [Prediction; 3] = [
    Prediction::Epsilon,
    Prediction::Sample,
    Prediction::VPrediction,
];

fn run_step(
    coef: &[StepCoefficients],
    clip: Option<f32>,
    x_t: &[f32],
    out: &[f32],
) -> (Vec<f32>, Vec<f32>) {
    let (mut x_prev, mut x0_hat) = (vec![0.0; x_t.len()], vec![0.0; x_t.len()]);
    sampler_step(x_t, out, coef, clip, SEED, 40, &mut x_prev, &mut x0_hat).unwrap();
    (x_prev, x0_hat)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn sampler_step_matches_ddpm_and_ddim_closed_forms(
        per in 1usize..50, ab_t in 0.02f64..0.98, ratio in 0.0f64..1.0, eta in 0.0f64..1.5, small: bool,
        last: bool, seed in 0u64..1000,
    ) {
        // ᾱ_prev between ᾱ_t and 1 (exactly 1 for the last step).
        let ab_prev = if last { 1.0 } else { ab_t + ratio * (1.0 - ab_t) * 0.99 };
        let batch = 2;
        let x_t = values(seed, batch * per);
        let out = values(seed + 1, batch * per);
        let variance = if small { DdpmVariance::FixedSmall } else { DdpmVariance::FixedLarge };
        for target in TARGETS {
            let ddpm = StepCoefficients::ddpm(ab_t, ab_prev, target, variance).unwrap();
            let ddim = StepCoefficients::ddim(ab_t, ab_prev, eta, target).unwrap();
            // Sample 0 takes the DDPM step, sample 1 the DDIM step: per-sample coefficients are indexed by sample.
            let (x_prev, _) = run_step(&[ddpm, ddim], None, &x_t, &out);
            let expected: Vec<f64> = (0..x_t.len())
                .map(|i| {
                    let (xt, o, z) = (f64::from(x_t[i]), f64::from(out[i]), f64::from(normal_at(SEED, 40 + i as u64)));
                    if i < per {
                        ddpm_reference(ab_t, ab_prev, small, target, xt, o, z)
                    } else {
                        ddim_reference(ab_t, ab_prev, eta, target, xt, o, z)
                    }
                })
                .collect();
            // With ᾱ_t ≥ 0.02 the x̂0 coefficients are at most sqrt(0.98/0.02) ≈ 7, so |x̂0| ≤ 14 and every term of
            // the step is ≤ ~15 in size. The f32 coefficients (rel 2^-24 each) and ~6 f32 operations give an absolute
            // error ≲ 15·12·2^-24 ≈ 1.1e-5; 2^-16 ≈ 1.5e-5 bounds it.
            assert_close(&format!("{target:?}"), &x_prev, &expected, 0.0, 2f64.powi(-16));
        }
    }
}

#[test]
fn sampler_step_clips_x0_and_builds_the_mean_from_the_clipped_value() {
    let (ab_t, ab_prev) = (0.3f64, 0.6f64);
    let coef = StepCoefficients::ddpm(ab_t, ab_prev, Prediction::Sample, DdpmVariance::FixedSmall)
        .unwrap();
    let x_t = [0.2f32, -0.4, 0.1];
    let out = [3.0f32, -5.0, 0.25];
    let (x_prev, x0_hat) = run_step(&[coef], Some(1.0), &x_t, &out);
    assert_eq!(x0_hat, [1.0, -1.0, 0.25]);
    let beta = 1.0 - ab_t / ab_prev;
    for i in 0..3 {
        // The posterior mean of Ho et al. eq. 7 with the clipped x0.
        let mean = ab_prev.sqrt() * beta / (1.0 - ab_t) * f64::from(x0_hat[i])
            + (ab_t / ab_prev).sqrt() * (1.0 - ab_prev) / (1.0 - ab_t) * f64::from(x_t[i]);
        let sigma = (beta * (1.0 - ab_prev) / (1.0 - ab_t)).sqrt();
        let expected = mean + sigma * f64::from(normal_at(SEED, 40 + i as u64));
        assert!(
            (f64::from(x_prev[i]) - expected).abs() < 1e-6,
            "{i}: {} vs {expected}",
            x_prev[i]
        );
    }
}

#[test]
fn deterministic_steps_draw_no_noise() {
    let coef = StepCoefficients::ddim(0.4, 0.7, 0.0, Prediction::Epsilon).unwrap();
    assert_eq!(coef.sigma, 0.0);
    let x_t = values(5, 100);
    let out = values(6, 100);
    let (a, _) = run_step(&[coef], None, &x_t, &out);
    let mut b = vec![0.0; 100];
    let mut x0 = vec![0.0; 100];
    sampler_step(&x_t, &out, &[coef], None, SEED + 1, 999, &mut b, &mut x0).unwrap();
    assert_eq!(a, b, "the seed must not matter when σ = 0");
}

#[test]
fn ddim_with_eta_one_has_the_ddpm_posterior_variance() {
    let (ab_t, ab_prev) = (0.25, 0.5);
    let ddim = StepCoefficients::ddim(ab_t, ab_prev, 1.0, Prediction::Epsilon).unwrap();
    let ddpm = StepCoefficients::ddpm(ab_t, ab_prev, Prediction::Epsilon, DdpmVariance::FixedSmall)
        .unwrap();
    assert!((ddim.sigma - ddpm.sigma).abs() < 1e-7);
    assert!((ddim.mean_from_x0 - ddpm.mean_from_x0).abs() < 1e-6);
    assert!((ddim.mean_from_xt - ddpm.mean_from_xt).abs() < 1e-6);
}

/// `1 − ᾱ_prev − σ²` with `σ² = η²·β̃` factors as `(1 − ᾱ_prev)·(1 − η²·β/(1 − ᾱ_t))`, `β = 1 − ᾱ_t/ᾱ_prev`: it turns
/// negative (and is clamped to 0) only for `η² > (1 − ᾱ_t)/β`, which is above 1 whenever `ᾱ_prev < 1`. Here
/// ᾱ_t = 0.5, ᾱ_prev = 0.6: β = 1/6, the threshold is η = √3, and η = 1.5 still keeps a deterministic part.
#[test]
fn ddim_deterministic_part_vanishes_only_past_eta_squared_equal_to_one_minus_alpha_bar_over_beta() {
    let (ab_t, ab_prev) = (0.5f64, 0.6f64);
    let beta = 1.0 - ab_t / ab_prev;
    let threshold = ((1.0 - ab_t) / beta).sqrt();
    assert!((threshold - 3f64.sqrt()).abs() < 1e-12);
    let k = |eta: f64| {
        StepCoefficients::ddim(ab_t, ab_prev, eta, Prediction::Epsilon)
            .unwrap()
            .mean_from_xt
    };
    // k = √((1 − ᾱ_prev)(1 − η²β/(1 − ᾱ_t)))/√(1 − ᾱ_t); f32 coefficients: 1e-6 is a few ulps.
    let want = |eta: f64| {
        ((1.0 - ab_prev) * (1.0 - eta * eta * beta / (1.0 - ab_t))).sqrt() / (1.0 - ab_t).sqrt()
    };
    for eta in [1.0, 1.5, 1.7] {
        assert!(eta < threshold);
        assert!(k(eta) > 0.0, "η = {eta}");
        assert!((f64::from(k(eta)) - want(eta)).abs() < 1e-6, "η = {eta}");
    }
    for eta in [1.75, 2.0, 5.0] {
        assert_eq!(k(eta), 0.0, "η = {eta} is past the threshold {threshold}");
    }
}

#[test]
fn noise_updates_do_not_depend_on_the_thread_count() {
    let len = 4 * 3 * 32 * 32 + 5 * 4; // 4 samples of 3077 elements
    let x0 = values(1, len);
    let coef = [StepCoefficients::ddpm(0.5, 0.6, Prediction::VPrediction, DdpmVariance::FixedLarge)
        .unwrap(); 4];
    let run = |threads| {
        with_threads(threads, || {
            let (mut x_t, mut eps) = (vec![0.0; len], vec![0.0; len]);
            q_sample(&x0, &[0.5; 4], &[0.8; 4], 3, 17, &mut x_t, &mut eps).unwrap();
            let (mut x_prev, mut x0_hat) = (vec![0.0; len], vec![0.0; len]);
            sampler_step(&x_t, &eps, &coef, Some(1.0), 4, 5, &mut x_prev, &mut x0_hat).unwrap();
            (x_t, eps, x_prev, x0_hat)
        })
    };
    assert_eq!(run(1), run(2));
}

#[test]
fn noise_updates_reject_bad_arguments() {
    let mut a = vec![0.0; 6];
    let mut b = vec![0.0; 6];
    let err = q_sample(&[0.0; 6], &[1.0; 4], &[0.0; 4], 0, 0, &mut a, &mut b).unwrap_err();
    assert_eq!(
        err.to_string(),
        "q_sample: 6 elements do not split into 4 equal samples"
    );
    let err = q_sample(&[0.0; 6], &[1.0; 2], &[0.0; 3], 0, 0, &mut a, &mut b).unwrap_err();
    assert!(
        err.message.contains("sqrt_one_minus_alpha_bar has 3"),
        "{err}"
    );
    assert!(q_sample(&[0.0; 6], &[], &[], 0, 0, &mut a, &mut b).is_err());
    assert!(q_sample(&[0.0; 6], &[1.0], &[0.0], 0, u64::MAX - 2, &mut a, &mut b).is_err());
    q_sample(&[], &[], &[], 0, 0, &mut [], &mut []).unwrap();

    let c = StepCoefficients::ddim(0.5, 0.9, 0.0, Prediction::Epsilon).unwrap();
    let err =
        sampler_step(&[0.0; 6], &[0.0; 6], &[c], Some(-1.0), 0, 0, &mut a, &mut b).unwrap_err();
    assert!(err.message.contains("clip bound -1"), "{err}");
    let err = sampler_step(&[0.0; 6], &[0.0; 5], &[c], None, 0, 0, &mut a, &mut b).unwrap_err();
    assert!(err.message.contains("model_out has 5"), "{err}");
    assert!(
        StepCoefficients::ddpm(0.5, 0.4, Prediction::Epsilon, DdpmVariance::FixedSmall).is_err()
    );
    assert!(
        StepCoefficients::ddpm(1.0, 1.0, Prediction::Epsilon, DdpmVariance::FixedSmall).is_err()
    );
    assert!(StepCoefficients::ddim(0.5, 0.9, -0.1, Prediction::Epsilon).is_err());
}
