//! Reductions over any set of axes (sum, mean, max, min), argmax over one axis.
//!
//! Method: permute the reduced axes to the back, then reduce the last dimension of that view as rows of length
//! Π(reduced sizes). The kept axes keep their order; `keepdim` re-inserts the reduced axes with size 1. Reduced leading
//! axes of a contiguous tensor need no copy: the view is the transpose of a contiguous matrix, which the CPU sums in
//! place by columns.

use crate::error::{Error, Result};
use crate::layout::{checked_numel, dims_product, Layout};
use crate::{ReduceOp, Tensor};

impl Tensor {
    fn reduce(
        &self,
        op_name: &'static str,
        dims: &[usize],
        keepdim: bool,
        op: ReduceOp,
    ) -> Result<Tensor> {
        let rank = self.rank();
        let mut reduced = vec![false; rank];
        for &d in dims {
            if d >= rank {
                return Err(Error::argument(
                    op_name,
                    format!("dimension {d} is out of range for shape {:?}", self.shape()),
                ));
            }
            if std::mem::replace(&mut reduced[d], true) {
                return Err(Error::argument(
                    op_name,
                    format!("dimension {d} is listed twice in {dims:?}"),
                ));
            }
        }
        let kept: Vec<usize> = (0..rank).filter(|&d| !reduced[d]).collect();
        let order: Vec<usize> = kept
            .iter()
            .copied()
            .chain((0..rank).filter(|&d| reduced[d]))
            .collect();
        let permuted = self.layout().permute(&order)?;
        let kept_shape: Vec<usize> = kept.iter().map(|&d| self.shape()[d]).collect();
        // Reducing the zero dimension of an empty tensor can leave a shape too large to exist: `[usize::MAX, 2, 0]`.
        checked_numel(op_name, &kept_shape)?;
        let reduced_sizes: Vec<usize> = dims.iter().map(|&d| self.shape()[d]).collect();
        let row_len = dims_product(&reduced_sizes);
        let mut rows_shape = kept_shape.clone();
        rows_shape.push(row_len);
        let leading = dims.len();
        let rows_view = match permuted.reshape(&rows_shape)? {
            Some(l) => self.with_layout(l),
            // Reducing the leading axes of a contiguous tensor: its rows to reduce are the columns of the contiguous
            // `[row_len, kept]` matrix, handed over as that matrix's transposed view rather than copied.
            None if self.is_contiguous() && reduced[..leading].iter().all(|&r| r) => {
                let kept_len = dims_product(&kept_shape);
                let offset = self.layout().offset();
                let columns =
                    Layout::from_parts(vec![kept_len, row_len], vec![1, kept_len], offset)?;
                self.with_layout(columns)
            }
            None => self
                .with_layout(permuted)
                .contiguous()?
                .reshape(&rows_shape)?,
        };
        let storage = rows_view.storage().reduce_last(rows_view.layout(), op)?;
        let out_shape: Vec<usize> = if keepdim {
            (0..rank)
                .map(|d| if reduced[d] { 1 } else { self.shape()[d] })
                .collect()
        } else {
            kept_shape
        };
        Tensor::from_contiguous(storage, &out_shape)
    }

    /// Σ over `dims`.
    pub fn sum(&self, dims: &[usize], keepdim: bool) -> Result<Tensor> {
        self.reduce("sum", dims, keepdim, ReduceOp::Sum)
    }

    /// Σ over every element, as a rank-0 tensor.
    pub fn sum_all(&self) -> Result<Tensor> {
        let dims: Vec<usize> = (0..self.rank()).collect();
        self.sum(&dims, false)
    }

    /// Mean over `dims` (an empty reduction is an error rather than NaN).
    pub fn mean(&self, dims: &[usize], keepdim: bool) -> Result<Tensor> {
        let sizes: Vec<usize> = dims
            .iter()
            .filter_map(|&d| self.shape().get(d))
            .copied()
            .collect();
        let count = dims_product(&sizes);
        if count == 0 {
            return Err(Error::argument(
                "mean",
                format!(
                    "mean over dimensions {dims:?} of shape {:?} has no elements",
                    self.shape()
                ),
            ));
        }
        self.sum(dims, keepdim)?.mul_scalar(1.0 / count as f32)
    }

    pub fn mean_all(&self) -> Result<Tensor> {
        let dims: Vec<usize> = (0..self.rank()).collect();
        self.mean(&dims, false)
    }

    pub fn max(&self, dims: &[usize], keepdim: bool) -> Result<Tensor> {
        self.reduce("max", dims, keepdim, ReduceOp::Max)
    }

    pub fn min(&self, dims: &[usize], keepdim: bool) -> Result<Tensor> {
        self.reduce("min", dims, keepdim, ReduceOp::Min)
    }

    /// Index of the first maximum along `dim`, as f32 values (exact below 2^24).
    pub fn argmax(&self, dim: usize, keepdim: bool) -> Result<Tensor> {
        self.reduce("argmax", &[dim], keepdim, ReduceOp::ArgMax)
    }
}
