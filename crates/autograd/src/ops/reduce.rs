//! Sums and means over axes. Every input element contributed once to its output element, so its gradient is that
//! output's gradient (divided by the count for a mean): the gradient re-expanded over the reduced axes.

use crate::var::Var;
use diffuse_tensor::{Result, Tensor};

/// `g` (shaped like the reduction's output) broadcast back over `input_shape`.
fn expand_back(g: &Tensor, input_shape: &[usize], dims: &[usize]) -> Result<Tensor> {
    let kept: Vec<usize> = input_shape
        .iter()
        .enumerate()
        .map(|(d, &n)| if dims.contains(&d) { 1 } else { n })
        .collect();
    g.reshape(&kept)?.broadcast_to(input_shape)
}

impl Var {
    /// Σ over `dims`.
    pub fn sum(&self, dims: &[usize], keepdim: bool) -> Result<Var> {
        let y = self.tensor().sum(dims, keepdim)?;
        let (shape, dims) = (self.shape().to_vec(), dims.to_vec());
        Ok(Var::from_op(y, &[self], move |g| {
            Ok(vec![Some(expand_back(g, &shape, &dims)?)])
        }))
    }

    /// Mean over `dims`.
    pub fn mean(&self, dims: &[usize], keepdim: bool) -> Result<Var> {
        let y = self.tensor().mean(dims, keepdim)?;
        let sizes: Vec<usize> = dims.iter().map(|&d| self.shape()[d]).collect();
        // Exact for a tensor with elements; `mean` above has refused a reduction over no elements.
        let count = diffuse_tensor::layout::dims_product(&sizes);
        let (shape, dims) = (self.shape().to_vec(), dims.to_vec());
        Ok(Var::from_op(y, &[self], move |g| {
            let g = g.mul_scalar(1.0 / count as f32)?;
            Ok(vec![Some(expand_back(&g, &shape, &dims)?)])
        }))
    }

    /// Σ over every element (rank 0).
    pub fn sum_all(&self) -> Result<Var> {
        let dims: Vec<usize> = (0..self.shape().len()).collect();
        self.sum(&dims, false)
    }

    /// Mean over every element (rank 0).
    pub fn mean_all(&self) -> Result<Var> {
        let dims: Vec<usize> = (0..self.shape().len()).collect();
        self.mean(&dims, false)
    }
}
