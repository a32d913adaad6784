//! diffusers' `Attention` on token sequences, as a transformer block uses it: no normalisation and no residual inside
//! (the block around it has both), queries from the tokens, keys and values from the same tokens (self-attention) or
//! from a context sequence (cross-attention, e.g. a text encoder's hidden states):
//!
//! ```text
//! q    = x·Wqᵀ (+ bq)                            (N, L, inner), inner = heads·head_dim, from the tokens x (N, L, C)
//! k, v = c·Wkᵀ (+ bk), c·Wvᵀ (+ bv)              (N, Lc, inner), c = x, or the context (N, Lc, D)
//! o    = softmax(q·kᵀ/√head_dim)·v  per head     one fused attention kernel, heads side by side in each row
//! y    = o·Woᵀ + bo                              (N, L, C)
//! ```
//!
//! [`crate::SpatialSelfAttention`] and [`crate::CrossAttention`] are the same core on a feature map, with a group
//! norm and a residual of their own; all three share it.

use crate::attention::attend_heads;
use crate::layers::{Linear, Module};
use crate::store::Path;
use diffuse_autograd::Var;
use diffuse_tensor::{Error, Result};

/// Multi-head attention over tokens.
///
/// Parameters (diffusers' names): `to_q` (inner × C), `to_k`, `to_v` (inner × D), with biases only when built with
/// `qkv_bias`; `to_out.0` (C × inner, with bias).
pub struct Attention {
    pub to_q: Linear,
    pub to_k: Linear,
    pub to_v: Linear,
    pub to_out: Linear,
    pub heads: usize,
    pub head_dim: usize,
    /// Features per context token: `C` for self-attention, `D` for cross-attention.
    pub context_dim: usize,
}

impl Attention {
    /// Tokens of `dim` features attending, in `heads` heads of `head_dim`, to tokens of `context_dim` features (pass
    /// `dim` for self-attention); `qkv_bias` gives `to_q`, `to_k` and `to_v` biases.
    pub fn new(
        path: &Path,
        dim: usize,
        context_dim: usize,
        heads: usize,
        head_dim: usize,
        qkv_bias: bool,
    ) -> Result<Attention> {
        if heads == 0 || head_dim == 0 || dim == 0 || context_dim == 0 {
            return Err(Error::argument(
                "Attention",
                format!(
                    "needs at least one head of at least one channel over tokens and a context of at least one \
                     feature, got {heads} heads of {head_dim} over {dim} features attending to {context_dim}"
                ),
            ));
        }
        let inner = heads * head_dim;
        Ok(Attention {
            to_q: Linear::new(&path.sub("to_q"), dim, inner, qkv_bias)?,
            to_k: Linear::new(&path.sub("to_k"), context_dim, inner, qkv_bias)?,
            to_v: Linear::new(&path.sub("to_v"), context_dim, inner, qkv_bias)?,
            to_out: Linear::new(&path.sub("to_out").sub(0), inner, dim, true)?,
            heads,
            head_dim,
            context_dim,
        })
    }

    /// Tokens `x` (N, L, C) attending to `context` (N, Lc, D), or to themselves when `context` is `None` →
    /// (N, L, C).
    pub fn forward(&self, x: &Var, context: Option<&Var>) -> Result<Var> {
        let dim = self.to_q.weight.shape()[1];
        let &[n, len, c] = x.shape() else {
            return Err(Error::shape(
                "Attention",
                format!("expects tokens (N, L, C), got {:?}", x.shape()),
            ));
        };
        if c != dim || len == 0 {
            return Err(Error::shape(
                "Attention",
                format!("expects tokens (N, L ≥ 1, C = {dim}), got {:?}", x.shape()),
            ));
        }
        let context = context.unwrap_or(x);
        match context.shape() {
            &[cn, lc, d] if cn == n && lc > 0 && d == self.context_dim => {}
            shape => {
                return Err(Error::shape(
                    "Attention",
                    format!(
                        "the context must be (N = {n}, Lc ≥ 1, D = {}) for tokens of shape {:?}, got {shape:?}",
                        self.context_dim,
                        x.shape()
                    ),
                ))
            }
        }
        let projections = [&self.to_q, &self.to_k, &self.to_v];
        let o = attend_heads(x, context, projections, self.heads, self.head_dim)?;
        self.to_out.forward(&o)
    }
}
