//! GEGLU against the composition of the element-wise kernels it replaces (bit for bit) and against its f64
//! definition, its backward against finite differences in f64.

mod common;

use common::{
    assert_close, finite_differences, gelu_f64, to_f64, values, weighted_sum, with_threads,
    F32_UNIT_ROUNDOFF,
};
use diffuse_cpu_kernels::elementwise::{binary, unary, BinaryOp, UnaryOp};
use diffuse_cpu_kernels::geglu::{geglu_backward, geglu_forward};
use diffuse_cpu_kernels::strided::StridedRef;
use proptest::prelude::*;

/// `out[r, j] = h·gelu(a)` with `h = x[r, j]`, `a = x[r, inner + j]`, in f64.
fn reference(rows: usize, inner: usize, x: &[f64]) -> Vec<f64> {
    (0..rows * inner)
        .map(|i| {
            let (r, j) = (i / inner, i % inner);
            x[r * 2 * inner + j] * gelu_f64(x[r * 2 * inner + inner + j])
        })
        .collect()
}

/// The unfused graph, through the element-wise kernels on the two halves' strided views: the GELU of the gate, the
/// product; backward `∂h = g·gelu(a)`, `∂a = gelu′(a)·(g·h)`, written into the halves.
fn composed(rows: usize, inner: usize, x: &[f32], g: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let shape = [rows, inner];
    let strides = [2 * inner, 1];
    let half = |offset| StridedRef {
        strides: &strides,
        offset,
    };
    let dense = StridedRef {
        strides: &[inner, 1],
        offset: 0,
    };
    let n = rows * inner;
    let mut gelu_a = vec![0.0; n];
    unary(UnaryOp::Gelu, &shape, x, half(inner), &mut gelu_a).unwrap();
    let mut out = vec![0.0; n];
    binary(BinaryOp::Mul, &shape, x, half(0), &gelu_a, dense, &mut out).unwrap();
    let (mut dh, mut gh, mut da) = (vec![0.0; n], vec![0.0; n], vec![0.0; n]);
    binary(BinaryOp::Mul, &shape, g, dense, &gelu_a, dense, &mut dh).unwrap();
    binary(BinaryOp::Mul, &shape, g, dense, x, half(0), &mut gh).unwrap();
    binary(
        BinaryOp::GeluBackward,
        &shape,
        x,
        half(inner),
        &gh,
        dense,
        &mut da,
    )
    .unwrap();
    let mut dx = vec![0.0; 2 * n];
    for r in 0..rows {
        dx[r * 2 * inner..r * 2 * inner + inner].copy_from_slice(&dh[r * inner..(r + 1) * inner]);
        dx[r * 2 * inner + inner..(r + 1) * 2 * inner]
            .copy_from_slice(&da[r * inner..(r + 1) * inner]);
    }
    (out, dx)
}

fn fused(rows: usize, inner: usize, x: &[f32], g: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let mut out = vec![7.0; rows * inner];
    geglu_forward(rows, inner, x, &mut out).unwrap();
    let mut dx = vec![7.0; 2 * rows * inner];
    geglu_backward(rows, inner, x, g, &mut dx).unwrap();
    (out, dx)
}

/// Inputs spread over [−4, 4): both tails of the GELU and its steep middle.
fn inputs(seed: u64, len: usize) -> Vec<f32> {
    values(seed, len).iter().map(|v| 4.0 * v).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn geglu_equals_the_unfused_element_wise_kernels_bit_for_bit(
        rows in 1usize..40, inner in 1usize..70, seed in 0u64..1000,
    ) {
        let x = inputs(seed, 2 * rows * inner);
        let g = values(seed + 1, rows * inner);
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        let (out, dx) = fused(rows, inner, &x, &g);
        let (want_out, want_dx) = composed(rows, inner, &x, &g);
        prop_assert_eq!(bits(&out), bits(&want_out));
        prop_assert_eq!(bits(&dx), bits(&want_dx));
    }

    #[test]
    fn geglu_forward_is_the_f64_definition_to_a_few_ulp(
        rows in 1usize..20, inner in 1usize..40, seed in 0u64..1000,
    ) {
        let x = inputs(seed, 2 * rows * inner);
        let (out, _) = fused(rows, inner, &x, &vec![0.0; rows * inner]);
        // gelu(a) is within (20 + a²)·2⁻²⁴ relative of the exact value (a² ≤ 16: 36 units; the elementwise tests
        // derive the bound), the product adds one rounding; |h·gelu(a)| ≤ 16, and the f64 reference's 1 + erf
        // cancels below ~1e-15 absolute.
        let want = reference(rows, inner, &to_f64(&x));
        assert_close("out", &out, &want, 40.0 * F32_UNIT_ROUNDOFF, 1e-12);
    }

    #[test]
    fn geglu_backward_matches_finite_differences(
        rows in 1usize..6, inner in 1usize..9, seed in 0u64..1000,
    ) {
        let x = inputs(seed, 2 * rows * inner);
        let w = to_f64(&values(seed + 3, rows * inner));
        let g: Vec<f32> = w.iter().map(|&v| v as f32).collect();
        let (_, dx) = fused(rows, inner, &x, &g);
        let loss = |x: &[f64]| weighted_sum(&w, &reference(rows, inner, x));
        // Central differences with h = 1e-5 on a smooth loss: truncation h²/6·|∂³L| ≲ 1e-10·|h·gelu‴| and f64
        // rounding ≈ 1e-16/1e-5; the kernel's gelu and gelu′ are a few tens of f32 ulp (2⁻²⁴ ≈ 6e-8) of values
        // ≤ 4·1.1, so 1e-5 absolute plus 1e-5 relative is tight against a wrong rule (which is off by O(1)).
        assert_close("grad_x", &dx, &finite_differences(&to_f64(&x), loss), 1e-5, 1e-5);
    }
}

#[test]
fn geglu_does_not_depend_on_the_thread_count() {
    let (rows, inner) = (301, 67);
    let x = inputs(3, 2 * rows * inner);
    let g = values(4, rows * inner);
    assert_eq!(
        with_threads(1, || fused(rows, inner, &x, &g)),
        with_threads(3, || fused(rows, inner, &x, &g))
    );
}

#[test]
fn geglu_of_no_rows_or_no_features_writes_nothing() {
    assert_eq!(fused(0, 5, &[], &[]), (vec![], vec![]));
    assert_eq!(fused(3, 0, &[], &[]), (vec![], vec![]));
}

#[test]
fn geglu_rejects_bad_lengths() {
    let mut out = vec![0.0; 6];
    let err = geglu_forward(2, 3, &[0.0; 11], &mut out).unwrap_err();
    assert_eq!(
        err.to_string(),
        "geglu_forward: x has 11 elements but its shape implies 12"
    );
    let mut dx = vec![0.0; 12];
    let err = geglu_backward(2, 3, &[0.0; 12], &[0.0; 5], &mut dx).unwrap_err();
    assert!(err.message.contains("grad_out has 5 elements"), "{err}");
}
