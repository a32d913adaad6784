//! The vectorisable elementary functions against f64's.

use diffuse_cpu_kernels::math::{exp, ln, sin_cos_turns};

/// Distance in units in the last place of the f32 nearest to `expected`.
fn ulps(actual: f32, expected: f64) -> f64 {
    let nearest = (expected as f32).abs();
    let ulp = f64::from(f32::from_bits(nearest.to_bits() + 1)) - f64::from(nearest);
    (f64::from(actual) - expected).abs() / ulp
}

#[test]
fn exp_is_within_two_ulp_over_the_normal_range() {
    let steps = 2_000_000;
    for i in 0..=steps {
        let x = -87.0 + 175.5 * i as f32 / steps as f32;
        let err = ulps(exp(x), f64::from(x).exp());
        assert!(
            err <= 2.0,
            "exp({x}) = {} vs {} ({err} ulp)",
            exp(x),
            f64::from(x).exp()
        );
    }
}

#[test]
fn exp_handles_the_edges() {
    assert_eq!(exp(0.0), 1.0);
    assert_eq!(exp(f32::NEG_INFINITY), 0.0);
    assert_eq!(exp(-100.0), 0.0);
    assert_eq!(exp(100.0), f32::INFINITY);
    assert_eq!(exp(f32::INFINITY), f32::INFINITY);
    assert!(exp(f32::NAN).is_nan());
}

#[test]
fn ln_is_within_two_ulp_on_the_uniforms_of_the_random_stream() {
    // Every uniform the Philox stream can produce, (k + 0.5)·2^-24, sampled densely, plus a sweep of magnitudes.
    let uniforms = (0..(1u32 << 24))
        .step_by(7)
        .map(|k| (k as f32 + 0.5) * 2f32.powi(-24));
    let magnitudes =
        (-120..120).flat_map(|e| (0..64).map(move |i| 2f32.powi(e) * (1.0 + i as f32 / 64.0)));
    for x in uniforms.chain(magnitudes) {
        let err = ulps(ln(x), f64::from(x).ln());
        assert!(
            err <= 2.0,
            "ln({x}) = {} vs {} ({err} ulp)",
            ln(x),
            f64::from(x).ln()
        );
    }
    assert_eq!(ln(1.0), 0.0);
}

#[test]
fn sin_cos_of_turns_is_within_one_ulp_of_one() {
    // Absolute error against the exact angle 2πu at most one ulp of 1.0 (2^-23): the results lie in [−1, 1].
    let steps = 1 << 22;
    for i in 0..=steps {
        let u = i as f32 / steps as f32;
        let (s, c) = sin_cos_turns(u);
        let theta = std::f64::consts::TAU * f64::from(u);
        let (es, ec) = (
            (f64::from(s) - theta.sin()).abs(),
            (f64::from(c) - theta.cos()).abs(),
        );
        assert!(
            es.max(ec) <= 2.0 * 2f64.powi(-24),
            "u = {u}: ({s}, {c}) vs ({}, {})",
            theta.sin(),
            theta.cos()
        );
    }
    assert_eq!(sin_cos_turns(0.0), (0.0, 1.0));
    assert_eq!(sin_cos_turns(0.25), (1.0, 0.0));
}
