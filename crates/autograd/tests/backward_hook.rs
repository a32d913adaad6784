//! `Var::backward_with_hook`: every leaf that gets a gradient is reported exactly once, as soon as its last use has
//! passed its contribution on (the reported values are the final gradient, bit for bit, and nothing changes them
//! afterwards), in the order the walk finishes the leaves: the last layer's first.

mod common;

use common::*;
use diffuse_autograd::Var;
use std::collections::HashMap;

/// Backward with a hook that copies each reported gradient; returns the reports in order and the gradients.
fn reports(loss: &Var) -> (Vec<(usize, Vec<f32>)>, diffuse_autograd::Gradients) {
    let mut fired = Vec::new();
    let grads = loss
        .backward_with_hook(&mut |id, grad| {
            fired.push((id, grad.to_vec()?));
            Ok(())
        })
        .unwrap();
    (fired, grads)
}

#[test]
fn each_leaf_fires_once_with_its_final_gradient_in_reverse_order_of_use() {
    // Three layers h1 = tanh(x·w1), h2 = tanh(h1·w2), y = Σ (h2·w3 + h1·w1s) with w1s = w1 used again at the end:
    // w3 and w2 are final early, w1 only when the walk has come back to the first layer (its use at the end is
    // one contribution of two). x is a constant: it gets no gradient and no report.
    let x = Var::constant(randn(&[3, 4], 1));
    let w1 = Var::leaf(randn(&[4, 4], 2));
    let w2 = Var::leaf(randn(&[4, 4], 3));
    let w3 = Var::leaf(randn(&[4, 4], 4));
    let h1 = x.matmul(&w1).unwrap().tanh().unwrap();
    let h2 = h1.matmul(&w2).unwrap().tanh().unwrap();
    let y = h2
        .matmul(&w3)
        .unwrap()
        .add(&h1.matmul(&w1).unwrap())
        .unwrap()
        .sum_all()
        .unwrap();
    let (fired, grads) = reports(&y);
    let ids: Vec<usize> = fired.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, vec![w3.id(), w2.id(), w1.id()]);
    // The values seen by the hook are the returned gradients bit for bit: nothing was added after the report.
    let by_id: HashMap<usize, Vec<f32>> = fired.into_iter().collect();
    for w in [&w1, &w2, &w3] {
        let want = grads.get(w).unwrap().to_vec().unwrap();
        assert_eq!(by_id[&w.id()], want);
    }
    assert_eq!(grads.len(), 3);
}

#[test]
fn a_leaf_is_final_only_after_its_last_use_in_the_walk() {
    // w is used by the first and the last operation of the forward pass: were it reported after the last layer's
    // contribution alone, the hook's copy would lack the first layer's and differ from the returned gradient.
    let w = Var::leaf(randn(&[5], 5));
    let v = Var::leaf(randn(&[5], 6));
    let a = w.mul(&v).unwrap().exp().unwrap();
    let b = a.mul(&v).unwrap().tanh().unwrap();
    let y = b.mul(&w).unwrap().sum_all().unwrap();
    let (fired, grads) = reports(&y);
    assert_eq!(fired.len(), 2);
    let mut ids: Vec<usize> = fired.iter().map(|(id, _)| *id).collect();
    ids.sort_unstable();
    let mut want_ids = vec![w.id(), v.id()];
    want_ids.sort_unstable();
    assert_eq!(ids, want_ids, "each leaf exactly once");
    for (id, values) in &fired {
        let leaf = if *id == w.id() { &w } else { &v };
        assert_eq!(values, &grads.get(leaf).unwrap().to_vec().unwrap());
    }
}

#[test]
fn a_leaf_loss_is_reported_once_and_a_frozen_leaf_never() {
    let loss = Var::leaf(randn(&[1], 7));
    let (fired, grads) = reports(&loss);
    assert_eq!(fired, vec![(loss.id(), vec![1.0])]);
    assert_eq!(grads.len(), 1);

    let frozen = Var::leaf(randn(&[3], 8));
    frozen.set_requires_grad(false).unwrap();
    let live = Var::leaf(randn(&[3], 9));
    let y = frozen.mul(&live).unwrap().sum_all().unwrap();
    let (fired, _) = reports(&y);
    assert_eq!(
        fired.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        vec![live.id()]
    );
}

#[test]
fn an_error_from_the_hook_ends_the_walk() {
    let w = Var::leaf(randn(&[2], 10));
    let y = w.exp().unwrap().sum_all().unwrap();
    let e = y
        .backward_with_hook(&mut |_, _| Err(diffuse_tensor::Error::argument("hook", "stop here")))
        .unwrap_err();
    assert!(e.to_string().contains("stop here"), "{e}");
}
