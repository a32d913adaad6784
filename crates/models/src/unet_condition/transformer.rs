//! diffusers' `Transformer2DModel` on a feature map (continuous input) and its `BasicTransformerBlock` with
//! `norm_type = "layer_norm"`, as Stable Diffusion's U-Net builds them:
//!
//! ```text
//! Transformer2DModel (x: (N, C, H, W), context c: (N, L, D)):
//!   h = GroupNorm(x)                                  groups = norm_num_groups, ε = 1e-6 (fixed in diffusers)
//!   h = proj_in(h)  as tokens (N, H·W, inner)         1×1 conv then to tokens, or to tokens then linear
//!   h = block(h, c)  for each of transformer_blocks
//!   y = x + proj_out(h)  back in (N, C, H, W)         linear then to the map, or to the map then 1×1 conv
//!
//! BasicTransformerBlock (h: (N, T, inner)):
//!   h = h + attn1(norm1(h))                           self-attention, q/k/v without bias
//!   h = h + attn2(norm2(h), c)                        cross-attention: keys and values from the context
//!   h = h + ff(norm3(h))                              GEGLU feed-forward, inner → 4·inner → inner
//! ```
//!
//! `inner = heads · (C / heads)`, which is C when the heads divide the channels; the layer norms have
//! ε = `norm_eps` = 1e-5 and affine parameters (diffusers' defaults for this block).

use super::feed_forward::FeedForward;
use crate::layers::resnet::conv1x1;
use crate::unet::blocks::LevelAttention;
use diffuse_autograd::Var;
use diffuse_nn::{Attention, Conv2d, GroupNorm, LayerNorm, Linear, Module, Path};
use diffuse_tensor::{Error, Result};

/// ε of the group norm at the entry of every `Transformer2DModel` (fixed in diffusers).
pub const TRANSFORMER_GROUP_NORM_EPS: f32 = 1e-6;
/// ε of the three layer norms of a `BasicTransformerBlock` (diffusers' `norm_eps` default for it).
pub const BLOCK_LAYER_NORM_EPS: f32 = 1e-5;

/// The settings of one `Transformer2DModel`.
#[derive(Clone, Copy, Debug)]
pub struct TransformerSettings {
    pub channels: usize,
    pub heads: usize,
    /// Features per context token (`cross_attention_dim`).
    pub context_dim: usize,
    /// Number of `BasicTransformerBlock`s.
    pub layers: usize,
    pub groups: usize,
    /// Linear `proj_in` / `proj_out` (true) or 1×1 convolutions.
    pub linear_projection: bool,
}

/// diffusers' `BasicTransformerBlock` (layer norms, self-attention, cross-attention, GEGLU feed-forward).
pub struct BasicTransformerBlock {
    pub norm1: LayerNorm,
    pub attn1: Attention,
    pub norm2: LayerNorm,
    pub attn2: Attention,
    pub norm3: LayerNorm,
    pub ff: FeedForward,
}

impl BasicTransformerBlock {
    pub fn new(
        path: &Path,
        dim: usize,
        heads: usize,
        head_dim: usize,
        context_dim: usize,
    ) -> Result<BasicTransformerBlock> {
        let norm = |name: &str| LayerNorm::new(&path.sub(name), dim, BLOCK_LAYER_NORM_EPS);
        Ok(BasicTransformerBlock {
            norm1: norm("norm1")?,
            attn1: Attention::new(&path.sub("attn1"), dim, dim, heads, head_dim, false)?,
            norm2: norm("norm2")?,
            attn2: Attention::new(&path.sub("attn2"), dim, context_dim, heads, head_dim, false)?,
            norm3: norm("norm3")?,
            ff: FeedForward::new(&path.sub("ff"), dim)?,
        })
    }

    /// Tokens `h` (N, T, dim) attending to themselves and to `context` (N, L, D) → (N, T, dim).
    pub fn forward(&self, h: &Var, context: &Var) -> Result<Var> {
        let h = h.add(&self.attn1.forward(&self.norm1.forward(h)?, None)?)?;
        let h = h.add(
            &self
                .attn2
                .forward(&self.norm2.forward(&h)?, Some(context))?,
        )?;
        h.add(&self.ff.forward(&self.norm3.forward(&h)?)?)
    }
}

/// `proj_in` / `proj_out`: a linear map of the tokens or a 1×1 convolution of the map.
pub enum Projection {
    Linear(Linear),
    Conv(Conv2d),
}

impl Projection {
    fn new(path: &Path, in_dim: usize, out_dim: usize, linear: bool) -> Result<Projection> {
        Ok(if linear {
            Projection::Linear(Linear::new(path, in_dim, out_dim, true)?)
        } else {
            Projection::Conv(conv1x1(path, in_dim, out_dim)?)
        })
    }
}

/// diffusers' `Transformer2DModel` over a feature map, attending to a context.
pub struct Transformer2DModel {
    pub norm: GroupNorm,
    pub proj_in: Projection,
    pub transformer_blocks: Vec<BasicTransformerBlock>,
    pub proj_out: Projection,
    pub inner: usize,
    pub context_dim: usize,
}

impl Transformer2DModel {
    pub fn new(path: &Path, s: &TransformerSettings) -> Result<Transformer2DModel> {
        let c = s.channels;
        if s.heads == 0 || s.heads > c {
            return Err(Error::argument(
                "Transformer2DModel",
                format!(
                    "{} heads over {c} channels leaves a head without a channel",
                    s.heads
                ),
            ));
        }
        let head_dim = c / s.heads;
        let inner = s.heads * head_dim;
        let norm = GroupNorm::new(&path.sub("norm"), s.groups, c, TRANSFORMER_GROUP_NORM_EPS)?;
        let proj_in = Projection::new(&path.sub("proj_in"), c, inner, s.linear_projection)?;
        let transformer_blocks = (0..s.layers)
            .map(|j| {
                BasicTransformerBlock::new(
                    &path.sub("transformer_blocks").sub(j),
                    inner,
                    s.heads,
                    head_dim,
                    s.context_dim,
                )
            })
            .collect::<Result<Vec<_>>>()?;
        let proj_out = Projection::new(&path.sub("proj_out"), inner, c, s.linear_projection)?;
        Ok(Transformer2DModel {
            norm,
            proj_in,
            transformer_blocks,
            proj_out,
            inner,
            context_dim: s.context_dim,
        })
    }

    /// The map `x` (N, C, H, W) attending to `context` (N, L, D) → (N, C, H, W).
    pub fn forward(&self, x: &Var, context: &Var) -> Result<Var> {
        let &[n, c, h, w] = x.shape() else {
            return Err(Error::shape(
                "Transformer2DModel",
                format!("expects an (N, C, H, W) input, got {:?}", x.shape()),
            ));
        };
        match context.shape() {
            &[cn, len, d] if cn == n && len > 0 && d == self.context_dim => {}
            shape => {
                return Err(Error::shape(
                    "Transformer2DModel",
                    format!(
                        "the context must be (N = {n}, L ≥ 1, D = cross_attention_dim = {}), got {shape:?}",
                        self.context_dim
                    ),
                ))
            }
        }
        let normed = self.norm.forward(x)?;
        let to_tokens = |map: &Var, channels: usize| -> Result<Var> {
            map.reshape(&[n, channels, h * w])?.transpose(1, 2)
        };
        let mut tokens = match &self.proj_in {
            Projection::Conv(conv) => to_tokens(&conv.forward(&normed)?, self.inner)?,
            Projection::Linear(linear) => linear.forward(&to_tokens(&normed, c)?)?,
        };
        for block in &self.transformer_blocks {
            tokens = block.forward(&tokens, context)?;
        }
        let to_map = |tokens: &Var, channels: usize| -> Result<Var> {
            tokens.transpose(1, 2)?.reshape(&[n, channels, h, w])
        };
        let out = match &self.proj_out {
            Projection::Conv(conv) => conv.forward(&to_map(&tokens, self.inner)?)?,
            Projection::Linear(linear) => to_map(&linear.forward(&tokens)?, c)?,
        };
        out.add(x)
    }
}

/// A `CrossAttnDownBlock2D` / `CrossAttnUpBlock2D` level's attention: the transformer, which needs the context.
impl LevelAttention for Transformer2DModel {
    fn attend(&self, x: &Var, context: Option<&Var>) -> Result<Var> {
        let context = context.ok_or_else(|| {
            Error::argument(
                "Transformer2DModel",
                "a cross-attention block needs the context (encoder_hidden_states) to attend to",
            )
        })?;
        self.forward(x, context)
    }
}
