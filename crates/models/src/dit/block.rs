//! One DiT block: diffusers' `BasicTransformerBlock` with `norm_type = "ada_norm_zero"` and no cross-attention.
//!
//! ```text
//! c                      = norm1.emb(t, y)                                   (N, D), this block's own embedder
//! shift₁ scale₁ gate₁ shift₂ scale₂ gate₂ = norm1.linear(SiLU(c))            six (N, D) chunks, in that order
//! x = x + gate₁ ∘ attn1(LayerNorm(x)·(1 + scale₁) + shift₁)                  LayerNorm ε = 1e-6
//! x = x + gate₂ ∘ ff(LayerNorm(x)·(1 + scale₂) + shift₂)                     LayerNorm ε = norm_eps
//! attn1(h) = to_out(softmax(q kᵀ/√d_h) v) per head, q, k, v = to_{q,k,v}(h)
//! ff(h)    = net.2(GELU_tanh(net.0.proj(h)))                                 D → 4D → D
//! ```
//!
//! Each normalise-and-modulate is one fused kernel ([`Var::layer_norm_modulate`]) and each gated residual another
//! ([`Var::gated_residual`]); the chunks are views of the modulation's output.

use super::embedding::CombinedTimestepLabelEmbeddings;
use super::init::{linear, xavier_linear, zeros};
use diffuse_autograd::Var;
use diffuse_nn::{Linear, Module, Path};
use diffuse_tensor::Result;

/// ε of the layer norms inside `AdaLayerNormZero` and before the final projection (fixed in diffusers).
pub const ADA_NORM_EPS: f32 = 1e-6;

/// diffusers' `AdaLayerNormZero` (`norm1`): the block's conditioning embedder and the map from it to the six
/// modulation vectors.
pub struct AdaLayerNormZero {
    pub emb: CombinedTimestepLabelEmbeddings,
    /// `D → 6D`, zero at initialisation (adaLN-Zero).
    pub linear: Linear,
}

/// diffusers' `Attention` as a DiT block uses it: self-attention over the tokens, no norm, no residual inside.
pub struct SelfAttention {
    pub to_q: Linear,
    pub to_k: Linear,
    pub to_v: Linear,
    /// `to_out.0`.
    pub to_out: Linear,
    pub heads: usize,
    pub head_dim: usize,
}

impl SelfAttention {
    fn new(path: &Path, dim: usize, heads: usize, head_dim: usize, bias: bool) -> Result<Self> {
        let inner = heads * head_dim;
        Ok(SelfAttention {
            to_q: xavier_linear(&path.sub("to_q"), dim, inner, bias)?,
            to_k: xavier_linear(&path.sub("to_k"), dim, inner, bias)?,
            to_v: xavier_linear(&path.sub("to_v"), dim, inner, bias)?,
            to_out: xavier_linear(&path.sub("to_out").sub(0), inner, dim, true)?,
            heads,
            head_dim,
        })
    }

    /// Tokens `h` (N, L, D) → (N, L, D).
    pub fn forward(&self, h: &Var) -> Result<Var> {
        let (q, k, v) = (
            self.to_q.forward(h)?,
            self.to_k.forward(h)?,
            self.to_v.forward(h)?,
        );
        // The heads stay side by side in each row: the kernel reads and writes (N, L, heads·head_dim) directly.
        let o = q.attention(&k, &v, self.heads, 1.0 / (self.head_dim as f32).sqrt())?;
        self.to_out.forward(&o)
    }
}

/// diffusers' `FeedForward` with a GELU input projection: `net.2(act(net.0.proj(h)))`, `D → 4D → D`.
pub struct FeedForward {
    /// `net.0.proj`.
    pub proj_in: Linear,
    /// `net.2`.
    pub proj_out: Linear,
    /// The tanh approximation of GELU (`"gelu-approximate"`) rather than the exact one (`"gelu"`).
    pub tanh_gelu: bool,
}

impl FeedForward {
    pub fn forward(&self, h: &Var) -> Result<Var> {
        let a = self.proj_in.forward(h)?;
        let a = if self.tanh_gelu {
            a.gelu_tanh()?
        } else {
            a.gelu()?
        };
        self.proj_out.forward(&a)
    }
}

/// The settings every block of one network shares.
pub(crate) struct BlockSettings {
    pub dim: usize,
    pub heads: usize,
    pub head_dim: usize,
    pub attention_bias: bool,
    pub tanh_gelu: bool,
    pub classes: usize,
    /// ε of the layer norm before the feed-forward (`norm3`).
    pub ff_norm_eps: f32,
}

/// `BasicTransformerBlock` with adaLN-Zero: `norm1` (embedder and modulation), `attn1`, `norm3` (parameter-free,
/// fused with its modulation) and `ff`.
pub struct DiTBlock {
    pub norm1: AdaLayerNormZero,
    pub attn1: SelfAttention,
    pub ff: FeedForward,
    ff_norm_eps: f32,
}

impl DiTBlock {
    pub(crate) fn new(path: &Path, s: &BlockSettings) -> Result<DiTBlock> {
        let d = s.dim;
        let norm1 = path.sub("norm1");
        let ff = path.sub("ff").sub("net");
        Ok(DiTBlock {
            norm1: AdaLayerNormZero {
                emb: CombinedTimestepLabelEmbeddings::new(&norm1.sub("emb"), s.classes, d)?,
                linear: linear(&norm1.sub("linear"), d, 6 * d, zeros(), true)?,
            },
            attn1: SelfAttention::new(
                &path.sub("attn1"),
                d,
                s.heads,
                s.head_dim,
                s.attention_bias,
            )?,
            ff: FeedForward {
                proj_in: xavier_linear(&ff.sub(0).sub("proj"), d, 4 * d, true)?,
                proj_out: xavier_linear(&ff.sub(2), 4 * d, d, true)?,
                tanh_gelu: s.tanh_gelu,
            },
            ff_norm_eps: s.ff_norm_eps,
        })
    }

    /// Tokens `x` (N, L, D) under this block's conditioning `c` (N, D) → (N, L, D).
    pub fn forward(&self, x: &Var, c: &Var) -> Result<Var> {
        let d = x.shape()[2];
        let modulation = self.norm1.linear.forward(&c.silu()?)?;
        let chunk = |k: usize| modulation.narrow(1, k * d, d);
        let (shift_msa, scale_msa, gate_msa) = (chunk(0)?, chunk(1)?, chunk(2)?);
        let (shift_mlp, scale_mlp, gate_mlp) = (chunk(3)?, chunk(4)?, chunk(5)?);
        let h = x.layer_norm_modulate(&scale_msa, &shift_msa, ADA_NORM_EPS)?;
        let x = x.gated_residual(&gate_msa, &self.attn1.forward(&h)?)?;
        let h = x.layer_norm_modulate(&scale_mlp, &shift_mlp, self.ff_norm_eps)?;
        x.gated_residual(&gate_mlp, &self.ff.forward(&h)?)
    }
}
