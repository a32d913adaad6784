//! Layer norm against an f64 reference, its backward against finite differences.

mod common;

use common::{assert_close, finite_differences, to_f64, values, weighted_sum, with_threads};
use diffuse_cpu_kernels::layer_norm::{layer_norm_backward, layer_norm_forward, LayerNormShape};
use proptest::prelude::*;

fn reference(s: &LayerNormShape, x: &[f64], gamma: &[f64], beta: &[f64]) -> Vec<f64> {
    x.chunks(s.dim)
        .flat_map(|row| {
            let mean = row.iter().sum::<f64>() / s.dim as f64;
            let var = row.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / s.dim as f64;
            let rstd = 1.0 / (var + f64::from(s.eps)).sqrt();
            row.iter()
                .zip(gamma)
                .zip(beta)
                .map(move |((v, g), b)| (v - mean) * rstd * g + b)
        })
        .collect()
}

struct Case {
    s: LayerNormShape,
    x: Vec<f32>,
    gamma: Vec<f32>,
    beta: Vec<f32>,
}

fn case(rows: usize, dim: usize, seed: u64) -> Case {
    let s = LayerNormShape {
        rows,
        dim,
        eps: 1e-5,
    };
    Case {
        s,
        x: values(seed, rows * dim)
            .iter()
            .map(|v| 0.5 + 2.0 * v)
            .collect(),
        gamma: values(seed + 1, dim).iter().map(|v| 1.0 + v).collect(),
        beta: values(seed + 2, dim),
    }
}

fn run(c: &Case, gy: &[f32]) -> (Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>) {
    let (mut y, mut mean, mut rstd) = (
        vec![0.0; c.x.len()],
        vec![0.0; c.s.rows],
        vec![0.0; c.s.rows],
    );
    layer_norm_forward(&c.s, &c.x, &c.gamma, &c.beta, &mut y, &mut mean, &mut rstd).unwrap();
    let (mut gx, mut gg, mut gb) = (vec![0.0; c.x.len()], vec![7.0; c.s.dim], vec![7.0; c.s.dim]);
    layer_norm_backward(
        &c.s, &c.x, &c.gamma, &mean, &rstd, gy, &mut gx, &mut gg, &mut gb,
    )
    .unwrap();
    (y, gx, gg, gb)
}

/// The largest `rstd` over the rows of `x [_, dim]` (eps 1e-5), in f64: the factor by which rounding in a row's mean is
/// amplified in its outputs.
fn max_rstd(x: &[f64], dim: usize) -> f64 {
    x.chunks(dim)
        .map(|row| {
            let mean = row.iter().sum::<f64>() / dim as f64;
            let var = row.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / dim as f64;
            1.0 / (var + 1e-5).sqrt()
        })
        .fold(0.0f64, f64::max)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn layer_norm_forward_matches_reference(rows in 1usize..40, dim in 1usize..70, seed in 0u64..1000) {
        let c = case(rows, dim, seed);
        let (y, ..) = run(&c, &vec![0.0; c.x.len()]);
        // ~4 f32 roundings of terms |x̂γ| + |β| ≤ ~8 give 2^-17. On top, x − mean carries the f32 mean's rounding
        // (≤ 2^-24·|mean|, |mean| ≤ 2.5), amplified by rstd·|γ| (|γ| ≤ 2): rstd reaches ~1/sqrt(eps) ≈ 316 for a
        // row of two close values, where that term alone is ~1e-5.
        let atol = 2f64.powi(-17) + max_rstd(&to_f64(&c.x), dim) * 2f64.powi(-21);
        assert_close("y", &y, &reference(&c.s, &to_f64(&c.x), &to_f64(&c.gamma), &to_f64(&c.beta)), 0.0, atol);
    }

    #[test]
    fn layer_norm_backward_matches_finite_differences(rows in 1usize..20, dim in 1usize..9, seed in 0u64..1000) {
        let c = case(rows, dim, seed);
        let w = to_f64(&values(seed + 3, c.x.len()));
        let gy: Vec<f32> = w.iter().map(|&v| v as f32).collect();
        let (_, gx, gg, gb) = run(&c, &gy);
        let (x, gamma, beta) = (to_f64(&c.x), to_f64(&c.gamma), to_f64(&c.beta));
        let loss = |x: &[f64], gamma: &[f64], beta: &[f64]| weighted_sum(&w, &reference(&c.s, x, gamma, beta));
        // grad_x is O(rstd·|γ g|) with a handful of f32 roundings per term; rstd reaches 1/sqrt(eps) ≈ 316 when a row
        // is (nearly) constant, e.g. dim 1 or two close values. Scale the tolerance by the largest rstd.
        let rstd_max = max_rstd(&x, dim).max(1.0);
        // x̂ = (x − mean)·rstd itself carries the f32 mean's rounding (≤ 2^-24·|mean|) times rstd, and grad_x multiplies
        // x̂ by rstd again: a second term of order rstd²·2^-22 (|mean| ≤ 2.5, |γ g| ≤ 2), which dominates for a row of two
        // close values; the tolerance allows 4× that. Ordinary rows (rstd ~ 1) keep ~2e-5.
        let grad_x_tol = rstd_max * 2f64.powi(-16) + rstd_max * rstd_max * 2f64.powi(-20);
        assert_close("grad_x", &gx, &finite_differences(&x, |x| loss(x, &gamma, &beta)), 0.0, grad_x_tol);
        let atol = rows as f64 * 2f64.powi(-20);
        // grad_γ's terms g·x̂ also carry x̂'s error: the f32 mean's rounding times rstd, as for grad_x above.
        assert_close("grad_gamma", &gg, &finite_differences(&gamma, |g| loss(&x, g, &beta)), 0.0, atol * rstd_max);
        assert_close("grad_beta", &gb, &finite_differences(&beta, |b| loss(&x, &gamma, b)), 0.0, atol);
    }
}

#[test]
fn layer_norm_does_not_depend_on_the_thread_count() {
    let c = case(203, 67, 3);
    let gy = values(4, c.x.len());
    assert_eq!(
        with_threads(1, || run(&c, &gy)),
        with_threads(3, || run(&c, &gy))
    );
}

#[test]
fn layer_norm_rejects_bad_shapes_and_lengths() {
    let s = LayerNormShape {
        rows: 2,
        dim: 3,
        eps: 1e-5,
    };
    let (x, g) = (vec![0.0; 6], vec![1.0; 3]);
    let (mut y, mut m, mut r) = (vec![0.0; 6], vec![0.0; 2], vec![0.0; 2]);
    let err = layer_norm_forward(&s, &x[..5], &g, &g, &mut y, &mut m, &mut r).unwrap_err();
    assert_eq!(
        err.to_string(),
        "layer_norm_forward: x has 5 elements but its shape implies 6"
    );
    let err = layer_norm_forward(
        &LayerNormShape { dim: 0, ..s },
        &[],
        &[],
        &[],
        &mut [],
        &mut m,
        &mut r,
    )
    .unwrap_err();
    assert!(err.message.contains("dim is 0"), "{err}");
    let (mut gx, mut gg, mut gb) = (vec![0.0; 6], vec![0.0; 3], vec![0.0; 2]);
    let err = layer_norm_backward(&s, &x, &g, &m, &r, &x, &mut gx, &mut gg, &mut gb).unwrap_err();
    assert!(err.message.contains("grad_beta has 2 elements"), "{err}");
}
