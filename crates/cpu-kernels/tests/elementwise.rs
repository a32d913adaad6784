//! Element-wise kernels: the vectorised row loops against the scalar definition, σ and SiLU against f64, and the
//! splitting of long rows across threads.

mod common;

use common::{random_vec, with_threads, F32_UNIT_ROUNDOFF};
use diffuse_cpu_kernels::elementwise::{binary, unary, BinaryOp, UnaryOp};
use diffuse_cpu_kernels::strided::StridedRef;
use proptest::prelude::*;

fn contiguous(shape: &[usize]) -> Vec<usize> {
    let mut strides = vec![1; shape.len()];
    for d in (0..shape.len().saturating_sub(1)).rev() {
        strides[d] = strides[d + 1] * shape[d + 1];
    }
    strides
}

fn unary_contiguous(op: UnaryOp, x: &[f32]) -> Vec<f32> {
    let mut out = vec![0.0; x.len()];
    let layout = StridedRef {
        strides: &[1],
        offset: 0,
    };
    unary(op, &[x.len()], x, layout, &mut out).unwrap();
    out
}

/// Inputs spread over [−scale, scale), with the edges that matter for exp and σ appended.
fn inputs(len: usize, scale: f32, seed: u64) -> Vec<f32> {
    let mut x: Vec<f32> = random_vec(len, seed).iter().map(|v| v * scale).collect();
    x.extend([
        0.0,
        -0.0,
        88.0,
        -88.0,
        89.0,
        -89.0,
        1e-30,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
    ]);
    x
}

fn sigmoid_f64(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

#[test]
fn contiguous_unary_rows_equal_the_scalar_definition_bit_for_bit() {
    // The row loop is a separate, vectorised (and on x86-64 AVX2) build of the same arithmetic as `apply`.
    let x = inputs(50_001, 30.0, 1);
    for op in [
        UnaryOp::Exp,
        UnaryOp::Sigmoid,
        UnaryOp::Silu,
        UnaryOp::Square,
        UnaryOp::Neg,
        UnaryOp::Affine(0.5, -2.0),
        UnaryOp::Tanh,
        UnaryOp::Gelu,
    ] {
        let got = unary_contiguous(op, &x);
        for (i, (&g, &xi)) in got.iter().zip(&x).enumerate() {
            let want = op.apply(xi);
            assert!(
                g.to_bits() == want.to_bits() || (g.is_nan() && want.is_nan()),
                "{op:?} at element {i} (x = {xi}): row loop {g} vs apply {want}"
            );
        }
    }
}

#[test]
fn contiguous_binary_rows_equal_the_scalar_definition_bit_for_bit() {
    let a = inputs(40_003, 20.0, 2);
    let b = inputs(40_003, 3.0, 3);
    let layout = StridedRef {
        strides: &[1],
        offset: 0,
    };
    for op in [
        BinaryOp::Add,
        BinaryOp::Sub,
        BinaryOp::Mul,
        BinaryOp::Div,
        BinaryOp::Maximum,
        BinaryOp::Minimum,
        BinaryOp::SiluBackward,
    ] {
        let mut got = vec![0.0; a.len()];
        binary(op, &[a.len()], &a, layout, &b, layout, &mut got).unwrap();
        for (i, ((&g, &x), &y)) in got.iter().zip(&a).zip(&b).enumerate() {
            let want = op.apply(x, y);
            assert!(
                g.to_bits() == want.to_bits() || (g.is_nan() && want.is_nan()),
                "{op:?} at element {i}: row loop {g} vs apply {want}"
            );
        }
    }
}

#[test]
fn sigmoid_and_silu_are_within_four_ulp_of_f64() {
    // σ = 1/(1 + e⁻ˣ): exp's 2 ulp, one addition and one division, each rounding by at most half an ulp, and the
    // relative error of e⁻ˣ shrinks by 1/(1 + eˣ) in the sum: 4 ulp of σ bounds it. SiLU multiplies by x: one more
    // rounding. Below the normal range σ is flushed to 0: an absolute error under 2^-126 (times |x| for SiLU).
    let x = inputs(20_000, 40.0, 4);
    let (sig, silu) = (
        unary_contiguous(UnaryOp::Sigmoid, &x),
        unary_contiguous(UnaryOp::Silu, &x),
    );
    for ((&xi, &s), &y) in x.iter().zip(&sig).zip(&silu) {
        if xi.is_nan() {
            assert!(s.is_nan() && y.is_nan());
            continue;
        }
        let want = sigmoid_f64(f64::from(xi));
        let tol = 4.0 * F32_UNIT_ROUNDOFF * 2.0 * want + f64::from(f32::MIN_POSITIVE);
        assert!(
            (f64::from(s) - want).abs() <= tol,
            "σ({xi}) = {s}, expected {want}"
        );
        if xi.is_finite() {
            let want = f64::from(xi) * want;
            let tol = 5.0 * F32_UNIT_ROUNDOFF * 2.0 * want.abs()
                + f64::from(xi.abs()) * f64::from(f32::MIN_POSITIVE);
            assert!(
                (f64::from(y) - want).abs() <= tol,
                "silu({xi}) = {y}, expected {want}"
            );
        }
    }
}

#[test]
fn long_rows_are_split_without_changing_any_element() {
    // [3, 5, 20011]: a transposed input keeps rows of 20011 elements (longer than one task's share) with a
    // non-unit stride, and a broadcast operand repeats one long row; every output is compared with a plain loop.
    let shape = [3usize, 5, 20_011];
    let n: usize = shape.iter().product();
    let a = random_vec(n, 5);
    // `a` read as if stored [20011, 5, 3]: strides (1, 3, 15) over `shape`.
    let transposed = [1usize, 3, 15];
    let row = random_vec(shape[2], 6);
    let broadcast = [0usize, 0, 1];
    let mut out = vec![0.0; n];
    binary(
        BinaryOp::Mul,
        &shape,
        &a,
        StridedRef {
            strides: &transposed,
            offset: 0,
        },
        &row,
        StridedRef {
            strides: &broadcast,
            offset: 0,
        },
        &mut out,
    )
    .unwrap();
    let out_strides = contiguous(&shape);
    for i in 0..shape[0] {
        for j in 0..shape[1] {
            for k in 0..shape[2] {
                let o = i * out_strides[0] + j * out_strides[1] + k;
                let want = a[i * transposed[0] + j * transposed[1] + k * transposed[2]] * row[k];
                assert_eq!(out[o], want, "element ({i}, {j}, {k})");
            }
        }
    }
}

#[test]
fn elementwise_does_not_depend_on_the_thread_count() {
    let x = inputs(70_000, 10.0, 7);
    let g = inputs(70_000, 1.0, 8);
    let layout = StridedRef {
        strides: &[1],
        offset: 0,
    };
    let run = |threads| {
        with_threads(threads, || {
            let silu = unary_contiguous(UnaryOp::Silu, &x);
            let mut grad = vec![0.0; x.len()];
            binary(
                BinaryOp::SiluBackward,
                &[x.len()],
                &x,
                layout,
                &g,
                layout,
                &mut grad,
            )
            .unwrap();
            (
                silu.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                grad.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            )
        })
    };
    assert_eq!(run(1), run(3));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn silu_of_any_length_matches_the_scalar_definition(len in 0usize..40_000, seed in 0u64..1000) {
        let x = random_vec(len, seed).iter().map(|v| v * 12.0).collect::<Vec<_>>();
        let got = unary_contiguous(UnaryOp::Silu, &x);
        for (&g, &xi) in got.iter().zip(&x) {
            prop_assert_eq!(g.to_bits(), UnaryOp::Silu.apply(xi).to_bits());
        }
    }
}
