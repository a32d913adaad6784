//! [`all_gather_rows`]: the all-gather of data-parallel training as an autograd operation, for losses that couple
//! the samples of a batch (CLIP's contrastive loss scores every image against every caption of the global batch).
//!
//! Forward: rank `r` holds `x_r` (`n_r` rows); every rank gets `G = [x_0; x_1; …; x_{N−1}]`, the same on all.
//!
//! Backward: each rank `q` computes its own loss `ℓ_q(G, θ)` from the gathered rows, and the run minimises
//! `J = Σ_q ℓ_q`. Rows `r` of `G` are `x_r`, which only rank `r` computed, so by the chain rule
//!
//! ```text
//! ∂J/∂x_r = Σ_q ∂ℓ_q/∂G [rows of r]   =   (all-reduce-sum of every rank's ∂ℓ_q/∂G) [rows of r]
//! ```
//!
//! that is: the gradient arriving at `G` on each rank is summed over the ranks, and each rank keeps its own slice,
//! which it back-propagates into the layers that made `x_r`. The parameter gradients each rank then computes are
//! its part of `∂J/∂θ` (through its own rows, plus the direct `∂ℓ_q/∂θ`), and summing them over the ranks (the
//! all-reduce of the parameter gradients that every data-parallel step does) gives `∂J/∂θ`. When every rank computes
//! the same loss `L(G)` and back-propagates `ℓ_q = L / N`, `J = L`: the single process's loss and gradient.

use super::collective::Collective;
use crate::error::{Error, Result};
use diffuse_autograd::Var;
use diffuse_tensor::Error as TensorError;
use std::rc::Rc;

/// Every rank's `local` (`rows[r]` rows on rank `r`, each of the same shape) stacked in rank order along dimension
/// 0, as a variable whose gradient flows back to `local` summed over the ranks (see the module documentation).
pub fn all_gather_rows(
    collective: &Rc<dyn Collective>,
    local: &Var,
    rows: &[usize],
) -> Result<Var> {
    let shape = local.shape().to_vec();
    if shape.is_empty() {
        return Err(Error::train(
            "all_gather_rows",
            "gathers rows: the local tensor needs at least one dimension",
        ));
    }
    let row: usize = shape[1..].iter().product();
    let counts: Vec<usize> = rows.iter().map(|&n| n * row).collect();
    let flat = local.tensor().reshape(&[local.tensor().numel()])?;
    let mut gathered_shape = shape.clone();
    gathered_shape[0] = rows.iter().sum();
    let gathered = collective
        .all_gather(&flat, &counts)?
        .reshape(&gathered_shape)?;
    let rank = collective.rank();
    let start: usize = rows[..rank].iter().sum();
    let collective = Rc::clone(collective);
    Ok(Var::custom_op(gathered, &[local], move |grad| {
        let flat = grad.reshape(&[grad.numel()])?;
        let summed = collective
            .all_reduce_sum(&flat)
            .map_err(|e| match e {
                Error::Tensor(e) => e,
                other => TensorError::argument("all_gather_rows", other.to_string()),
            })?
            .reshape(grad.shape())?;
        Ok(vec![Some(summed.narrow(0, start, shape[0])?.contiguous()?)])
    }))
}
