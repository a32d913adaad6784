//! AdamW and SGD-momentum steps against f64 transcriptions of PyTorch's update rules.

mod common;

use common::{assert_close, values, with_threads};
use diffuse_cpu_kernels::adamw::{adamw_step, sgd_momentum_step, AdamWConfig};
use proptest::prelude::*;

const CFG: AdamWConfig = AdamWConfig {
    lr: 1e-3,
    beta1: 0.9,
    beta2: 0.999,
    eps: 1e-8,
    weight_decay: 0.01,
};

/// PyTorch's `_single_tensor_adamw` in f64 for one element over several steps.
fn reference_adamw(cfg: &AdamWConfig, p0: f64, grads: &[f64]) -> (f64, f64, f64) {
    let (lr, b1, b2, eps, wd) = (
        f64::from(cfg.lr),
        f64::from(cfg.beta1),
        f64::from(cfg.beta2),
        f64::from(cfg.eps),
        f64::from(cfg.weight_decay),
    );
    let (mut p, mut m, mut v) = (p0, 0.0, 0.0);
    for (i, &g) in grads.iter().enumerate() {
        let t = (i + 1) as i32;
        p *= 1.0 - lr * wd;
        m = b1 * m + (1.0 - b1) * g;
        v = b2 * v + (1.0 - b2) * g * g;
        let denom = (v / (1.0 - b2.powi(t))).sqrt() + eps;
        p -= lr / (1.0 - b1.powi(t)) * m / denom;
    }
    (p, m, v)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn adamw_matches_reference_over_several_steps(len in 1usize..300, steps in 1usize..6, seed in 0u64..1000) {
        let p0 = values(seed, len);
        let grads: Vec<Vec<f32>> = (0..steps).map(|s| values(seed + 10 + s as u64, len)).collect();
        let (mut p, mut m, mut v) = (p0.clone(), vec![0.0; len], vec![0.0; len]);
        for (s, g) in grads.iter().enumerate() {
            adamw_step(&CFG, s as u64 + 1, &mut p, g, &mut m, &mut v).unwrap();
        }
        let expected: Vec<(f64, f64, f64)> = (0..len)
            .map(|i| reference_adamw(&CFG, f64::from(p0[i]), &grads.iter().map(|g| f64::from(g[i])).collect::<Vec<_>>()))
            .collect();
        // Each step moves p by ≤ ~lr; the update m̂/(sqrt(v̂)+eps) is a ratio of f32 values with a few ulp of
        // error that can be amplified when sqrt(v̂) is tiny: bound the update error by lr·2^-18 per step, and p's own
        // rounding (the decay product and the subtraction) by 2·2^-24·|p| per step.
        let atol = steps as f64 * f64::from(CFG.lr) * 2f64.powi(-18);
        let rtol = steps as f64 * 2f64.powi(-23);
        assert_close("params", &p, &expected.iter().map(|e| e.0).collect::<Vec<_>>(), rtol, atol);
        // m is a sum of terms (1 − β1)·β1^k·g with |g| < 1 that may cancel: absolute error ~ steps·0.1·2^-23.
        let m_atol = steps as f64 * 2f64.powi(-25);
        assert_close("m", &m, &expected.iter().map(|e| e.1).collect::<Vec<_>>(), 2f64.powi(-23), m_atol);
        assert_close("v", &v, &expected.iter().map(|e| e.2).collect::<Vec<_>>(), steps as f64 * 2f64.powi(-21), 1e-30);
    }

    #[test]
    fn sgd_momentum_matches_reference(len in 1usize..300, seed in 0u64..1000) {
        let (lr, mu, wd) = (0.1f32, 0.9f32, 1e-4f32);
        let p0 = values(seed, len);
        let g1 = values(seed + 1, len);
        let g2 = values(seed + 2, len);
        let (mut p, mut b) = (p0.clone(), vec![0.0; len]);
        sgd_momentum_step(lr, mu, wd, &mut p, &g1, &mut b).unwrap();
        sgd_momentum_step(lr, mu, wd, &mut p, &g2, &mut b).unwrap();
        let (lr, mu, wd) = (f64::from(lr), f64::from(mu), f64::from(wd));
        let expected: Vec<f64> = (0..len)
            .map(|i| {
                // PyTorch: first step buf = g (clone); later buf = μ·buf + g.
                let mut p = f64::from(p0[i]);
                let g = f64::from(g1[i]) + wd * p;
                let mut buf = g;
                p -= lr * buf;
                let g = f64::from(g2[i]) + wd * p;
                buf = mu * buf + g;
                p - lr * buf
            })
            .collect();
        // Two steps of a few f32 roundings on O(1) values.
        assert_close("params", &p, &expected, 0.0, 2f64.powi(-20));
    }
}

#[test]
fn adamw_first_step_moves_each_parameter_by_about_lr() {
    // With m̂ = g and v̂ = g² at t = 1 the update is lr·g/(|g| + eps) = ±lr (for |g| ≫ eps), plus the decay.
    let cfg = AdamWConfig {
        weight_decay: 0.0,
        ..CFG
    };
    let (mut p, mut m, mut v) = (vec![1.0f32, 1.0], vec![0.0; 2], vec![0.0; 2]);
    adamw_step(&cfg, 1, &mut p, &[0.5, -2.0], &mut m, &mut v).unwrap();
    assert!(
        (p[0] - (1.0 - 1e-3)).abs() < 1e-6 && (p[1] - (1.0 + 1e-3)).abs() < 1e-6,
        "{p:?}"
    );
}

#[test]
fn optimisers_do_not_depend_on_the_thread_count() {
    let len = 5 * 16_384 + 11;
    let g = values(2, len);
    let run = |threads| {
        with_threads(threads, || {
            let (mut p, mut m, mut v) = (values(1, len), vec![0.0; len], vec![0.0; len]);
            adamw_step(&CFG, 1, &mut p, &g, &mut m, &mut v).unwrap();
            adamw_step(&CFG, 2, &mut p, &g, &mut m, &mut v).unwrap();
            let mut q = values(3, len);
            sgd_momentum_step(0.1, 0.9, 0.0, &mut q, &g, &mut m).unwrap();
            (p, v, q, m)
        })
    };
    assert_eq!(run(1), run(2));
}

#[test]
fn optimisers_reject_bad_arguments() {
    let (mut p, mut m, mut v) = (vec![0.0; 4], vec![0.0; 4], vec![0.0; 3]);
    let err = adamw_step(&CFG, 1, &mut p, &[0.0; 4], &mut m, &mut v).unwrap_err();
    assert_eq!(
        err.to_string(),
        "adamw_step: v has 3 elements but its shape implies 4"
    );
    let mut v = vec![0.0; 4];
    assert!(adamw_step(&CFG, 0, &mut p, &[0.0; 4], &mut m, &mut v)
        .unwrap_err()
        .message
        .contains("1-based"));
    let bad = AdamWConfig { beta2: 1.0, ..CFG };
    assert!(adamw_step(&bad, 1, &mut p, &[0.0; 4], &mut m, &mut v)
        .unwrap_err()
        .message
        .contains("betas"));
    let err = sgd_momentum_step(0.1, 0.9, 0.0, &mut p, &[0.0; 5], &mut m).unwrap_err();
    assert!(err.message.contains("grads has 5 elements"), "{err}");
}
