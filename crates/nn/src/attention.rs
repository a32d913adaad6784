//! Self-attention over the pixels of a feature map, the block diffusers' U-Nets use (`Attention` with a group norm,
//! `residual_connection=True`, `rescale_output_factor = 1`):
//!
//! ```text
//! h   = GroupNorm(x)                                (N, C, H, W), viewed as N sequences of L = H·W tokens of size C
//! q,k,v = h·Wqᵀ + bq, h·Wkᵀ + bk, h·Wvᵀ + bv        (N, L, inner), inner = heads·head_dim
//! o   = softmax(q·kᵀ/√head_dim)·v  per head         one fused attention kernel over (N·heads, L, head_dim)
//! y   = x + (o·Woᵀ + bo)  back in (N, C, H, W)
//! ```
//!
//! The channel-first feature map is read as tokens through a transposed view, which the GEMM takes by strides, and
//! the output projection is computed as `Wo·oᵀ`, which lands directly in channel-first order: the only copies are
//! the head split before the attention kernel and the head merge after it (none with one head).

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
        let &[n, c, h, w] = x.shape() else {
            return Err(Error::shape(
                "SpatialSelfAttention",
                format!("expects an (N, C, H, W) input, got {:?}", x.shape()),
            ));
        };
        let (len, heads, d) = (h * w, self.heads, self.head_dim);
        // (N, C, L) viewed as (N, L, C): the GEMM reads the transpose by strides.
        let tokens = self
            .group_norm
            .forward(x)?
            .reshape(&[n, c, len])?
            .transpose(1, 2)?;
        let split_heads = |proj: &Linear| -> Result<Var> {
            let y = proj.forward(&tokens)?; // (N, L, inner)
            if heads == 1 {
                return Ok(y);
            }
            y.reshape(&[n, len, heads, d])?
                .permute(&[0, 2, 1, 3])?
                .reshape(&[n * heads, len, d])
        };
        let (q, k, v) = (
            split_heads(&self.to_q)?,
            split_heads(&self.to_k)?,
            split_heads(&self.to_v)?,
        );
        let o = q.attention(&k, &v, 1.0 / (d as f32).sqrt())?;
        let o = if heads == 1 {
            o
        } else {
            o.reshape(&[n, heads, len, d])?
                .permute(&[0, 2, 1, 3])?
                .reshape(&[n, len, heads * d])?
        };
        // Wo·oᵀ + bo: (C, inner) × (N, inner, L) → (N, C, L), already channel-first.
        let mut y = self.to_out.weight.matmul(&o.transpose(1, 2)?)?;
        if let Some(b) = &self.to_out.bias {
            y = y.add(&b.reshape(&[c, 1])?)?;
        }
        y.reshape(&[n, c, h, w])?.add(x)
    }
}
