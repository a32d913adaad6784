//! The rules of adaLN's fused operations, of the fused per-sample MSE and of the tanh GELU against central finite
//! differences (see `common`), and the fused operations against the compositions of plain operations they replace,
//! values and gradients.

mod common;

use common::*;
use diffuse_autograd::Var;
use diffuse_tensor::{DType, Tensor};

#[test]
fn gelu_tanh_matches_finite_differences() {
    let x = randn(&[3, 7], 21).mul_scalar(2.0).unwrap();
    check_gradients(&[&x], |v| v[0].gelu_tanh());
}

#[test]
fn layer_norm_modulate_matches_finite_differences() {
    // batch 2, 3 tokens, 5 features: the modulation broadcasts over tokens, its gradients sum over them.
    let x = randn(&[2, 3, 5], 22);
    let scale = randn(&[2, 5], 23).mul_scalar(0.5).unwrap();
    let shift = randn(&[2, 5], 24);
    check_gradients(&[&x, &scale, &shift], |v| {
        v[0].layer_norm_modulate(&v[1], &v[2], 1e-6)
    });
}

#[test]
fn gated_residual_matches_finite_differences() {
    let x = randn(&[2, 4, 3], 25);
    let gate = randn(&[2, 3], 26);
    let y = randn(&[2, 4, 3], 27);
    check_gradients(&[&x, &gate, &y], |v| v[0].gated_residual(&v[1], &v[2]));
}

/// Values and gradients of `fused` and `composed` on the same leaves, compared within `tol` (absolute).
fn same_values_and_gradients(
    inputs: &[&Tensor],
    fused: impl Fn(&[Var]) -> diffuse_tensor::Result<Var>,
    composed: impl Fn(&[Var]) -> diffuse_tensor::Result<Var>,
    tol: f32,
) {
    let run = |f: &dyn Fn(&[Var]) -> diffuse_tensor::Result<Var>| {
        let leaves: Vec<Var> = inputs.iter().map(|&t| Var::leaf(t.clone())).collect();
        let out = f(&leaves).unwrap();
        let w = Var::constant(randn(out.shape(), 99));
        let grads = out.mul(&w).unwrap().sum_all().unwrap().backward().unwrap();
        let mut all = vec![out.tensor().to_vec().unwrap()];
        all.extend(
            leaves
                .iter()
                .map(|l| grads.get(l).unwrap().to_vec().unwrap()),
        );
        all
    };
    for (k, (a, b)) in run(&fused).iter().zip(run(&composed)).enumerate() {
        for (i, (x, y)) in a.iter().zip(&b).enumerate() {
            assert!(
                (x - y).abs() <= tol,
                "output {k} element {i}: fused {x}, composed {y}"
            );
        }
    }
}

#[test]
fn layer_norm_modulate_is_layer_norm_then_scale_and_shift() {
    let (n, l, d) = (3, 5, 8);
    let x = randn(&[n, l, d], 31);
    let scale = randn(&[n, d], 32);
    let shift = randn(&[n, d], 33);
    let ones = Var::constant(Tensor::full(&[d], 1.0, DType::F32, CPU).unwrap());
    let zeros = Var::constant(Tensor::zeros(&[d], DType::F32, CPU).unwrap());
    // Both sides round in f32 over rows of 8 with |x̂| ≲ 3: a few ulps of O(10) values.
    same_values_and_gradients(
        &[&x, &scale, &shift],
        |v| v[0].layer_norm_modulate(&v[1], &v[2], 1e-6),
        |v| {
            let normed = v[0].layer_norm(&ones, &zeros, 1e-6)?;
            let gain = v[1].add_scalar(1.0)?.reshape(&[n, 1, d])?;
            normed.mul(&gain)?.add(&v[2].reshape(&[n, 1, d])?)
        },
        1e-5,
    );
}

#[test]
fn gated_residual_is_a_broadcast_multiply_and_add() {
    let (n, l, d) = (2, 7, 6);
    let x = randn(&[n, l, d], 41);
    let gate = randn(&[n, d], 42);
    let y = randn(&[n, l, d], 43);
    same_values_and_gradients(
        &[&x, &gate, &y],
        |v| v[0].gated_residual(&v[1], &v[2]),
        |v| v[0].add(&v[1].reshape(&[n, 1, d])?.mul(&v[2])?),
        1e-5,
    );
}

#[test]
fn sample_mse_matches_finite_differences() {
    // Both operands differentiated (the target's gradient is the negation); one sample of one element, and two of 12.
    for shape in [&[1, 1][..], &[2, 3, 2, 2]] {
        let p = randn(shape, 51).mul_scalar(2.0).unwrap();
        let t = randn(shape, 52);
        check_gradients(&[&p, &t], |v| v[0].sample_mse(&v[1]));
    }
}

#[test]
fn sample_mse_is_subtract_square_and_mean() {
    let p = randn(&[3, 2, 5, 7], 53);
    let t = randn(&[3, 2, 5, 7], 54);
    // f64 sum against a chain of f32 roundings over 70 terms of |d²| ≲ 20: well inside 1e-5 of values ≲ 3.
    same_values_and_gradients(
        &[&p, &t],
        |v| v[0].sample_mse(&v[1]),
        |v| v[0].sub(&v[1])?.square()?.mean(&[1, 2, 3], false),
        1e-5,
    );
}

#[test]
fn sample_mse_gives_a_constant_target_no_gradient_and_refuses_mismatched_shapes() {
    let p = Var::leaf(randn(&[2, 4], 55));
    let t = Var::constant(randn(&[2, 4], 56));
    let grads = p
        .sample_mse(&t)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    assert!(grads.get(&p).is_some() && grads.get(&t).is_none());
    let err = p
        .sample_mse(&Var::constant(randn(&[2, 3], 57)))
        .unwrap_err();
    assert!(err.to_string().contains("same shape"), "{err}");
}
