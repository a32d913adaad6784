//! GEGLU (Shazeer 2020), the activation of a GEGLU feed-forward: the last dimension of `x`, `2·inner` wide, is a
//! hidden half and a gate half, and the result is `hidden·gelu(gate)` (the exact GELU), `inner` wide. One fused kernel
//! each way (`diffuse_cpu_kernels::geglu`, `kernels/elementwise.ptx`) instead of a GELU, a product and, backward,
//! two zero-padded halves added together.

use crate::error::{Error, Result};
use crate::Tensor;

/// (rows, inner) of a GEGLU input: every dimension but the last is a row, the last even and non-empty.
fn rows_inner(op: &'static str, shape: &[usize]) -> Result<(usize, usize)> {
    match shape.split_last() {
        Some((&width, lead)) if width % 2 == 0 => Ok((lead.iter().product(), width / 2)),
        _ => Err(Error::shape(
            op,
            format!(
                "the last dimension holds the hidden and gate halves and must be even, got shape {shape:?}"
            ),
        )),
    }
}

impl Tensor {
    /// `hidden·gelu(gate)` with `hidden, gate = self.chunk(2, last)`: shape `[..., 2·inner]` → `[..., inner]`.
    pub fn geglu(&self) -> Result<Tensor> {
        const OP: &str = "geglu";
        let (rows, inner) = rows_inner(OP, self.shape())?;
        let mut out_shape = self.shape().to_vec();
        *out_shape.last_mut().expect("rows_inner checked the rank") = inner;
        let x = self.contiguous()?;
        let storage = x.storage().geglu(rows, inner)?;
        Tensor::from_contiguous(storage, &out_shape)
    }

    /// The gradient of [`Tensor::geglu`] at its input `self` from the output gradient `grad`.
    pub fn geglu_backward(&self, grad: &Tensor) -> Result<Tensor> {
        const OP: &str = "geglu_backward";
        let (rows, inner) = rows_inner(OP, self.shape())?;
        self.check_compatible(OP, grad)?;
        let mut want = self.shape().to_vec();
        *want.last_mut().expect("rows_inner checked the rank") = inner;
        if grad.shape() != want {
            return Err(Error::shape(
                OP,
                format!(
                    "the output gradient has shape {:?}, expected {want:?} for an input of shape {:?}",
                    grad.shape(),
                    self.shape()
                ),
            ));
        }
        let (x, g) = (self.contiguous()?, grad.contiguous()?);
        let storage = x.storage().geglu_backward(&g.storage(), rows, inner)?;
        Tensor::from_contiguous(storage, self.shape())
    }
}
