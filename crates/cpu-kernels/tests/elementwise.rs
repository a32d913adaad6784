//! Element-wise kernels: the vectorised row loops against the scalar definition, σ, SiLU and the GELUs against f64,
//! and the splitting of long rows across threads.

mod common;

use common::{gelu_f64, random_vec, with_threads, F32_UNIT_ROUNDOFF};
use diffuse_cpu_kernels::elementwise::{add_assign, binary, unary, BinaryOp, UnaryOp};
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
        UnaryOp::GeluTanh,
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
        BinaryOp::GeluTanhBackward,
        BinaryOp::GeluBackward,
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

/// PyTorch's tanh GELU, `½x(1 + tanh u)` with `u = √(2/π)(x + 0.044715x³)`, in f64, written as `x/(1 + e^{−2u})`
/// (the same function) so that the reference itself does not cancel to 0 in the negative tail.
fn gelu_tanh_f64(x: f64) -> f64 {
    let u = (2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x.powi(3));
    x / (1.0 + (-2.0 * u).exp())
}

#[test]
fn gelu_tanh_is_within_a_few_ulp_of_the_f64_definition() {
    // x·σ(2u): u takes ~4 roundings (relative error ~4 ulp, amplified in σ(2u) by 2u·(1 − σ), at most ~|2u|·4 ulp of
    // σ, which the factor x and the tail e^{2u} keep small in absolute terms), σ itself 4 ulp, the product one more.
    // The bound is relative everywhere, plus the flush of σ below 2^-126 deep in the negative tail.
    let x: Vec<f32> = inputs(20_000, 12.0, 9)
        .into_iter()
        .filter(|v| v.is_finite())
        .collect();
    let got = unary_contiguous(UnaryOp::GeluTanh, &x);
    for (&xi, &y) in x.iter().zip(&got) {
        let want = gelu_tanh_f64(f64::from(xi));
        let u = (2.0 / std::f64::consts::PI).sqrt()
            * (f64::from(xi) + 0.044715 * f64::from(xi).powi(3));
        let tol = (8.0 + 8.0 * (2.0 * u).abs()) * F32_UNIT_ROUNDOFF * want.abs()
            + f64::from(xi.abs()) * f64::from(f32::MIN_POSITIVE);
        assert!(
            (f64::from(y) - want).abs() <= tol,
            "gelu_tanh({xi}) = {y}, expected {want}"
        );
    }
}

#[test]
fn gelu_tanh_backward_is_the_derivative_times_the_gradient() {
    // h = 1e-4: truncation ~h²·|y'''| ≲ 1e-7; the f32 evaluation adds ~10 ulp of terms of size ≲ 1.2·|g|.
    assert_backward_matches_central_differences(
        BinaryOp::GeluTanhBackward,
        gelu_tanh_f64,
        10,
        "gelu_tanh'",
    );
}

/// Central differences of the f64 definition `f` (h = 1e-4) against the fused gradient `op` with g = 1 and
/// g = −2.5, on 4000 inputs in [−8, 8) drawn from `seed`, to 2e-6·|g|.
fn assert_backward_matches_central_differences(
    op: BinaryOp,
    f: fn(f64) -> f64,
    seed: u64,
    name: &str,
) {
    let x: Vec<f32> = random_vec(4000, seed).iter().map(|v| v * 8.0).collect();
    let layout = StridedRef {
        strides: &[1],
        offset: 0,
    };
    for g in [1.0f32, -2.5] {
        let grads = vec![g; x.len()];
        let mut got = vec![0.0; x.len()];
        binary(op, &[x.len()], &x, layout, &grads, layout, &mut got).unwrap();
        for (&xi, &d) in x.iter().zip(&got) {
            let h = 1e-4;
            let xi = f64::from(xi);
            let want = f64::from(g) * (f(xi + h) - f(xi - h)) / (2.0 * h);
            assert!(
                (f64::from(d) - want).abs() <= 2e-6 * f64::from(g.abs()),
                "{name}({xi})·{g} = {d}, expected {want}"
            );
        }
    }
}

#[test]
fn gelu_is_within_a_few_ulp_of_the_f64_definition() {
    // Φ's fit has fractional error < 1.2e-7 (2 units of roundoff u = 2⁻²⁴); t = 1/(1 + z/2) (2u, amplified at most
    // twofold through t·e^{P(t)}), the Horner steps (≲ 6u of an exponent of size ≲ 2 + z²), the roundings of x² and
    // of P − x²/2 (≲ (2z² + 2)u of the exponent: relative in erfc), exp (4u) and the products (2u) add up to
    // (20 + 2z²)u for x < 0, and to less on the positive side where Φ ≥ ½. The f64 reference's 1 + erf cancels below
    // ~1e-16 absolute, hence the absolute floor.
    let x: Vec<f32> = inputs(20_000, 12.0, 11)
        .into_iter()
        .filter(|v| v.is_finite())
        .collect();
    let got = unary_contiguous(UnaryOp::Gelu, &x);
    for (&xi, &y) in x.iter().zip(&got) {
        let want = gelu_f64(f64::from(xi));
        let z2 = f64::from(xi) * f64::from(xi) / 2.0;
        let tol = (20.0 + 2.0 * z2) * F32_UNIT_ROUNDOFF * want.abs() + 1e-15;
        assert!(
            (f64::from(y) - want).abs() <= tol,
            "gelu({xi}) = {y}, expected {want}"
        );
    }
}

#[test]
fn gelu_backward_is_the_derivative_times_the_gradient() {
    // h = 1e-4: truncation h²/6·|y‴| ≲ 1e-8; Φ + x·φ is evaluated in f32 to a few ulp of terms of size ≲ 1.1·|g|.
    assert_backward_matches_central_differences(BinaryOp::GeluBackward, gelu_f64, 12, "gelu'");
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

proptest! {
    /// `add_assign` is `binary(Add)` written in place: the same bits, for lengths around its 16384-element tasks.
    #[test]
    fn add_assign_is_binary_add_in_place(len in prop_oneof![0usize..40, 16_380usize..16_390, 40_000usize..40_010],
                                         seed in 0u64..1000) {
        let (a, b) = (random_vec(len, seed), random_vec(len, seed + 1));
        let mut expected = vec![0.0; len];
        let layout = StridedRef { strides: &[1], offset: 0 };
        binary(BinaryOp::Add, &[len], &a, layout, &b, layout, &mut expected).unwrap();
        let mut acc = a.clone();
        with_threads(2, || add_assign(&mut acc, &b)).unwrap();
        prop_assert_eq!(acc, expected);
    }
}

#[test]
fn add_assign_rejects_a_length_mismatch() {
    let err = add_assign(&mut [0.0; 3], &[1.0; 2]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "add_assign: x has 2 elements but its shape implies 3"
    );
}
