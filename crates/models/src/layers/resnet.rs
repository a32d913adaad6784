//! diffusers' `ResnetBlock2D` with `time_embedding_norm = "default"`, pre-norm, SiLU, no dropout and output scale 1,
//! with or without a time embedding:
//!
//! ```text
//! h = conv1(SiLU(norm1(x)))                       3×3, in → out channels
//! h = h + time_emb_proj(SiLU(temb))[:, :, None, None]      only in a U-Net (temb_channels given)
//! h = conv2(SiLU(norm2(h)))                       3×3, out → out
//! y = shortcut(x) + h                             shortcut = conv_shortcut (1×1) when in ≠ out, else identity
//! ```
//!
//! The U-Net's blocks take a time embedding; the autoencoder's (`temb_channels=None` in diffusers) have no
//! `time_emb_proj` at all. `SiLU(temb)` is the same for every block of a network, so the network computes it once
//! and passes it in.

use diffuse_autograd::Var;
use diffuse_nn::{Conv2d, GroupNorm, Linear, Module, Path};
use diffuse_tensor::{Conv2dParams, Error, Result};

/// A 3×3 convolution with stride `stride` and padding `padding` on both sides.
pub(crate) fn conv3x3(
    path: &Path,
    in_channels: usize,
    out_channels: usize,
    stride: usize,
    padding: usize,
) -> Result<Conv2d> {
    let params = Conv2dParams {
        stride: (stride, stride),
        padding: (padding, padding),
        ..Conv2dParams::default()
    };
    Conv2d::new(path, in_channels, out_channels, (3, 3), params, true)
}

/// A 1×1 convolution with bias.
pub(crate) fn conv1x1(path: &Path, in_channels: usize, out_channels: usize) -> Result<Conv2d> {
    Conv2d::new(
        path,
        in_channels,
        out_channels,
        (1, 1),
        Conv2dParams::default(),
        true,
    )
}

pub struct ResnetBlock2D {
    pub norm1: GroupNorm,
    pub conv1: Conv2d,
    /// Projects the activated time embedding to this block's channels; `None` in a block without one.
    pub time_emb_proj: Option<Linear>,
    pub norm2: GroupNorm,
    pub conv2: Conv2d,
    pub conv_shortcut: Option<Conv2d>,
}

impl ResnetBlock2D {
    /// A block from `in_channels` to `out_channels`, normalised in `groups` groups with `eps`, taking a time
    /// embedding of `temb_channels` when given.
    pub fn new(
        path: &Path,
        in_channels: usize,
        out_channels: usize,
        temb_channels: Option<usize>,
        groups: usize,
        eps: f32,
    ) -> Result<ResnetBlock2D> {
        let shortcut = (in_channels != out_channels)
            .then(|| conv1x1(&path.sub("conv_shortcut"), in_channels, out_channels));
        Ok(ResnetBlock2D {
            norm1: GroupNorm::new(&path.sub("norm1"), groups, in_channels, eps)?,
            conv1: conv3x3(&path.sub("conv1"), in_channels, out_channels, 1, 1)?,
            time_emb_proj: temb_channels
                .map(|t| Linear::new(&path.sub("time_emb_proj"), t, out_channels, true))
                .transpose()?,
            norm2: GroupNorm::new(&path.sub("norm2"), groups, out_channels, eps)?,
            conv2: conv3x3(&path.sub("conv2"), out_channels, out_channels, 1, 1)?,
            conv_shortcut: shortcut.transpose()?,
        })
    }

    /// `x` (N, in, H, W) and, for a block with a time embedding, `temb_act` = SiLU(time embedding) (N, temb) →
    /// (N, out, H, W).
    pub fn forward(&self, x: &Var, temb_act: Option<&Var>) -> Result<Var> {
        let t = match (&self.time_emb_proj, temb_act) {
            (Some(proj), Some(temb)) => Some(proj.forward(temb)?),
            (None, None) => None,
            (Some(_), None) => {
                return Err(Error::argument(
                    "ResnetBlock2D",
                    "this block projects a time embedding; pass one",
                ))
            }
            (None, Some(_)) => {
                return Err(Error::argument(
                    "ResnetBlock2D",
                    "this block has no time embedding projection (temb_channels = None)",
                ))
            }
        };
        // The time embedding and the skip connection are added in the convolutions' output stage.
        let h = self
            .conv1
            .forward_add(&self.norm1.forward_silu(x)?, t.as_ref(), None)?;
        let shortcut = match &self.conv_shortcut {
            Some(conv) => conv.forward(x)?,
            None => x.clone(),
        };
        self.conv2
            .forward_add(&self.norm2.forward_silu(&h)?, None, Some(&shortcut))
    }
}
