//! diffusers' `UNetMidBlock2D` with one layer: residual block, self-attention (unless switched off), residual block,
//! all at the innermost width `C`:
//!
//! ```text
//! x = resnets.0(x)
//! x = attentions.0(x)          a pre-norm self-attention over the H·W positions, with its residual
//! x = resnets.1(x)
//! ```
//!
//! The U-Net's mid block takes the time embedding and splits attention into heads of `attention_head_dim`; the
//! autoencoder's has no time embedding, one head over all `C` channels, and may leave attention out
//! (`mid_block_add_attention = false`).

use super::resnet::ResnetBlock2D;
use diffuse_autograd::Var;
use diffuse_nn::{Path, SpatialSelfAttention};
use diffuse_tensor::Result;

/// What shapes a mid block.
#[derive(Clone, Copy, Debug)]
pub struct MidBlockSettings {
    pub channels: usize,
    /// Width of the time embedding; `None` for a block without one.
    pub temb_channels: Option<usize>,
    pub groups: usize,
    pub eps: f32,
    /// Channels per attention head (`channels` for one head); `None`: no attention.
    pub attention_head_dim: Option<usize>,
}

pub struct UNetMidBlock2D {
    pub resnets: [ResnetBlock2D; 2],
    pub attention: Option<SpatialSelfAttention>,
}

impl UNetMidBlock2D {
    pub fn new(path: &Path, s: &MidBlockSettings) -> Result<UNetMidBlock2D> {
        let c = s.channels;
        let resnet = |j: usize| {
            ResnetBlock2D::new(
                &path.sub("resnets").sub(j),
                c,
                c,
                s.temb_channels,
                s.groups,
                s.eps,
            )
        };
        // Created in this order (both residual blocks, then attention) so that a seed draws the same initial weights
        // as it always has.
        let resnets = [resnet(0)?, resnet(1)?];
        let attention = s
            .attention_head_dim
            .map(|head_dim| {
                let p = path.sub("attentions").sub(0);
                SpatialSelfAttention::new(&p, c, c / head_dim, head_dim, s.groups, s.eps)
            })
            .transpose()?;
        Ok(UNetMidBlock2D { resnets, attention })
    }

    pub fn forward(&self, x: &Var, temb_act: Option<&Var>) -> Result<Var> {
        let x = self.resnets[0].forward(x, temb_act)?;
        let x = match &self.attention {
            Some(attention) => attention.forward(&x)?,
            None => x,
        };
        self.resnets[1].forward(&x, temb_act)
    }
}
