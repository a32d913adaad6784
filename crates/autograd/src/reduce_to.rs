//! Undoing broadcasting in the backward pass: an input broadcast to a larger shape was used once per copy, so its
//! gradient is the output gradient summed over the broadcast axes.

use diffuse_tensor::{Error, Result, Tensor};

/// Sums `grad` down to `shape`, which must broadcast to `grad`'s shape: over the leading axes `shape` lacks, and over
/// the axes where `shape` has 1 and `grad` more.
pub(crate) fn sum_to_shape(grad: &Tensor, shape: &[usize]) -> Result<Tensor> {
    if grad.shape() == shape {
        return Ok(grad.clone());
    }
    let lead = grad.rank().checked_sub(shape.len()).ok_or_else(|| {
        Error::shape(
            "sum_to_shape",
            format!("gradient {:?} has lower rank than {shape:?}", grad.shape()),
        )
    })?;
    let mut dims: Vec<usize> = (0..lead).collect();
    dims.extend(
        (0..shape.len())
            .filter(|&i| shape[i] == 1 && grad.shape()[lead + i] != 1)
            .map(|i| lead + i),
    );
    grad.sum(&dims, true)?.reshape(shape)
}
