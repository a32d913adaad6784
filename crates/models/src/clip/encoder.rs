//! The transformer both CLIP towers share (transformers' `CLIPEncoder`): `num_hidden_layers` pre-LayerNorm layers,
//!
//! ```text
//! h = h + out_proj(attention(layer_norm1(h)))        multi-head self-attention, causal for text
//! h = h + fc2(act(fc1(layer_norm2(h))))              act = quick_gelu(x) = x·σ(1.702·x) for CLIP
//! ```
//!
//! ## The causal mask
//!
//! The text tower lets token i attend only to tokens j ≤ i: `softmax(q·kᵀ/√d + M)·v` with the constant additive
//! bias `M_ij = −∞` for j > i and 0 otherwise, so each masked weight is `exp(−∞) = 0` exactly and each row keeps its
//! diagonal, whose finite score bounds the row's maximum. Both towers use the fused attention kernel, the text tower
//! with `M` as its score bias (`Var::attention_with_bias`), so no (N·heads, L, L) score matrix is ever stored.

use super::config::{ClipTextConfig, ClipVisionConfig};
use super::init::{linear, LayerStd};
use crate::error::Result;
use diffuse_autograd::Var;
use diffuse_nn::{LayerNorm, Linear, Module, Path};
use diffuse_tensor::Tensor;

/// The shape of one tower's transformer.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TowerShape {
    pub hidden: usize,
    pub heads: usize,
    pub intermediate: usize,
    pub layers: usize,
    pub eps: f32,
    pub activation: Activation,
}

impl TowerShape {
    pub(crate) fn of_text(c: &ClipTextConfig) -> TowerShape {
        TowerShape {
            hidden: c.hidden_size,
            heads: c.num_attention_heads,
            intermediate: c.intermediate_size,
            layers: c.num_hidden_layers,
            eps: c.layer_norm_eps as f32,
            activation: Activation::from_name(&c.hidden_act),
        }
    }

    pub(crate) fn of_vision(c: &ClipVisionConfig) -> TowerShape {
        TowerShape {
            hidden: c.hidden_size,
            heads: c.num_attention_heads,
            intermediate: c.intermediate_size,
            layers: c.num_hidden_layers,
            eps: c.layer_norm_eps as f32,
            activation: Activation::from_name(&c.hidden_act),
        }
    }
}

/// The MLP's activation, by its transformers name (validated by the config).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// `quick_gelu`: x·σ(1.702·x).
    QuickGelu,
    /// `gelu`: the exact x·Φ(x).
    Gelu,
    /// `gelu_new`, `gelu_pytorch_tanh`: the tanh approximation.
    GeluTanh,
}

impl Activation {
    pub(crate) fn from_name(name: &str) -> Activation {
        match name {
            "gelu" => Activation::Gelu,
            "gelu_new" | "gelu_pytorch_tanh" => Activation::GeluTanh,
            _ => Activation::QuickGelu,
        }
    }

    fn apply(self, x: &Var) -> Result<Var> {
        Ok(match self {
            Activation::QuickGelu => x.mul(&x.mul_scalar(1.702)?.sigmoid()?)?,
            Activation::Gelu => x.gelu()?,
            Activation::GeluTanh => x.gelu_tanh()?,
        })
    }
}

/// `self_attn` of one layer: q/k/v/out projections with bias.
pub struct ClipAttention {
    pub q_proj: Linear,
    pub k_proj: Linear,
    pub v_proj: Linear,
    pub out_proj: Linear,
    pub heads: usize,
}

impl ClipAttention {
    fn new(path: &Path, s: &TowerShape, std: &LayerStd) -> Result<ClipAttention> {
        let (h, a) = (s.hidden, std.attention_in);
        Ok(ClipAttention {
            q_proj: linear(&path.sub("q_proj"), h, h, a, true)?,
            k_proj: linear(&path.sub("k_proj"), h, h, a, true)?,
            v_proj: linear(&path.sub("v_proj"), h, h, a, true)?,
            out_proj: linear(&path.sub("out_proj"), h, h, std.attention_out, true)?,
            heads: s.heads,
        })
    }

    /// `x` (N, L, D) → (N, L, D), attending with the additive score bias `causal_mask` (L, L) when there is one.
    fn forward(&self, x: &Var, causal_mask: Option<&Tensor>) -> Result<Var> {
        let (heads, head_dim) = (self.heads, x.shape()[2] / self.heads);
        let (q, k, v) = (
            self.q_proj.forward(x)?,
            self.k_proj.forward(x)?,
            self.v_proj.forward(x)?,
        );
        // The heads stay side by side in each row: the kernel reads and writes (N, L, heads·head_dim) directly.
        let scale = 1.0 / (head_dim as f32).sqrt();
        let o = q.attention_with_bias(&k, &v, causal_mask, heads, scale)?;
        Ok(self.out_proj.forward(&o)?)
    }
}

/// One pre-LayerNorm transformer layer (`encoder.layers.{i}`).
pub struct ClipEncoderLayer {
    pub self_attn: ClipAttention,
    pub layer_norm1: LayerNorm,
    pub fc1: Linear,
    pub fc2: Linear,
    pub layer_norm2: LayerNorm,
    pub activation: Activation,
}

impl ClipEncoderLayer {
    fn new(path: &Path, s: &TowerShape, std: &LayerStd) -> Result<ClipEncoderLayer> {
        let mlp = path.sub("mlp");
        Ok(ClipEncoderLayer {
            self_attn: ClipAttention::new(&path.sub("self_attn"), s, std)?,
            layer_norm1: LayerNorm::new(&path.sub("layer_norm1"), s.hidden, s.eps)?,
            fc1: linear(&mlp.sub("fc1"), s.hidden, s.intermediate, std.fc1, true)?,
            fc2: linear(
                &mlp.sub("fc2"),
                s.intermediate,
                s.hidden,
                std.attention_in,
                true,
            )?,
            layer_norm2: LayerNorm::new(&path.sub("layer_norm2"), s.hidden, s.eps)?,
            activation: s.activation,
        })
    }

    fn forward(&self, h: &Var, causal_mask: Option<&Tensor>) -> Result<Var> {
        let attended = self
            .self_attn
            .forward(&self.layer_norm1.forward(h)?, causal_mask)?;
        let h = h.add(&attended)?;
        let inner = self
            .activation
            .apply(&self.fc1.forward(&self.layer_norm2.forward(&h)?)?)?;
        Ok(h.add(&self.fc2.forward(&inner)?)?)
    }
}

/// `encoder`: the stack of layers.
pub struct ClipEncoder {
    pub layers: Vec<ClipEncoderLayer>,
}

impl ClipEncoder {
    /// The layers under `path`, initialised as transformers does with `initializer_factor` = `factor`.
    pub fn new(path: &Path, shape: &TowerShape, factor: f32) -> Result<ClipEncoder> {
        let std = LayerStd::new(shape, factor);
        let layers = (0..shape.layers)
            .map(|i| ClipEncoderLayer::new(&path.sub("layers").sub(i), shape, &std))
            .collect::<Result<Vec<_>>>()?;
        Ok(ClipEncoder { layers })
    }

    /// `h` (N, L, D) through every layer; `causal` masks attention to later tokens.
    pub fn forward(&self, h: &Var, causal: bool) -> Result<Var> {
        let mask = if causal {
            Some(causal_mask(h.shape()[1], h.tensor())?)
        } else {
            None
        };
        let mut h = h.clone();
        for layer in &self.layers {
            h = layer.forward(&h, mask.as_ref())?;
        }
        Ok(h)
    }
}

/// The (L, L) additive mask: 0 on and below the diagonal, −∞ above, on the device and in the dtype of `like`.
fn causal_mask(len: usize, like: &Tensor) -> Result<Tensor> {
    let values: Vec<f32> = (0..len * len)
        .map(|i| {
            if i % len > i / len {
                f32::NEG_INFINITY
            } else {
                0.0
            }
        })
        .collect();
    Ok(Tensor::from_vec(values, &[len, len], like.device())?.to_dtype(like.dtype())?)
}
