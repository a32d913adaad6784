//! Joining and indexing: concat, stack, index_select, gather, and nearest-neighbour 2× upsampling, with the
//! gradient kernels of the last three (used by autograd).
//!
//! Each works on a contiguous tensor seen as `[outer, dim, inner]` around the dimension it indexes.

use crate::error::{Error, Result};
use crate::layout::dims_product;
use crate::storage::Storage;
use crate::Tensor;

/// (outer, size of dim, inner) of `shape` around `dim`.
fn split_at_dim(shape: &[usize], dim: usize) -> (usize, usize, usize) {
    (
        dims_product(&shape[..dim]),
        shape[dim],
        dims_product(&shape[dim + 1..]),
    )
}

impl Tensor {
    /// Joins tensors along an existing dimension; all other dimensions must agree.
    pub fn concat(tensors: &[&Tensor], dim: usize) -> Result<Tensor> {
        let first = *tensors
            .first()
            .ok_or_else(|| Error::argument("concat", "needs at least one tensor"))?;
        first.layout().check_dim("concat", dim)?;
        for (i, t) in tensors.iter().enumerate().skip(1) {
            first.check_compatible("concat", t)?;
            let same = t.rank() == first.rank()
                && (0..first.rank()).all(|d| d == dim || t.shape()[d] == first.shape()[d]);
            if !same {
                return Err(Error::shape("concat", format!("tensor {i} has shape {:?}, which differs from {:?} outside dimension {dim}", t.shape(), first.shape())));
            }
        }
        let parts: Vec<Tensor> = tensors
            .iter()
            .map(|t| t.contiguous())
            .collect::<Result<_>>()?;
        let sizes: Vec<usize> = parts.iter().map(|t| t.shape()[dim]).collect();
        let (outer, _, inner) = split_at_dim(first.shape(), dim);
        let guards: Vec<_> = parts.iter().map(|t| t.storage()).collect();
        let refs: Vec<&Storage> = guards.iter().map(|g| &**g).collect();
        let storage = Storage::concat(&refs, &sizes, outer, inner, first.dtype())?;
        let mut shape = first.shape().to_vec();
        shape[dim] = sizes.iter().sum();
        Tensor::from_contiguous(storage, &shape)
    }

    /// Joins equally shaped tensors along a new dimension `dim`.
    pub fn stack(tensors: &[&Tensor], dim: usize) -> Result<Tensor> {
        let first = *tensors
            .first()
            .ok_or_else(|| Error::argument("stack", "needs at least one tensor"))?;
        if let Some((i, t)) = tensors
            .iter()
            .enumerate()
            .find(|(_, t)| t.shape() != first.shape())
        {
            return Err(Error::shape(
                "stack",
                format!(
                    "tensor {i} has shape {:?} but tensor 0 has {:?}",
                    t.shape(),
                    first.shape()
                ),
            ));
        }
        let expanded: Vec<Tensor> = tensors
            .iter()
            .map(|t| t.unsqueeze(dim))
            .collect::<Result<_>>()?;
        let refs: Vec<&Tensor> = expanded.iter().collect();
        Tensor::concat(&refs, dim)
    }

    /// Picks the slices `indices` along `dim` (repeats allowed): `out[.., j, ..] = self[.., indices[j], ..]`.
    pub fn index_select(&self, dim: usize, indices: &[usize]) -> Result<Tensor> {
        self.layout().check_dim("index_select", dim)?;
        let src = self.contiguous()?;
        let (outer, size, inner) = split_at_dim(self.shape(), dim);
        let storage = src.storage().index_select(outer, size, inner, indices)?;
        let mut shape = self.shape().to_vec();
        shape[dim] = indices.len();
        Tensor::from_contiguous(storage, &shape)
    }

    /// The gradient of `index_select`: scatters `self` (the output gradient) back into `dim_size` slices, summing
    /// repeats.
    pub fn index_select_backward(
        &self,
        dim: usize,
        dim_size: usize,
        indices: &[usize],
    ) -> Result<Tensor> {
        self.layout().check_dim("index_select_backward", dim)?;
        let g = self.contiguous()?;
        let (outer, _, inner) = split_at_dim(self.shape(), dim);
        let storage = g
            .storage()
            .index_select_backward(outer, dim_size, inner, indices)?;
        let mut shape = self.shape().to_vec();
        shape[dim] = dim_size;
        Tensor::from_contiguous(storage, &shape)
    }

    /// `out[o, j, i] = self[o, index[o, j, i], i]` around `dim`; `index_shape` is `self`'s shape with `dim` replaced by
    /// the number of picks, and `index` lists them in row-major order.
    pub fn gather(&self, dim: usize, index_shape: &[usize], index: &[usize]) -> Result<Tensor> {
        self.layout().check_dim("gather", dim)?;
        let k = self.check_gather_shape("gather", dim, index_shape)?;
        let src = self.contiguous()?;
        let (outer, size, inner) = split_at_dim(self.shape(), dim);
        let storage = src.storage().gather(outer, size, inner, index, k)?;
        Tensor::from_contiguous(storage, index_shape)
    }

    /// The gradient of `gather`: `self` is the output gradient (of `index_shape`), scattered into `src_shape`.
    pub fn gather_backward(
        &self,
        dim: usize,
        src_shape: &[usize],
        index: &[usize],
    ) -> Result<Tensor> {
        let probe = Tensor::zeros(&[], self.dtype(), self.device())?.broadcast_to(src_shape)?;
        probe.layout().check_dim("gather_backward", dim)?;
        let k = probe.check_gather_shape("gather_backward", dim, self.shape())?;
        let g = self.contiguous()?;
        let (outer, size, inner) = split_at_dim(src_shape, dim);
        let storage = g.storage().gather_backward(outer, size, inner, index, k)?;
        Tensor::from_contiguous(storage, src_shape)
    }

    fn check_gather_shape(
        &self,
        op: &'static str,
        dim: usize,
        index_shape: &[usize],
    ) -> Result<usize> {
        let ok = index_shape.len() == self.rank()
            && (0..self.rank()).all(|d| d == dim || index_shape[d] == self.shape()[d]);
        if !ok {
            return Err(Error::shape(
                op,
                format!(
                    "index shape {index_shape:?} must equal {:?} outside dimension {dim}",
                    self.shape()
                ),
            ));
        }
        Ok(index_shape[dim])
    }

    fn check_image(&self, op: &'static str) -> Result<(usize, usize, usize)> {
        match self.shape() {
            &[n, c, h, w] => Ok((dims_product(&[n, c]), h, w)),
            s => Err(Error::shape(
                op,
                format!("expects an (N, C, H, W) tensor, got shape {s:?}"),
            )),
        }
    }

    /// Nearest-neighbour 2× upsampling of an (N, C, H, W) tensor to (N, C, 2H, 2W).
    pub fn upsample_nearest2x(&self) -> Result<Tensor> {
        const OP: &str = "upsample_nearest2x";
        let (planes, h, w) = self.check_image(OP)?;
        let (Some(h2), Some(w2)) = (h.checked_mul(2), w.checked_mul(2)) else {
            return Err(Error::shape(
                OP,
                format!(
                    "doubling {h}×{w} overflows usize (shape {:?})",
                    self.shape()
                ),
            ));
        };
        let src = self.contiguous()?;
        let storage = src.storage().upsample_nearest2x(planes, h, w)?;
        let s = self.shape();
        Tensor::from_contiguous(storage, &[s[0], s[1], h2, w2])
    }

    /// The gradient of `upsample_nearest2x`: sums each 2×2 block of the (N, C, 2H, 2W) gradient.
    pub fn upsample_nearest2x_backward(&self) -> Result<Tensor> {
        let (planes, h2, w2) = self.check_image("upsample_nearest2x_backward")?;
        if h2 % 2 != 0 || w2 % 2 != 0 {
            return Err(Error::shape(
                "upsample_nearest2x_backward",
                format!("gradient of shape {:?} has odd spatial size", self.shape()),
            ));
        }
        let g = self.contiguous()?;
        let storage = g
            .storage()
            .upsample_nearest2x_backward(planes, h2 / 2, w2 / 2)?;
        let s = self.shape();
        Tensor::from_contiguous(storage, &[s[0], s[1], h2 / 2, w2 / 2])
    }
}
