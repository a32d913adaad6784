//! The per-sample mean squared error of a training loss in one kernel each way: `mse[n] = mean (p − t)²` over all but
//! the first axis; `∂p = (2/D)·g[n]·(p − t)` and `∂t = −∂p`. A loss weighting applied to the (N) result reaches the
//! backward kernel inside `g`, so the weighted loss's gradient is written in one pass.

use crate::var::Var;
use diffuse_tensor::Result;

impl Var {
    /// The mean squared error of each sample of `self` (N, ...) against `target` of the same shape: (N). Equal to
    /// `self.sub(target)?.square()?.mean(&[1, ..], false)` without its three temporaries and five passes.
    pub fn sample_mse(&self, target: &Var) -> Result<Var> {
        let (p, t) = (self.tensor().clone(), target.tensor().clone());
        let mse = p.sample_mse(&t)?;
        // A training target is data: its gradient (one more pass) is computed only when it is wanted.
        let target_needs_grad = target.requires_grad();
        Ok(Var::from_op(mse, &[self, target], move |g| {
            let gp = g.sample_mse_backward(&p, &t)?;
            let gt = target_needs_grad.then(|| gp.neg()).transpose()?;
            Ok(vec![Some(gp), gt])
        }))
    }
}
