//! The vectorisable exp against f64's exp.

use diffuse_cpu_kernels::exp::exp;

/// Distance in units in the last place of the f32 nearest to `expected`.
fn ulps(actual: f32, expected: f64) -> f64 {
    let nearest = expected as f32;
    let ulp = f64::from(f32::from_bits(nearest.to_bits() + 1)) - f64::from(nearest);
    (f64::from(actual) - expected).abs() / ulp
}

#[test]
fn exp_is_within_two_ulp_over_the_normal_range() {
    let mut worst = 0.0f64;
    let steps = 2_000_000;
    for i in 0..=steps {
        let x = -87.0 + 175.5 * i as f32 / steps as f32;
        let err = ulps(exp(x), f64::from(x).exp());
        worst = worst.max(err);
        assert!(
            err <= 2.0,
            "exp({x}) = {} vs {} ({err} ulp)",
            exp(x),
            f64::from(x).exp()
        );
    }
    assert!(worst > 0.0);
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
