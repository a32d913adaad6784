//! The vectorisable elementary functions against f64's.

use diffuse_cpu_kernels::math::{exp, exp2_shifted, exp_fused, ln, sin_cos_turns};

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
fn exp_fused_is_within_two_ulp_over_the_normal_range_and_handles_the_edges() {
    let steps = 2_000_000;
    for i in 0..=steps {
        let x = -87.0 + 175.5 * i as f32 / steps as f32;
        let err = ulps(exp_fused(x), f64::from(x).exp());
        assert!(err <= 2.0, "exp_fused({x}) = {} ({err} ulp)", exp_fused(x));
    }
    for x in [-100.0, -87.34, f32::NEG_INFINITY] {
        assert_eq!(exp_fused(x), 0.0, "exp_fused({x})");
    }
    assert_eq!(exp_fused(0.0), 1.0);
    assert_eq!(exp_fused(100.0), f32::INFINITY);
    assert!(exp_fused(f32::NAN).is_nan());
}

#[test]
fn exp2_shifted_is_within_two_ulp_from_minus_126_to_127_and_flushes_below() {
    let steps = 2_000_000;
    for i in 0..=steps {
        let x = -126.0 + 253.0 * i as f32 / steps as f32;
        let err = ulps(exp2_shifted(x), f64::from(x).exp2());
        assert!(
            err <= 2.0,
            "exp2_shifted({x}) = {} ({err} ulp)",
            exp2_shifted(x)
        );
    }
    // Every float where the rounding of n changes (x near −½ and −1, where r jumps from ½ to −½) and just above
    // the flush threshold, and the tiny arguments of a softmax's largest terms.
    for x in every_float(-0.5001, -0.4999)
        .chain(every_float(-1.0001, -0.9999))
        .chain(every_float(-126.0, -125.99))
        .chain([-1e-30, -1e-10, -1e-7, 1e-7])
    {
        let err = ulps(exp2_shifted(x), f64::from(x).exp2());
        assert!(err <= 2.0, "exp2_shifted({x}) ({err} ulp)");
    }
    // Between −127 and −126 the result is 0 or subnormal, never above the true value's bound 2^−126.
    for x in every_float(-127.0, -126.0001) {
        let y = exp2_shifted(x);
        assert!(
            (0.0..=f32::MIN_POSITIVE).contains(&y),
            "exp2_shifted({x}) = {y}"
        );
    }
    for x in [-127.0, -127.5, -200.0, f32::MIN, f32::NEG_INFINITY] {
        assert_eq!(exp2_shifted(x).to_bits(), 0, "exp2_shifted({x})");
    }
    assert_eq!(exp2_shifted(0.0), 1.0);
    assert_eq!(exp2_shifted(-1.0), 0.5);
    assert_eq!(exp2_shifted(127.0), 2f32.powi(127));
    assert!(exp2_shifted(f32::NAN).is_nan());
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

/// Every f32 in `[lo, hi]` (both of one sign), by bit pattern.
fn every_float(lo: f32, hi: f32) -> impl Iterator<Item = f32> {
    let (a, b) = (lo.to_bits(), hi.to_bits());
    (a.min(b)..=a.max(b)).map(f32::from_bits)
}

#[test]
fn exp_is_exact_to_two_ulp_or_flushed_at_both_ends_of_the_range() {
    // Every float near the ends: within 2 ulp from −87.33 up; below −87.33 the result is flushed to 0 (the true
    // value is then under 1.19e-38, at most 0.7% above the smallest normal 2^-126 ≈ 1.18e-38: an absolute error
    // that small is all the flush costs); above 88.72 it is +∞ (the true value overflows f32 from 88.7228 on).
    for x in every_float(-88.9, -86.0).chain(every_float(86.0, 88.9)) {
        let (got, want) = (exp(x), f64::from(x).exp());
        if x < -87.33 {
            assert_eq!(got, 0.0, "exp({x})");
            assert!(want < 1.19e-38, "exp({x}) = {want} should not be flushed");
        } else if want > f64::from(f32::MAX) {
            assert_eq!(got, f32::INFINITY, "exp({x})");
        } else if x > 88.72 {
            // Between the cut-off and overflow: +∞ for a value just below f32::MAX.
            assert!(
                got == f32::INFINITY || ulps(got, want) <= 2.0,
                "exp({x}) = {got}"
            );
        } else {
            assert!(ulps(got, want) <= 2.0, "exp({x}) = {got} vs {want}");
        }
    }
}

#[test]
fn exp_of_any_nan_is_nan() {
    for bits in [
        0x7fc0_0000u32,
        0xffc0_0000,
        0x7f80_0001,
        0xff80_1234,
        0x7fff_ffff,
    ] {
        assert!(exp(f32::from_bits(bits)).is_nan(), "{bits:#x}");
    }
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
