//! Multi-head self-attention over one fused q/k/v projection (a transformer block's `to_q`, `to_k`, `to_v` as a
//! single matrix product):
//!
//! ```text
//! qkv (N, L, 3·H·d) = [q | k | v], each (N, L, H·d) with head h in features h·d .. h·d + d
//! out (N, L, H·d)   = per sample n and head h: softmax(scale·q_nh·k_nhᵀ)·v_nh
//! ```
//!
//! The forward splits the heads into the `(N·H, L, d)` problems of [`Tensor::attention`] (one copy per operand) and
//! merges the output back (one copy). The rule runs [`Tensor::attention_backward`] and joins `∂q, ∂k, ∂v` into one
//! `(N, L, 3·H·d)` gradient. Against three separate projections, the three input products become one, and so do the
//! three products of the input's gradient, which then needs no summing of three copies.

use crate::var::Var;
use diffuse_tensor::{Error, Result, Tensor};

impl Var {
    /// Self-attention of `self` = `[q | k | v]` (N, L, 3·H·d) in `heads` heads with scores scaled by `scale`:
    /// (N, L, H·d), heads side by side as diffusers' `Attention` merges them.
    pub fn packed_self_attention(&self, heads: usize, scale: f32) -> Result<Var> {
        let qkv = self.tensor();
        let &[n, len, width] = qkv.shape() else {
            return Err(Error::shape(
                "packed_self_attention",
                format!(
                    "the fused projection must be (N, L, 3·heads·head_dim), got shape {:?}",
                    qkv.shape()
                ),
            ));
        };
        if heads == 0 || width == 0 || !width.is_multiple_of(3 * heads) {
            return Err(Error::argument(
                "packed_self_attention",
                format!(
                    "{width} features do not split into q, k and v of {heads} heads each: the last dimension must be \
                     a positive multiple of 3·heads = {}",
                    3 * heads
                ),
            ));
        }
        let inner = width / 3;
        let head_dim = inner / heads;
        // (N, L, H·d) slice `part` of the projection → (N·H, L, d), copied contiguous by the last reshape.
        let split = |part: usize| -> Result<Tensor> {
            qkv.narrow(2, part * inner, inner)?
                .reshape(&[n, len, heads, head_dim])?
                .permute(&[0, 2, 1, 3])?
                .reshape(&[n * heads, len, head_dim])
        };
        let (q, k, v) = (split(0)?, split(1)?, split(2)?);
        let (heads_out, lse) = q.attention(&k, &v, scale)?;
        let merge = move |t: &Tensor| -> Result<Tensor> {
            t.reshape(&[n, heads, len, head_dim])?
                .permute(&[0, 2, 1, 3])
        };
        let out = merge(&heads_out)?.reshape(&[n, len, inner])?;
        Ok(Var::from_op(out, &[self], move |g| {
            let g_heads = g
                .reshape(&[n, len, heads, head_dim])?
                .permute(&[0, 2, 1, 3])?
                .reshape(&[n * heads, len, head_dim])?;
            let (dq, dk, dv) =
                g_heads.attention_backward((&q, &k, &v), (&heads_out, &lse), scale)?;
            // Each (N, H, L, d) → (N, L, H, d), side by side along the heads: (N, L, 3·H, d) is the projection's layout.
            let (dq, dk, dv) = (merge(&dq)?, merge(&dk)?, merge(&dv)?);
            let joined = Tensor::concat(&[&dq, &dk, &dv], 2)?;
            Ok(vec![Some(joined.reshape(&[n, len, width])?)])
        }))
    }
}
