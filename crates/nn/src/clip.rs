//! Global gradient-norm clipping, as PyTorch's `clip_grad_norm_`: the norm is taken over all gradients together,
//! `‖g‖ = √(Σ_p Σ_i g_{p,i}²)`, and when it exceeds `max_norm` every gradient is multiplied by the same
//! `c = max_norm / (‖g‖ + 10⁻⁶)`, which keeps the update's direction and bounds its length.
//!
//! The sum runs in `f64`, one partial sum per tensor, and the partial sums are added in ascending order, so the result
//! does not depend on the order in which the gradient set stores its tensors (a resumed run must reproduce it bit for
//! bit).

use diffuse_autograd::Gradients;
use diffuse_tensor::{Error, Result};

/// Scales `grads` in place so that their global L2 norm is at most `max_norm`; returns the norm before clipping.
/// A non-finite norm is returned as is and nothing is scaled (the caller decides to skip the step).
pub fn clip_grad_norm(grads: &mut Gradients, max_norm: f32) -> Result<f32> {
    if !(max_norm > 0.0 && max_norm.is_finite()) {
        return Err(Error::argument(
            "clip_grad_norm",
            format!("max_norm must be positive and finite, got {max_norm}"),
        ));
    }
    let norm = grad_norm(grads)?;
    if !norm.is_finite() {
        return Ok(norm as f32);
    }
    let coef = f64::from(max_norm) / (norm + 1e-6);
    if coef < 1.0 {
        for g in grads.tensors_mut() {
            *g = g.mul_scalar(coef as f32)?;
        }
    }
    Ok(norm as f32)
}

/// `√(Σ g²)` over every gradient of the set, in `f64`.
pub fn grad_norm(grads: &Gradients) -> Result<f64> {
    let mut partial = Vec::with_capacity(grads.len());
    for g in grads.tensors() {
        partial.push(
            g.to_vec()?
                .iter()
                .map(|&x| f64::from(x) * f64::from(x))
                .sum::<f64>(),
        );
    }
    partial.sort_by(f64::total_cmp);
    Ok(partial.iter().sum::<f64>().sqrt())
}
