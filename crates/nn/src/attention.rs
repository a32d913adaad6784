//! Self-attention over the pixels of a feature map, the block diffusers' U-Nets use (`Attention` with a group norm,
//! `residual_connection=True`, `rescale_output_factor = 1`):
//!
//! ```text
//! h   = GroupNorm(x)                                (N, C, H, W), viewed as N sequences of L = H·W tokens of size C
//! q,k,v = h·Wqᵀ + bq, h·Wkᵀ + bk, h·Wvᵀ + bv        (N, L, inner), inner = heads·head_dim
//! o   = softmax(q·kᵀ/√head_dim)·v  per head         one fused attention kernel, heads side by side in each row
//! y   = x + (o·Woᵀ + bo)  back in (N, C, H, W)
//! ```
//!
//! The channel-first feature map is read as tokens through a transposed view, which the GEMM takes by strides, and
//! the output projection is computed as `Wo·oᵀ`, which lands directly in channel-first order; the attention kernel
//! reads the projections' (N, L, heads·head_dim) rows and writes its output in that layout, so no head is ever split
//! off into a copy of its own. The token view and the attention core are shared with [`crate::CrossAttention`], which
//! takes keys and values from a context instead.

use crate::layers::{GroupNorm, Linear, Module};
use crate::store::Path;
use diffuse_autograd::Var;
use diffuse_tensor::{Error, Result};

/// Multi-head self-attention with a pre-norm and a residual connection, over the H·W positions of (N, C, H, W).
///
/// Parameters (diffusers' names): `group_norm.{weight,bias}`, `to_q`, `to_k`, `to_v` (inner × C, with bias),
/// `to_out.0` (C × inner, with bias).
pub struct SpatialSelfAttention {
    pub group_norm: GroupNorm,
    pub to_q: Linear,
    pub to_k: Linear,
    pub to_v: Linear,
    pub to_out: Linear,
    pub heads: usize,
    pub head_dim: usize,
}

impl SpatialSelfAttention {
    /// `channels` split into `heads` heads of `head_dim` (their product, the inner width, need not be `channels`),
    /// normalised in `groups` groups with `eps`.
    pub fn new(
        path: &Path,
        channels: usize,
        heads: usize,
        head_dim: usize,
        groups: usize,
        eps: f32,
    ) -> Result<SpatialSelfAttention> {
        if heads == 0 || head_dim == 0 {
            return Err(Error::argument(
                "SpatialSelfAttention",
                format!("{channels} channels need at least one head of at least one channel, got {heads} heads of {head_dim}"),
            ));
        }
        let inner = heads * head_dim;
        Ok(SpatialSelfAttention {
            group_norm: GroupNorm::new(&path.sub("group_norm"), groups, channels, eps)?,
            to_q: Linear::new(&path.sub("to_q"), channels, inner, true)?,
            to_k: Linear::new(&path.sub("to_k"), channels, inner, true)?,
            to_v: Linear::new(&path.sub("to_v"), channels, inner, true)?,
            to_out: Linear::new(&path.sub("to_out").sub(0), inner, channels, true)?,
            heads,
            head_dim,
        })
    }

    /// `x` (N, C, H, W) → same shape.
    pub fn forward(&self, x: &Var) -> Result<Var> {
        let (tokens, [n, c, h, w]) =
            feature_map_tokens("SpatialSelfAttention", &self.group_norm, x)?;
        let projections = [&self.to_q, &self.to_k, &self.to_v, &self.to_out];
        let y = multi_head_attention(&tokens, &tokens, projections, self.heads, self.head_dim)?;
        y.reshape(&[n, c, h, w])?.add(x)
    }
}

/// The group-normalised feature map `x` (N, C, H, W) as N sequences of H·W tokens of size C, (N, H·W, C): a
/// transposed view of the channel-first data, which the projections' GEMM reads by strides. Also returns the shape.
pub(crate) fn feature_map_tokens(
    op: &'static str,
    group_norm: &GroupNorm,
    x: &Var,
) -> Result<(Var, [usize; 4])> {
    let &[n, c, h, w] = x.shape() else {
        return Err(Error::shape(
            op,
            format!("expects an (N, C, H, W) input, got {:?}", x.shape()),
        ));
    };
    let tokens = group_norm
        .forward(x)?
        .reshape(&[n, c, h * w])?
        .transpose(1, 2)?;
    Ok((tokens, [n, c, h, w]))
}

/// Multi-head attention of the `queries` (N, Lq, C) over the `context` (N, Lk, D), through the projections
/// `[to_q, to_k, to_v, to_out]`, returned channel-first as (N, C, Lq): `Wo·oᵀ + bo` lands in that order directly.
pub(crate) fn multi_head_attention(
    queries: &Var,
    context: &Var,
    [to_q, to_k, to_v, to_out]: [&Linear; 4],
    heads: usize,
    head_dim: usize,
) -> Result<Var> {
    let o = attend_heads(queries, context, [to_q, to_k, to_v], heads, head_dim)?;
    // Wo·oᵀ + bo: (C, inner) × (N, inner, Lq) → (N, C, Lq), already channel-first.
    let mut y = to_out.weight.matmul(&o.transpose(1, 2)?)?;
    if let Some(b) = &to_out.bias {
        y = y.add(&b.reshape(&[b.shape()[0], 1])?)?;
    }
    Ok(y)
}

/// The attention core: the queries (N, Lq, C) and the context (N, Lk, D) projected by `[to_q, to_k, to_v]` to
/// (N, L, inner) with the `heads` heads of `head_dim` side by side in each row, `softmax(q·kᵀ/√head_dim)·v` per head
/// by the attention kernel reading and writing that layout directly: (N, Lq, inner), no head split or merge copies.
pub(crate) fn attend_heads(
    queries: &Var,
    context: &Var,
    [to_q, to_k, to_v]: [&Linear; 3],
    heads: usize,
    head_dim: usize,
) -> Result<Var> {
    let (q, k, v) = (
        to_q.forward(queries)?,
        to_k.forward(context)?,
        to_v.forward(context)?,
    );
    q.attention(&k, &v, heads, 1.0 / (head_dim as f32).sqrt())
}
