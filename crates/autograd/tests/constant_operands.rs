//! A constant operand costs the backward pass nothing: no gradient is computed for it, counted by the host buffer
//! cache (every CPU output buffer goes through it), and the gradients of the operands that need one are unchanged
//! bit for bit. One test in this file, so that no other test's buffers are counted.

use diffuse_autograd::Var;
use diffuse_tensor::backend::host_cache;
use diffuse_tensor::{Conv2dParams, Device, Tensor};

/// The gradient buffers taken by the backward pass of `sum(c ∘ (conv(x, w) + b) − t)` and the gradients of `w`, `b`
/// and `c`, with `x` and `t` leaves or constants.
fn backward_buffers(data_is_leaf: bool) -> (u64, Vec<Vec<f32>>) {
    let tensor = |shape: &[usize], seed| Tensor::randn(shape, seed, 0, Device::Cpu).unwrap();
    let data = |t: Tensor| {
        if data_is_leaf {
            Var::leaf(t)
        } else {
            Var::constant(t)
        }
    };
    let x = data(tensor(&[2, 3, 9, 9], 1));
    let t = data(tensor(&[2, 4, 9, 9], 2));
    let (w, b, c) = (
        Var::leaf(tensor(&[4, 3, 3, 3], 3)),
        Var::leaf(tensor(&[4], 4)),
        Var::leaf(tensor(&[2, 4, 9, 9], 5)),
    );
    let params = Conv2dParams {
        padding: (1, 1),
        ..Conv2dParams::default()
    };
    let y = x.conv2d(&w, Some(&b), &params).unwrap();
    let loss = c.mul(&y).unwrap().sub(&t).unwrap().sum_all().unwrap();
    host_cache::reset_counters();
    let grads = loss.backward().unwrap();
    let buffers = host_cache::counters().buffers;
    let values = [&w, &b, &c]
        .iter()
        .map(|v| grads.get(v).unwrap().to_vec().unwrap())
        .collect();
    (buffers, values)
}

#[test]
fn constant_operands_get_no_gradient_computed() {
    let (with_leaves, leaf_grads) = backward_buffers(true);
    let (with_constants, constant_grads) = backward_buffers(false);
    assert_eq!(leaf_grads, constant_grads);
    // Not computed for the constants: the convolution's input gradient and the subtraction's negated gradient for
    // `t`, one buffer each (both of the product's gradients are still needed: `c` is a leaf, `y` leads to `w`).
    assert_eq!(
        with_leaves - with_constants,
        2,
        "{with_leaves} vs {with_constants}"
    );
}
