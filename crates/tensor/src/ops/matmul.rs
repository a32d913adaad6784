//! Batched matrix product `[..., m, k] × [..., k, n] → [..., m, n]` with NumPy broadcasting of the batch dimensions,
//! optionally plus a bias `[n]` added to every row (a linear layer's `x·Wᵀ + b`).
//!
//! The bias costs no pass of its own: the output buffer starts as the bias repeated row by row and the GEMM
//! accumulates onto it (`C = A·B + 1·C`), so the sum is formed in the GEMM's output stage instead of by a second
//! read-and-write of the product.
//!
//! The operands are handed to the GEMM kernel as strides into their own buffers, so a transposed or narrowed view
//! costs no copy. The kernel takes one batch stride per operand; when the (broadcast) batch dimensions of an operand
//! cannot be walked with a single stride (say `[2, 3]` broadcast from `[1, 3]`), that operand alone is copied to a
//! contiguous buffer first.

use crate::error::{Error, Result};
use crate::layout::{broadcast_shapes, checked_numel, dims_product, Layout};
use crate::storage::MatmulOperand;
use crate::Tensor;

/// The single stride that walks every batch index of `layout` (all but the last two dimensions) in row-major
/// order, if there is one.
fn uniform_batch_stride(layout: &Layout) -> Option<usize> {
    let rank = layout.rank();
    let (shape, strides) = (&layout.shape()[..rank - 2], &layout.strides()[..rank - 2]);
    let moving: Vec<usize> = (0..shape.len()).filter(|&d| shape[d] > 1).collect();
    let Some(&last) = moving.last() else {
        return Some(0);
    };
    let stride = strides[last];
    let mut expected = stride;
    for &d in moving.iter().rev() {
        if strides[d] != expected {
            return None;
        }
        expected *= shape[d];
    }
    Some(stride)
}

impl Tensor {
    /// The matrix product over the last two dimensions, the leading (batch) dimensions broadcast together.
    pub fn matmul(&self, rhs: &Tensor) -> Result<Tensor> {
        self.matmul_plus("matmul", rhs, None)
    }

    /// [`Tensor::matmul`] plus `bias` (shape `[n]`, `n` the product's last dimension) added to every row, in the
    /// GEMM's output stage. Equals `self.matmul(rhs)?.add(bias)` up to the order of one rounding.
    pub fn matmul_bias(&self, rhs: &Tensor, bias: &Tensor) -> Result<Tensor> {
        self.matmul_plus("matmul_bias", rhs, Some(bias))
    }

    fn matmul_plus(&self, op: &'static str, rhs: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
        self.check_compatible(op, rhs)?;
        let (ra, rb) = (self.rank(), rhs.rank());
        if ra < 2 || rb < 2 {
            return Err(Error::shape(
                op,
                format!(
                    "operands need at least two dimensions, got {:?} × {:?}",
                    self.shape(),
                    rhs.shape()
                ),
            ));
        }
        let (m, k) = (self.shape()[ra - 2], self.shape()[ra - 1]);
        let (k2, n) = (rhs.shape()[rb - 2], rhs.shape()[rb - 1]);
        if k != k2 {
            return Err(Error::shape(
                op,
                format!(
                    "inner dimensions differ: {:?} × {:?} ({k} vs {k2})",
                    self.shape(),
                    rhs.shape()
                ),
            ));
        }
        let batch_shape = broadcast_shapes(op, &self.shape()[..ra - 2], &rhs.shape()[..rb - 2])
            .map_err(|e| {
                Error::shape(
                    op,
                    format!(
                        "batch dimensions of {:?} × {:?} do not broadcast: {e}",
                        self.shape(),
                        rhs.shape()
                    ),
                )
            })?;
        let out_shape: Vec<usize> = batch_shape.iter().copied().chain([m, n]).collect();
        let bias = bias.map(|b| self.bias_operand(op, b, n)).transpose()?;
        // `[n, 0] × [0, n]` has no elements to read but n² to write; refuse it before allocating if n² overflows.
        if checked_numel(op, &out_shape)? == 0 || k == 0 {
            // Nothing to compute: no output elements, or each one a sum of no terms. Shapes like `[usize::MAX, 0]`
            // never reach the stride arithmetic below. With a bias, each entry is the bias alone.
            return match bias {
                Some(b) => b.broadcast_to(&out_shape)?.contiguous(),
                None => Tensor::zeros(&out_shape, self.dtype(), self.device()),
            };
        }
        let batch = dims_product(&batch_shape);
        let a = self.batch_operand(&batch_shape, m, k)?;
        let b = rhs.batch_operand(&batch_shape, k, n)?;
        // A rank-2 `rhs` (a linear layer's weight) is the same matrix for every batch. When `self`'s rows lie at one
        // stride across the batches (batch stride = m · row stride, as in any contiguous input), the whole product is
        // the single `[batch·m, k] × [k, n]` product, which packs `rhs` once instead of once per batch. The output is
        // the same row-major buffer, and the GEMM's sum order, hence every bit, does not depend on the row count.
        let (batch, m) = if rb == 2 && a.1.batch_stride == m * a.1.row_stride {
            (1, batch * m)
        } else {
            (batch, m)
        };
        let storage = {
            let (sa, sb) = (a.0.storage(), b.0.storage());
            let sbias = bias.as_ref().map(|b| b.storage());
            sa.matmul(&a.1, &sb, &b.1, sbias.as_deref(), (batch, m, n, k))?
        };
        Tensor::from_contiguous(storage, &out_shape)
    }

    /// `bias` checked to be a `[n]` vector on `self`'s device and dtype, made contiguous.
    fn bias_operand(&self, op: &'static str, bias: &Tensor, n: usize) -> Result<Tensor> {
        self.check_compatible(op, bias)?;
        if bias.shape() != [n] {
            return Err(Error::shape(
                op,
                format!(
                    "the bias must be a vector of the product's {n} columns, got shape {:?}",
                    bias.shape()
                ),
            ));
        }
        bias.contiguous()
    }

    /// `self` broadcast to `batch_shape + [rows, cols]`, as a tensor and the strides the GEMM reads it with.
    fn batch_operand(
        &self,
        batch_shape: &[usize],
        rows: usize,
        cols: usize,
    ) -> Result<(Tensor, MatmulOperand)> {
        let mut full = batch_shape.to_vec();
        full.extend_from_slice(&[rows, cols]);
        let view = self.broadcast_to(&full)?;
        let view = match uniform_batch_stride(view.layout()) {
            Some(_) => view,
            None => view.contiguous()?,
        };
        let layout = view.layout();
        let r = layout.rank();
        let operand = MatmulOperand {
            offset: layout.offset(),
            batch_stride: uniform_batch_stride(layout).unwrap_or_else(|| rows * cols),
            row_stride: layout.strides()[r - 2],
            col_stride: layout.strides()[r - 1],
        };
        Ok((view, operand))
    }
}
