//! Inverted dropout with a reproducible mask. Element `i` is kept when element `offset + i` of the Philox stream
//! `seed`, a uniform `u` on (0, 1), exceeds `p`, which happens with probability `1 − p`:
//!
//! ```text
//! m_i = 1/(1 − p) if u_{offset+i} > p else 0        y = x∘m        ∂x = g∘m
//! ```
//!
//! Scaling the kept elements by `1/(1 − p)` keeps `E[y] = x`, so evaluation (no dropout) needs no rescaling. The
//! mask depends only on `(seed, offset)` and the shape, never on the device or the thread count, so a run repeats
//! exactly; the rule saves only the mask.

use crate::var::Var;
use diffuse_tensor::{Error, Result, Tensor};

impl Var {
    /// Drops each element with probability `p` ∈ [0, 1) and scales the rest by `1/(1 − p)`, the mask drawn from
    /// Philox stream `seed` starting at element `offset` (the next call should start at `offset + numel`).
    pub fn dropout(&self, p: f32, seed: u64, offset: u64) -> Result<Var> {
        check_probability(p)?;
        if p == 0.0 {
            return Ok(self.clone());
        }
        let x = self.tensor();
        let uniform = Tensor::rand(x.shape(), seed, offset, x.device())?.to_dtype(x.dtype())?;
        let keep = Tensor::full(&[], 1.0 / (1.0 - p), x.dtype(), x.device())?;
        let drop = Tensor::full(&[], 0.0, x.dtype(), x.device())?;
        // u − p > 0 exactly where the element is kept; relu zeroes the rest for the select.
        let mask = uniform.add_scalar(-p)?.relu()?.where_select(&keep, &drop)?;
        let y = x.mul(&mask)?;
        Ok(Var::from_op(y, &[self], move |g| {
            Ok(vec![Some(g.mul(&mask)?)])
        }))
    }
}

/// A dropout probability must lie in [0, 1): p = 1 would drop everything and scale by 1/0.
pub(crate) fn check_probability(p: f32) -> Result<()> {
    if (0.0..1.0).contains(&p) {
        Ok(())
    } else {
        Err(Error::argument(
            "dropout",
            format!("the drop probability p must lie in [0, 1), got {p}"),
        ))
    }
}
