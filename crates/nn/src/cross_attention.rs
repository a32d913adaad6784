//! Cross-attention from the pixels of a feature map to a context sequence (text tokens, class embeddings), the
//! block diffusers builds as `Attention(query_dim=C, cross_attention_dim=D, heads, dim_head, bias=True,
//! norm_num_groups=G, residual_connection=True)` and calls with `encoder_hidden_states`:
//!
//! ```text
//! h    = GroupNorm(x)                             (N, C, H, W), viewed as N sequences of L = H·W tokens of size C
//! q    = h·Wqᵀ + bq                               (N, L, inner), inner = heads·head_dim
//! k, v = c·Wkᵀ + bk, c·Wvᵀ + bv                   (N, Lc, inner), from the context c (N, Lc, D)
//! o    = softmax(q·kᵀ/√head_dim)·v  per head      one fused attention kernel over (N·heads, L, head_dim)
//! y    = x + (o·Woᵀ + bo)  back in (N, C, H, W)
//! ```
//!
//! It is [`crate::SpatialSelfAttention`] with keys and values taken from the context instead of the map, and shares
//! its token view and attention core.

use crate::attention::{feature_map_tokens, multi_head_attention};
use crate::layers::{GroupNorm, Linear};
use crate::store::Path;
use diffuse_autograd::Var;
use diffuse_tensor::{Error, Result};

/// Multi-head cross-attention with a pre-norm of the map and a residual connection.
///
/// Parameters (diffusers' names): `group_norm.{weight,bias}` (C), `to_q` (inner × C), `to_k`, `to_v`
/// (inner × D), `to_out.0` (C × inner), all with bias.
pub struct CrossAttention {
    pub group_norm: GroupNorm,
    pub to_q: Linear,
    pub to_k: Linear,
    pub to_v: Linear,
    pub to_out: Linear,
    pub heads: usize,
    pub head_dim: usize,
    pub context_dim: usize,
}

impl CrossAttention {
    /// A map of `channels` attending to a context of `context_dim` features per token, in `heads` heads of
    /// `head_dim`, the map normalised in `groups` groups with `eps`.
    pub fn new(
        path: &Path,
        channels: usize,
        context_dim: usize,
        heads: usize,
        head_dim: usize,
        groups: usize,
        eps: f32,
    ) -> Result<CrossAttention> {
        if heads == 0 || head_dim == 0 || context_dim == 0 {
            return Err(Error::argument(
                "CrossAttention",
                format!("needs at least one head of at least one channel and a context of at least one feature, got {heads} heads of {head_dim} over a context of {context_dim}"),
            ));
        }
        let inner = heads * head_dim;
        Ok(CrossAttention {
            group_norm: GroupNorm::new(&path.sub("group_norm"), groups, channels, eps)?,
            to_q: Linear::new(&path.sub("to_q"), channels, inner, true)?,
            to_k: Linear::new(&path.sub("to_k"), context_dim, inner, true)?,
            to_v: Linear::new(&path.sub("to_v"), context_dim, inner, true)?,
            to_out: Linear::new(&path.sub("to_out").sub(0), inner, channels, true)?,
            heads,
            head_dim,
            context_dim,
        })
    }

    /// `x` (N, C, H, W) attending to `context` (N, Lc, D) → (N, C, H, W).
    pub fn forward(&self, x: &Var, context: &Var) -> Result<Var> {
        let (tokens, [n, c, h, w]) = feature_map_tokens("CrossAttention", &self.group_norm, x)?;
        match context.shape() {
            &[cn, lc, d] if cn == n && lc > 0 && d == self.context_dim => {}
            shape => {
                return Err(Error::shape(
                    "CrossAttention",
                    format!(
                        "the context must be (N = {n}, Lc ≥ 1, D = {}) for a map of shape {:?}, got {shape:?}",
                        self.context_dim,
                        x.shape()
                    ),
                ))
            }
        }
        let projections = [&self.to_q, &self.to_k, &self.to_v, &self.to_out];
        let y = multi_head_attention(&tokens, context, projections, self.heads, self.head_dim)?;
        y.reshape(&[n, c, h, w])?.add(x)
    }
}
