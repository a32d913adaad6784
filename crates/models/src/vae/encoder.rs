//! diffusers' `Encoder` (with `double_z = True`): an image to the parameters of its latent's Gaussian.
//!
//! ```text
//! x = conv_in(image)                                  3×3, in_channels → C₀
//! for level i (DownEncoderBlock2D, `down_blocks.i`):
//!     x = resnets.j(x)   j < layers_per_block         C_{i−1} → C_i, no time embedding
//!     x = downsamplers.0(x)   except the last level   3×3 stride 2 after one zero row and column: H → ⌊(H−2)/2⌋+1
//! x = mid_block(x)                                    resnet, one-head attention over C_last channels, resnet
//! h = conv_out(SiLU(conv_norm_out(x)))                3×3, C_last → 2·latent_channels (mean, then log-variance)
//! ```
//!
//! Every normalisation uses ε = 1e-6 and `norm_num_groups` groups, as diffusers hard-codes for its autoencoders.

use super::config::AutoencoderKLConfig;
use crate::layers::resnet::conv3x3;
use crate::layers::{Downsample2D, MidBlockSettings, ResnetBlock2D, UNetMidBlock2D};
use diffuse_autograd::Var;
use diffuse_nn::{Conv2d, GroupNorm, Module, Path};
use diffuse_tensor::Result;

/// The ε of every group normalisation in diffusers' `Encoder` and `Decoder`.
pub const NORM_EPS: f32 = 1e-6;

/// `DownEncoderBlock2D`: residual blocks, then (except at the last level) a downsampling convolution.
pub struct DownEncoderBlock2D {
    pub resnets: Vec<ResnetBlock2D>,
    pub downsampler: Option<Downsample2D>,
}

impl DownEncoderBlock2D {
    pub fn forward(&self, x: &Var) -> Result<Var> {
        let mut x = x.clone();
        for resnet in &self.resnets {
            x = resnet.forward(&x, None)?;
        }
        match &self.downsampler {
            Some(down) => down.forward(&x),
            None => Ok(x),
        }
    }
}

pub struct Encoder {
    pub conv_in: Conv2d,
    pub down_blocks: Vec<DownEncoderBlock2D>,
    pub mid_block: UNetMidBlock2D,
    pub conv_norm_out: GroupNorm,
    pub conv_out: Conv2d,
}

impl Encoder {
    /// The encoder of `config` (checked by the caller), its parameters under `path` (`encoder`).
    pub fn new(path: &Path, config: &AutoencoderKLConfig) -> Result<Encoder> {
        let channels = &config.block_out_channels;
        let groups = config.norm_num_groups;
        let levels = channels.len();
        let conv_in = conv3x3(&path.sub("conv_in"), config.in_channels, channels[0], 1, 1)?;
        let mut down_blocks = Vec::with_capacity(levels);
        for (i, &out) in channels.iter().enumerate() {
            let block = path.sub("down_blocks").sub(i);
            let input = channels[i.saturating_sub(1)];
            let resnets = (0..config.layers_per_block)
                .map(|j| {
                    let in_c = if j == 0 { input } else { out };
                    let p = block.sub("resnets").sub(j);
                    ResnetBlock2D::new(&p, in_c, out, None, groups, NORM_EPS)
                })
                .collect::<Result<_>>()?;
            let downsampler = (i + 1 < levels)
                .then(|| Downsample2D::new(&block.sub("downsamplers").sub(0), out, 0))
                .transpose()?;
            down_blocks.push(DownEncoderBlock2D {
                resnets,
                downsampler,
            });
        }
        let inner = channels[levels - 1];
        let mid_block = UNetMidBlock2D::new(
            &path.sub("mid_block"),
            &MidBlockSettings {
                channels: inner,
                temb_channels: None,
                groups,
                eps: NORM_EPS,
                attention_head_dim: config.mid_block_add_attention.then_some(inner),
            },
        )?;
        Ok(Encoder {
            conv_in,
            down_blocks,
            mid_block,
            conv_norm_out: GroupNorm::new(&path.sub("conv_norm_out"), groups, inner, NORM_EPS)?,
            conv_out: conv3x3(
                &path.sub("conv_out"),
                inner,
                2 * config.latent_channels,
                1,
                1,
            )?,
        })
    }

    /// `image` (N, in_channels, H, W) → (N, 2·latent_channels, h, w).
    pub fn forward(&self, image: &Var) -> Result<Var> {
        let mut x = self.conv_in.forward(image)?;
        for block in &self.down_blocks {
            x = block.forward(&x)?;
        }
        let x = self.mid_block.forward(&x, None)?;
        self.conv_out.forward(&self.conv_norm_out.forward_silu(&x)?)
    }
}
