//! The levels of the U-Net, as diffusers names them:
//!
//! - `DownBlock2D` / `AttnDownBlock2D` (`down_blocks.i`): `layers_per_block` residual blocks (each followed by
//!   self-attention in the `Attn` kind), then, except at the last level, a stride-2 3×3 convolution
//!   (`downsamplers.0.conv`). Every residual/attention output and the downsampled map are kept as skips.
//! - `UNetMidBlock2D` (`mid_block`): residual block, self-attention, residual block ([`crate::layers::mid_block`]).
//! - `UpBlock2D` / `AttnUpBlock2D` (`up_blocks.i`): `layers_per_block + 1` residual blocks, each fed the running map
//!   concatenated (along channels) with the most recent unused skip, then, except at the last level, nearest 2×
//!   upsampling and a 3×3 convolution (`upsamplers.0.conv`).
//!
//! The attention after each residual block is a [`LevelAttention`]: self-attention here, a text-conditioned
//! transformer in [`crate::unet_condition`], whose `CrossAttnDownBlock2D` / `CrossAttnUpBlock2D` are these blocks
//! with that attention.

use crate::layers::{Downsample2D, MidBlockSettings, ResnetBlock2D, UNetMidBlock2D, Upsample2D};
use diffuse_autograd::Var;
use diffuse_nn::{Path, SpatialSelfAttention};
use diffuse_tensor::{Error, Result};

/// The attention a level runs after each of its residual blocks, on the feature map (N, C, H, W), given the
/// network's cross-attention context (N, L, D) when it has one.
pub trait LevelAttention {
    fn attend(&self, x: &Var, context: Option<&Var>) -> Result<Var>;
}

/// `UNet2DModel`'s attention: self-attention over the pixels, which takes no context.
impl LevelAttention for SpatialSelfAttention {
    fn attend(&self, x: &Var, context: Option<&Var>) -> Result<Var> {
        if context.is_some() {
            return Err(Error::argument(
                "SpatialSelfAttention",
                "self-attention takes no cross-attention context",
            ));
        }
        self.forward(x)
    }
}

/// Builds a level's attention from its path (`…attentions.j`) and its channels.
pub(crate) type AttentionBuilder<'a, A> = &'a dyn Fn(&Path, usize) -> Result<A>;

/// What every block of one network shares.
#[derive(Clone, Copy)]
pub(crate) struct BlockSettings {
    pub temb_channels: usize,
    pub groups: usize,
    pub eps: f32,
    /// Channels per head; `None` = one head over all channels.
    pub head_dim: Option<usize>,
}

impl BlockSettings {
    pub(crate) fn resnet(&self, path: &Path, in_c: usize, out_c: usize) -> Result<ResnetBlock2D> {
        ResnetBlock2D::new(
            path,
            in_c,
            out_c,
            Some(self.temb_channels),
            self.groups,
            self.eps,
        )
    }

    pub(crate) fn attention(&self, path: &Path, channels: usize) -> Result<SpatialSelfAttention> {
        let head_dim = self.head_dim.unwrap_or(channels);
        SpatialSelfAttention::new(
            path,
            channels,
            channels / head_dim,
            head_dim,
            self.groups,
            self.eps,
        )
    }

    /// The mid block at the innermost width: with the time embedding and attention in this network's heads.
    pub(crate) fn mid_block(&self, path: &Path, channels: usize) -> Result<UNetMidBlock2D> {
        UNetMidBlock2D::new(
            path,
            &MidBlockSettings {
                channels,
                temb_channels: Some(self.temb_channels),
                groups: self.groups,
                eps: self.eps,
                attention_head_dim: Some(self.head_dim.unwrap_or(channels)),
            },
        )
    }
}

/// `DownBlock2D` (no attention), `AttnDownBlock2D` (self-attention) or `CrossAttnDownBlock2D` (a transformer).
pub struct DownBlock<A = SpatialSelfAttention> {
    pub resnets: Vec<ResnetBlock2D>,
    /// Empty for `DownBlock2D`; one per residual block otherwise.
    pub attentions: Vec<A>,
    pub downsampler: Option<Downsample2D>,
}

/// Channel counts of one down level.
pub(crate) struct DownChannels {
    /// Channels of the map arriving from the level above (or `conv_in`).
    pub input: usize,
    /// This level's channels.
    pub out: usize,
}

impl<A: LevelAttention> DownBlock<A> {
    /// `attention` builds the attention after each residual block (`None`: no attention); `downsample_padding` is
    /// `None` at the last level, which keeps its resolution.
    pub(crate) fn new(
        path: &Path,
        s: &BlockSettings,
        ch: DownChannels,
        layers: usize,
        attention: Option<AttentionBuilder<A>>,
        downsample_padding: Option<usize>,
    ) -> Result<DownBlock<A>> {
        let DownChannels {
            input: in_channels,
            out: out_channels,
        } = ch;
        let mut block = DownBlock {
            resnets: Vec::with_capacity(layers),
            attentions: Vec::new(),
            downsampler: None,
        };
        for j in 0..layers {
            let in_c = if j == 0 { in_channels } else { out_channels };
            block
                .resnets
                .push(s.resnet(&path.sub("resnets").sub(j), in_c, out_channels)?);
            if let Some(build) = attention {
                block
                    .attentions
                    .push(build(&path.sub("attentions").sub(j), out_channels)?);
            }
        }
        if let Some(padding) = downsample_padding {
            let p = path.sub("downsamplers").sub(0);
            block.downsampler = Some(Downsample2D::new(&p, out_channels, padding)?);
        }
        Ok(block)
    }

    /// Runs the block on `x` (attending to `context` where its attention takes one), pushing every output it keeps
    /// for the up path onto `skips`.
    pub fn forward(
        &self,
        x: &Var,
        temb_act: &Var,
        context: Option<&Var>,
        skips: &mut Vec<Var>,
    ) -> Result<Var> {
        let mut x = x.clone();
        for (j, resnet) in self.resnets.iter().enumerate() {
            x = resnet.forward(&x, Some(temb_act))?;
            if let Some(attention) = self.attentions.get(j) {
                x = attention.attend(&x, context)?;
            }
            skips.push(x.clone());
        }
        if let Some(down) = &self.downsampler {
            x = down.forward(&x)?;
            skips.push(x.clone());
        }
        Ok(x)
    }
}

/// `UpBlock2D` (no attention), `AttnUpBlock2D` (self-attention) or `CrossAttnUpBlock2D` (a transformer).
pub struct UpBlock<A = SpatialSelfAttention> {
    pub resnets: Vec<ResnetBlock2D>,
    /// Empty for `UpBlock2D`; one per residual block otherwise.
    pub attentions: Vec<A>,
    pub upsampler: Option<Upsample2D>,
}

/// Channel counts of one up level, in diffusers' terms.
pub(crate) struct UpChannels {
    /// Channels of the map arriving from the level below (or the mid block).
    pub prev_output: usize,
    /// This level's channels.
    pub out: usize,
    /// Channels of the skip taken by the last residual block (the down level above's width).
    pub last_skip: usize,
}

impl<A: LevelAttention> UpBlock<A> {
    /// `attention` builds the attention after each residual block (`None`: no attention).
    pub(crate) fn new(
        path: &Path,
        s: &BlockSettings,
        ch: UpChannels,
        layers: usize,
        attention: Option<AttentionBuilder<A>>,
        upsample: bool,
    ) -> Result<UpBlock<A>> {
        let mut block = UpBlock {
            resnets: Vec::with_capacity(layers),
            attentions: Vec::new(),
            upsampler: None,
        };
        for j in 0..layers {
            let skip = if j + 1 == layers {
                ch.last_skip
            } else {
                ch.out
            };
            let running = if j == 0 { ch.prev_output } else { ch.out };
            block
                .resnets
                .push(s.resnet(&path.sub("resnets").sub(j), running + skip, ch.out)?);
            if let Some(build) = attention {
                block
                    .attentions
                    .push(build(&path.sub("attentions").sub(j), ch.out)?);
            }
        }
        if upsample {
            let p = path.sub("upsamplers").sub(0);
            block.upsampler = Some(Upsample2D::new(&p, ch.out)?);
        }
        Ok(block)
    }

    /// Runs the block on `x` (attending to `context` where its attention takes one), taking one skip per residual
    /// block from the end of `skips`.
    pub fn forward(
        &self,
        x: &Var,
        temb_act: &Var,
        context: Option<&Var>,
        skips: &mut Vec<Var>,
    ) -> Result<Var> {
        let mut x = x.clone();
        for (j, resnet) in self.resnets.iter().enumerate() {
            let skip = skips.pop().ok_or_else(|| {
                Error::argument(
                    "UpBlock",
                    "the down path left fewer skips than the up path takes",
                )
            })?;
            if skip.shape()[2..] != x.shape()[2..] {
                return Err(Error::shape(
                    "UNet2DModel",
                    format!(
                        "the up path reached {:?} where the down path had {:?}: the sample's height and width must \
                         survive each halving without remainder",
                        &x.shape()[2..],
                        &skip.shape()[2..]
                    ),
                ));
            }
            x = resnet.forward(&Var::concat(&[&x, &skip], 1)?, Some(temb_act))?;
            if let Some(attention) = self.attentions.get(j) {
                x = attention.attend(&x, context)?;
            }
        }
        match &self.upsampler {
            Some(up) => up.forward(&x),
            None => Ok(x),
        }
    }
}
