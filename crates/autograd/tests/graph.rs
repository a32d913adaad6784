//! The tape itself: accumulation over several uses, no_grad, detach, one-shot backward, and its errors.

mod common;

use common::*;
use diffuse_autograd::{is_grad_enabled, no_grad, Var};

#[test]
fn a_variable_used_several_times_accumulates_its_gradient() {
    // y = Σ (x·x + 3x) ⇒ ∂y/∂x = 2x + 3.
    let x = Var::leaf(randn(&[4], 1));
    let y = x
        .mul(&x)
        .unwrap()
        .add(&x.mul_scalar(3.0).unwrap())
        .unwrap()
        .sum_all()
        .unwrap();
    let g = y.backward().unwrap();
    let want: Vec<f32> = x
        .tensor()
        .to_vec()
        .unwrap()
        .iter()
        .map(|v| 2.0 * v + 3.0)
        .collect();
    let got = g.get(&x).unwrap().to_vec().unwrap();
    for (a, b) in got.iter().zip(&want) {
        assert!((a - b).abs() < 1e-6, "{a} vs {b}");
    }
}

#[test]
fn no_grad_records_nothing_and_restores_the_previous_state() {
    let x = Var::leaf(randn(&[3], 2));
    let y = no_grad(|| {
        assert!(!is_grad_enabled());
        x.exp().unwrap()
    });
    assert!(is_grad_enabled());
    assert!(!y.requires_grad());
    assert!(y.sum_all().unwrap().backward().unwrap().is_empty());
}

#[test]
fn detach_stops_the_gradient() {
    // y = Σ x·stop(x) ⇒ ∂y/∂x = stop(x) = x.
    let x = Var::leaf(randn(&[3], 3));
    let y = x.mul(&x.detach()).unwrap().sum_all().unwrap();
    let g = y.backward().unwrap();
    assert_eq!(
        g.get(&x).unwrap().to_vec().unwrap(),
        x.tensor().to_vec().unwrap()
    );
}

#[test]
fn constants_get_no_gradient() {
    let x = Var::leaf(randn(&[3], 4));
    let c = Var::constant(randn(&[3], 5));
    let g = x.mul(&c).unwrap().sum_all().unwrap().backward().unwrap();
    assert!(g.get(&c).is_none());
    assert_eq!(g.len(), 1);
}

#[test]
fn backward_refuses_a_non_scalar_loss() {
    let x = Var::leaf(randn(&[2, 3], 6));
    let msg = x.exp().unwrap().backward().unwrap_err().to_string();
    assert!(msg.contains("scalar") && msg.contains("[2, 3]"), "{msg}");
}

#[test]
fn a_second_backward_through_freed_nodes_is_an_error() {
    let x = Var::leaf(randn(&[2], 7));
    let y = x.exp().unwrap().sum_all().unwrap();
    y.backward().unwrap();
    let msg = y.backward().unwrap_err().to_string();
    assert!(msg.contains("already back-propagated"), "{msg}");
}

#[test]
fn a_deep_chain_back_propagates_without_overflowing_the_stack() {
    let x = Var::leaf(randn(&[1], 8));
    let mut y = x.clone();
    for _ in 0..20_000 {
        y = y.mul_scalar(1.0).unwrap();
    }
    let g = y.sum_all().unwrap().backward().unwrap();
    assert_eq!(g.get(&x).unwrap().to_vec().unwrap(), vec![1.0]);
}

#[test]
fn a_leaf_switched_off_gets_no_gradient_until_switched_back_on() {
    let (a, b) = (Var::leaf(randn(&[3], 1)), Var::leaf(randn(&[3], 2)));
    a.set_requires_grad(false).unwrap();
    assert!(!a.requires_grad());
    let g = a.mul(&b).unwrap().sum_all().unwrap().backward().unwrap();
    assert!(g.get(&a).is_none());
    assert_eq!(
        g.get(&b).unwrap().to_vec().unwrap(),
        a.tensor().to_vec().unwrap()
    );
    // Nothing needs a gradient: the product is a constant and backward has nothing to walk.
    b.set_requires_grad(false).unwrap();
    assert!(!a.mul(&b).unwrap().requires_grad());
    a.set_requires_grad(true).unwrap();
    let g = a.mul(&b).unwrap().sum_all().unwrap().backward().unwrap();
    assert_eq!(
        g.get(&a).unwrap().to_vec().unwrap(),
        b.tensor().to_vec().unwrap()
    );
    let err = a
        .mul_scalar(2.0)
        .unwrap()
        .set_requires_grad(false)
        .unwrap_err();
    assert!(err.to_string().contains("only a leaf"), "{err}");
}
