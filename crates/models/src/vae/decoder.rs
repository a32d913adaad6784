//! diffusers' `Decoder` (`norm_type = "group"`): a latent to an image.
//!
//! ```text
//! x = conv_in(z)                                      3×3, latent_channels → C_last
//! x = mid_block(x)                                    resnet, one-head attention over C_last channels, resnet
//! for level i, innermost first (UpDecoderBlock2D, `up_blocks.i`):
//!     x = resnets.j(x)   j ≤ layers_per_block         C_{i−1} → C_i along the reversed widths, no time embedding
//!     x = upsamplers.0(x)   except the last level     nearest 2×, then 3×3
//! image = conv_out(SiLU(conv_norm_out(x)))            3×3, C₀ → out_channels
//! ```
//!
//! [`Decoder::features`] stops before `conv_out`, whose weight the adversarial loss's adaptive weight is measured
//! on (LDM's "last layer").

use super::config::AutoencoderKLConfig;
use super::encoder::NORM_EPS;
use crate::layers::resnet::conv3x3;
use crate::layers::{MidBlockSettings, ResnetBlock2D, UNetMidBlock2D, Upsample2D};
use diffuse_autograd::Var;
use diffuse_nn::{Conv2d, GroupNorm, Module, Path};
use diffuse_tensor::Result;

/// `UpDecoderBlock2D`: residual blocks, then (except at the last level) an upsampling convolution.
pub struct UpDecoderBlock2D {
    pub resnets: Vec<ResnetBlock2D>,
    pub upsampler: Option<Upsample2D>,
}

impl UpDecoderBlock2D {
    pub fn forward(&self, x: &Var) -> Result<Var> {
        let mut x = x.clone();
        for resnet in &self.resnets {
            x = resnet.forward(&x, None)?;
        }
        match &self.upsampler {
            Some(up) => up.forward(&x),
            None => Ok(x),
        }
    }
}

pub struct Decoder {
    pub conv_in: Conv2d,
    pub mid_block: UNetMidBlock2D,
    pub up_blocks: Vec<UpDecoderBlock2D>,
    pub conv_norm_out: GroupNorm,
    pub conv_out: Conv2d,
}

impl Decoder {
    /// The decoder of `config` (checked by the caller), its parameters under `path` (`decoder`).
    pub fn new(path: &Path, config: &AutoencoderKLConfig) -> Result<Decoder> {
        let groups = config.norm_num_groups;
        let reversed: Vec<usize> = config.block_out_channels.iter().rev().copied().collect();
        let levels = reversed.len();
        let inner = reversed[0];
        // diffusers builds the mid block before the up blocks; the order fixes how a seed initialises them.
        let conv_in = conv3x3(&path.sub("conv_in"), config.latent_channels, inner, 1, 1)?;
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
        let mut up_blocks = Vec::with_capacity(levels);
        for (i, &out) in reversed.iter().enumerate() {
            let block = path.sub("up_blocks").sub(i);
            let input = reversed[i.saturating_sub(1)];
            let resnets = (0..=config.layers_per_block)
                .map(|j| {
                    let in_c = if j == 0 { input } else { out };
                    let p = block.sub("resnets").sub(j);
                    ResnetBlock2D::new(&p, in_c, out, None, groups, NORM_EPS)
                })
                .collect::<Result<_>>()?;
            let upsampler = (i + 1 < levels)
                .then(|| Upsample2D::new(&block.sub("upsamplers").sub(0), out))
                .transpose()?;
            up_blocks.push(UpDecoderBlock2D { resnets, upsampler });
        }
        let outer = reversed[levels - 1];
        Ok(Decoder {
            conv_in,
            mid_block,
            up_blocks,
            conv_norm_out: GroupNorm::new(&path.sub("conv_norm_out"), groups, outer, NORM_EPS)?,
            conv_out: conv3x3(&path.sub("conv_out"), outer, config.out_channels, 1, 1)?,
        })
    }

    /// `z` (N, latent_channels, h, w) → the activations `conv_out` reads, (N, C₀, H, W).
    pub fn features(&self, z: &Var) -> Result<Var> {
        let x = self.conv_in.forward(z)?;
        let mut x = self.mid_block.forward(&x, None)?;
        for block in &self.up_blocks {
            x = block.forward(&x)?;
        }
        self.conv_norm_out.forward_silu(&x)
    }

    /// `z` (N, latent_channels, h, w) → (N, out_channels, H, W).
    pub fn forward(&self, z: &Var) -> Result<Var> {
        self.conv_out.forward(&self.features(z)?)
    }
}
