//! Operations that move elements without arithmetic: views, joins and index lookups. Each rule sends every gradient
//! element back to where its value came from, summing where one source fed several outputs.

use crate::backward::zeros;
use crate::reduce_to::sum_to_shape;
use crate::var::Var;
use diffuse_tensor::{Result, Tensor};

impl Var {
    /// Same elements, new shape: ∂x = g reshaped back.
    pub fn reshape(&self, shape: &[usize]) -> Result<Var> {
        let y = self.tensor().reshape(shape)?;
        let orig = self.shape().to_vec();
        Ok(Var::from_op(y, &[self], move |g| {
            Ok(vec![Some(g.reshape(&orig)?)])
        }))
    }

    /// Reordered dimensions: ∂x = g under the inverse permutation.
    pub fn permute(&self, dims: &[usize]) -> Result<Var> {
        let y = self.tensor().permute(dims)?;
        let mut inverse = vec![0; dims.len()];
        for (i, &d) in dims.iter().enumerate() {
            inverse[d] = i;
        }
        Ok(Var::from_op(y, &[self], move |g| {
            Ok(vec![Some(g.permute(&inverse)?)])
        }))
    }

    /// Two dimensions swapped (its own inverse).
    pub fn transpose(&self, d0: usize, d1: usize) -> Result<Var> {
        let y = self.tensor().transpose(d0, d1)?;
        Ok(Var::from_op(y, &[self], move |g| {
            Ok(vec![Some(g.transpose(d0, d1)?)])
        }))
    }

    /// Elements `start..start + len` of `dim`: ∂x = g padded with zeros to the full size.
    pub fn narrow(&self, dim: usize, start: usize, len: usize) -> Result<Var> {
        let y = self.tensor().narrow(dim, start, len)?;
        let shape = self.shape().to_vec();
        Ok(Var::from_op(y, &[self], move |g| {
            let zeros_along = |size: usize| {
                let mut s = shape.clone();
                s[dim] = size;
                zeros(&s, g)
            };
            let after = shape[dim] - start - len;
            let mut parts = Vec::with_capacity(3);
            if start > 0 {
                parts.push(zeros_along(start)?);
            }
            parts.push(g.clone());
            if after > 0 {
                parts.push(zeros_along(after)?);
            }
            let refs: Vec<&Tensor> = parts.iter().collect();
            Ok(vec![Some(Tensor::concat(&refs, dim)?)])
        }))
    }

    /// A broadcast view: ∂x = g summed over the broadcast axes.
    pub fn broadcast_to(&self, shape: &[usize]) -> Result<Var> {
        let y = self.tensor().broadcast_to(shape)?;
        let orig = self.shape().to_vec();
        Ok(Var::from_op(y, &[self], move |g| {
            Ok(vec![Some(sum_to_shape(g, &orig)?)])
        }))
    }

    /// Joins variables along `dim`: each part's gradient is its slice of g.
    pub fn concat(vars: &[&Var], dim: usize) -> Result<Var> {
        let tensors: Vec<&Tensor> = vars.iter().map(|v| v.tensor()).collect();
        let y = Tensor::concat(&tensors, dim)?;
        let sizes: Vec<usize> = vars.iter().map(|v| v.shape()[dim]).collect();
        Ok(Var::from_op(y, vars, move |g| {
            let mut start = 0;
            sizes
                .iter()
                .map(|&n| {
                    let part = g.narrow(dim, start, n)?;
                    start += n;
                    Ok(Some(part))
                })
                .collect()
        }))
    }

    /// Slices `indices` of `dim` (an embedding lookup when `dim` is 0): ∂x scatters g back, summing repeats.
    pub fn index_select(&self, dim: usize, indices: &[usize]) -> Result<Var> {
        let y = self.tensor().index_select(dim, indices)?;
        let (size, indices) = (self.shape()[dim], indices.to_vec());
        Ok(Var::from_op(y, &[self], move |g| {
            Ok(vec![Some(g.index_select_backward(dim, size, &indices)?)])
        }))
    }

    /// `out[.., j, ..] = x[.., index[.., j, ..], ..]` along `dim` (see [`Tensor::gather`]): ∂x scatters g back.
    pub fn gather(&self, dim: usize, index_shape: &[usize], index: &[usize]) -> Result<Var> {
        let y = self.tensor().gather(dim, index_shape, index)?;
        let (shape, index) = (self.shape().to_vec(), index.to_vec());
        Ok(Var::from_op(y, &[self], move |g| {
            Ok(vec![Some(g.gather_backward(dim, &shape, &index)?)])
        }))
    }

    /// Nearest-neighbour 2× upsampling of (N, C, H, W): ∂x sums each 2×2 block of g.
    pub fn upsample_nearest2x(&self) -> Result<Var> {
        let y = self.tensor().upsample_nearest2x()?;
        Ok(Var::from_op(y, &[self], |g| {
            Ok(vec![Some(g.upsample_nearest2x_backward()?)])
        }))
    }

    /// Removes a size-1 dimension (a reshape).
    pub fn squeeze(&self, dim: usize) -> Result<Var> {
        let shape = self.tensor().squeeze(dim)?.shape().to_vec();
        self.reshape(&shape)
    }

    /// Inserts a size-1 dimension (a reshape).
    pub fn unsqueeze(&self, dim: usize) -> Result<Var> {
        let shape = self.tensor().unsqueeze(dim)?.shape().to_vec();
        self.reshape(&shape)
    }
}
