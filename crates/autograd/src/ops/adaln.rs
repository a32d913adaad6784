//! The fused operations of adaLN-Zero (a DiT block's conditioning) and their rules:
//!
//! - `y = LayerNorm(x)·(1 + scale) + shift` over tokens `x` (N, L, D) with `scale, shift` (N, D): the rules of
//!   [`Tensor::layer_norm_modulate_backward`] from the saved input and statistics;
//! - `out = x + gate∘y` with `gate` (N, D): `∂x = g`, and `∂y = gate∘g`, `∂gate = Σ_tokens g∘y` in one fused pass
//!   ([`Tensor::gated_residual_backward`]).

use crate::var::Var;
use diffuse_tensor::{Result, Tensor};

impl Var {
    /// The layer norm of each token of `self` (N, L, D), without an affine of its own, modulated by its sample's
    /// `scale` and `shift` (N, D): `x̂·(1 + scale) + shift`.
    pub fn layer_norm_modulate(&self, scale: &Var, shift: &Var, eps: f32) -> Result<Var> {
        let (x, s) = (self.tensor().clone(), scale.tensor().clone());
        let (y, mean, rstd) = x.layer_norm_modulate(&s, shift.tensor(), eps)?;
        Ok(Var::from_op(y, &[self, scale, shift], move |g| {
            let (gx, gs, gb) = g.layer_norm_modulate_backward(&x, &s, (&mean, &rstd))?;
            Ok(vec![Some(gx), Some(gs), Some(gb)])
        }))
    }

    /// `self + gate∘y`: the branch `y` (N, L, D) joins the residual stream `self` through `gate` (N, D).
    pub fn gated_residual(&self, gate: &Var, y: &Var) -> Result<Var> {
        let (gt, yt): (Tensor, Tensor) = (gate.tensor().clone(), y.tensor().clone());
        let out = self.tensor().gated_residual(&gt, &yt)?;
        Ok(Var::from_op(out, &[self, gate, y], move |g| {
            let (gy, ggate) = g.gated_residual_backward(&gt, &yt)?;
            Ok(vec![Some(g.clone()), Some(ggate), Some(gy)])
        }))
    }
}
