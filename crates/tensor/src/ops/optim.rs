//! In-place updates of parameter tensors: the fused AdamW and SGD-with-momentum steps, and assignment (loading a
//! checkpoint).
//!
//! An update rewrites the parameter and its moment buffers where they lie, so each must own its whole buffer
//! (contiguous, no offset, no other view sharing it with a different layout) and none may share a buffer with
//! another: an aliased update would read values it has already overwritten.

use crate::error::{Error, Result};
use crate::{DType, Tensor};
use diffuse_cpu_kernels::adamw::AdamWConfig;

impl Tensor {
    /// One fused AdamW step (PyTorch semantics, `step` counted from 1) on `self`, the parameter, in place, with
    /// gradient `grad` and the first and second moment buffers `m` and `v`, which are updated in place too.
    pub fn adamw_step(
        &self,
        grad: &Tensor,
        m: &Tensor,
        v: &Tensor,
        cfg: &AdamWConfig,
        step: u64,
    ) -> Result<()> {
        let grad =
            check_in_place_update("adamw_step", [("param", self), ("m", m), ("v", v)], grad)?;
        let (mut p, mut ms, mut vs) = (self.storage_mut(), m.storage_mut(), v.storage_mut());
        let g = grad.storage();
        p.adamw_step(cfg, step, &g, &mut ms, &mut vs)
    }

    /// One fused SGD-with-momentum step (PyTorch semantics: dampening 0, no Nesterov, weight decay added to the
    /// gradient) on `self`, the parameter, in place, with gradient `grad` and the momentum buffer `velocity`, updated
    /// in place too. A zeroed `velocity` makes the first step store `grad`, PyTorch's first-step buffer.
    pub fn sgd_momentum_step(
        &self,
        grad: &Tensor,
        velocity: &Tensor,
        lr: f32,
        momentum: f32,
        weight_decay: f32,
    ) -> Result<()> {
        let grad = check_in_place_update(
            "sgd_momentum_step",
            [("param", self), ("velocity", velocity)],
            grad,
        )?;
        let (mut p, mut b) = (self.storage_mut(), velocity.storage_mut());
        let g = grad.storage();
        p.sgd_momentum_step(lr, momentum, weight_decay, &g, &mut b)
    }
    /// Overwrites the values of `self` in place with those of `src` (same shape; any layout, dtype converted), so that
    /// every holder of `self` sees the new values.
    pub fn assign(&self, src: &Tensor) -> Result<()> {
        const OP: &str = "assign";
        if src.shape() != self.shape() {
            return Err(Error::shape(
                OP,
                format!(
                    "source has shape {:?} but the target has {:?}",
                    src.shape(),
                    self.shape()
                ),
            ));
        }
        if src.device() != self.device() {
            return Err(Error::DeviceMismatch {
                op: OP,
                lhs: self.device(),
                rhs: src.device(),
            });
        }
        if !self.owns_whole_buffer() {
            return Err(Error::argument(
                OP,
                "the target is a view into a larger or reordered buffer; assignment needs a contiguous tensor that owns its storage",
            ));
        }
        if self.same_storage(src) {
            return Ok(());
        }
        let mut dst = self.storage_mut();
        let s = src.storage();
        dst.assign(&s, src.layout())
    }

    fn owns_whole_buffer(&self) -> bool {
        self.is_contiguous() && self.layout().offset() == 0 && self.storage().len() == self.numel()
    }
}

/// The checks every fused optimiser step makes before it writes: the gradient and the `state` tensors (the parameter
/// first, then its buffers) agree in device, dtype and shape with the parameter, the parameter is f32, each state
/// tensor owns its whole buffer and no two of the tensors share one. Returns the gradient in contiguous form.
fn check_in_place_update<const N: usize>(
    op: &'static str,
    state: [(&str, &Tensor); N],
    grad: &Tensor,
) -> Result<Tensor> {
    let param = state[0].1;
    let mut named = vec![state[0], ("grad", grad)];
    named.extend_from_slice(&state[1..]);
    for &(what, t) in &named {
        param.check_compatible(op, t)?;
        if t.shape() != param.shape() {
            return Err(Error::shape(
                op,
                format!(
                    "{what} has shape {:?} but the parameter has {:?}",
                    t.shape(),
                    param.shape()
                ),
            ));
        }
    }
    if param.dtype() != DType::F32 {
        return Err(Error::argument(
            op,
            format!(
                "the parameter is {}; only f32 parameters are updated in place",
                param.dtype()
            ),
        ));
    }
    for (what, t) in state {
        if !t.owns_whole_buffer() {
            return Err(Error::argument(
                op,
                format!("{what} is a view into a larger or reordered buffer; an in-place update needs a contiguous tensor that owns its storage"),
            ));
        }
    }
    for (i, (a_name, a)) in named.iter().enumerate() {
        for (b_name, b) in &named[i + 1..] {
            if a.same_storage(b) {
                return Err(Error::argument(
                    op,
                    format!("{a_name} and {b_name} share one buffer; an in-place update would read what it has already written"),
                ));
            }
        }
    }
    grad.contiguous()
}
