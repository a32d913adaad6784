//! The gated residual add of adaLN-Zero against its definition, its backward against finite differences in f64.

mod common;

use common::{assert_close, finite_differences, to_f64, values, weighted_sum, with_threads};
use diffuse_cpu_kernels::gated_residual::{
    gated_residual_backward, gated_residual_forward, GatedShape,
};
use proptest::prelude::*;

/// `out[n, l, c] = x[n, l, c] + gate[n, c]·y[n, l, c]`, in f64.
fn reference(s: &GatedShape, x: &[f64], gate: &[f64], y: &[f64]) -> Vec<f64> {
    let d = s.dim;
    (0..x.len())
        .map(|i| {
            let (n, c) = (i / (s.tokens * d), i % d);
            x[i] + gate[n * d + c] * y[i]
        })
        .collect()
}

struct Case {
    s: GatedShape,
    x: Vec<f32>,
    gate: Vec<f32>,
    y: Vec<f32>,
}

fn case(batch: usize, tokens: usize, dim: usize, seed: u64) -> Case {
    let len = batch * tokens * dim;
    Case {
        s: GatedShape { batch, tokens, dim },
        x: values(seed, len),
        gate: values(seed + 1, batch * dim),
        y: values(seed + 2, len).iter().map(|v| 3.0 * v).collect(),
    }
}

fn run(c: &Case, grad_out: &[f32]) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let mut out = vec![7.0; c.x.len()];
    gated_residual_forward(&c.s, &c.x, &c.gate, &c.y, &mut out).unwrap();
    let (mut gy, mut gg) = (vec![7.0; c.x.len()], vec![7.0; c.gate.len()]);
    gated_residual_backward(&c.s, &c.gate, &c.y, grad_out, &mut gy, &mut gg).unwrap();
    (out, gy, gg)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn gated_residual_forward_is_the_definition_to_one_rounding(
        batch in 1usize..4, tokens in 1usize..40, dim in 1usize..70, seed in 0u64..1000,
    ) {
        let c = case(batch, tokens, dim, seed);
        let (out, ..) = run(&c, &vec![0.0; c.x.len()]);
        // gate·y rounds once (≤ 2^-24·3) and the sum once (≤ 2^-24·4): 2^-21 covers both.
        let want = reference(&c.s, &to_f64(&c.x), &to_f64(&c.gate), &to_f64(&c.y));
        assert_close("out", &out, &want, 0.0, 2f64.powi(-21));
    }

    #[test]
    fn gated_residual_backward_matches_finite_differences(
        batch in 1usize..4, tokens in 1usize..40, dim in 1usize..9, seed in 0u64..1000,
    ) {
        let c = case(batch, tokens, dim, seed);
        let w = to_f64(&values(seed + 3, c.x.len()));
        let g: Vec<f32> = w.iter().map(|&v| v as f32).collect();
        let (_, gy, gg) = run(&c, &g);
        let (x, gate, y) = (to_f64(&c.x), to_f64(&c.gate), to_f64(&c.y));
        let loss = |x: &[f64], gate: &[f64], y: &[f64]| weighted_sum(&w, &reference(&c.s, x, gate, y));
        // ∂y = gate·g rounds once; ∂gate sums `tokens` exact f64 products of f32 values (|g·y| ≤ 3) and rounds once
        // to f32. The central differences of this linear loss are exact but for the f64 rounding of its ≤ 960 terms
        // (≤ 1e-13 in the loss), divided by the 2e-5 of the difference: 1e-7 covers it.
        assert_close("grad_y", &gy, &finite_differences(&y, |v| loss(&x, &gate, v)), 0.0, 2f64.powi(-22) + 1e-7);
        let atol = 3.0 * tokens as f64 * 2f64.powi(-24) + 1e-7;
        assert_close("grad_gate", &gg, &finite_differences(&gate, |v| loss(&x, v, &y)), 0.0, atol);
    }
}

#[test]
fn gated_residual_with_a_zero_gate_is_the_identity_on_x() {
    // adaLN-Zero's point: at initialisation every gate is 0 and each block passes its input through unchanged.
    let c = Case {
        gate: vec![0.0; 2 * 33],
        ..case(2, 19, 33, 5)
    };
    let (out, gy, _) = run(&c, &values(6, c.x.len()));
    assert_eq!(out, c.x);
    assert!(gy.iter().all(|&v| v == 0.0));
}

#[test]
fn gated_residual_does_not_depend_on_the_thread_count() {
    let c = case(3, 37, 67, 3);
    let g = values(4, c.x.len());
    assert_eq!(
        with_threads(1, || run(&c, &g)),
        with_threads(3, || run(&c, &g))
    );
}

#[test]
fn gated_residual_of_no_tokens_zeroes_the_gate_gradient() {
    let c = case(2, 0, 5, 1);
    let (out, gy, gg) = run(&c, &[]);
    assert!(out.is_empty() && gy.is_empty());
    assert_eq!(gg, vec![0.0; 10]);
}

#[test]
fn gated_residual_rejects_bad_lengths() {
    let s = GatedShape {
        batch: 2,
        tokens: 3,
        dim: 4,
    };
    let (x, gate) = (vec![0.0; 24], vec![0.0; 8]);
    let mut out = vec![0.0; 24];
    let err = gated_residual_forward(&s, &x, &gate[..5], &x, &mut out).unwrap_err();
    assert_eq!(
        err.to_string(),
        "gated_residual_forward: gate has 5 elements but its shape implies 8"
    );
    let (mut gy, mut gg) = (vec![0.0; 23], vec![0.0; 8]);
    let err = gated_residual_backward(&s, &gate, &x, &x, &mut gy, &mut gg).unwrap_err();
    assert!(err.message.contains("grad_y has 23 elements"), "{err}");
}
