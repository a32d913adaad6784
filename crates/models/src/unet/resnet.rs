//! diffusers' `ResnetBlock2D` with `time_embedding_norm = "default"`, pre-norm, SiLU and no dropout:
//!
//! ```text
//! h = conv1(SiLU(norm1(x)))                       3×3, in → out channels
//! h = h + time_emb_proj(SiLU(temb))[:, :, None, None]
//! h = conv2(SiLU(norm2(h)))                       3×3, out → out
//! y = shortcut(x) + h                             shortcut = conv_shortcut (1×1) when in ≠ out, else identity
//! ```
//!
//! `SiLU(temb)` is the same for every block of the network, so the model computes it once and passes it in.

use diffuse_autograd::Var;
use diffuse_nn::{Conv2d, GroupNorm, Linear, Module, Path};
use diffuse_tensor::{Conv2dParams, Result};

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

pub struct ResnetBlock2D {
    pub norm1: GroupNorm,
    pub conv1: Conv2d,
    pub time_emb_proj: Linear,
    pub norm2: GroupNorm,
    pub conv2: Conv2d,
    pub conv_shortcut: Option<Conv2d>,
}

impl ResnetBlock2D {
    pub fn new(
        path: &Path,
        in_channels: usize,
        out_channels: usize,
        temb_channels: usize,
        groups: usize,
        eps: f32,
    ) -> Result<ResnetBlock2D> {
        let shortcut = (in_channels != out_channels).then(|| {
            let p = path.sub("conv_shortcut");
            Conv2d::new(
                &p,
                in_channels,
                out_channels,
                (1, 1),
                Conv2dParams::default(),
                true,
            )
        });
        Ok(ResnetBlock2D {
            norm1: GroupNorm::new(&path.sub("norm1"), groups, in_channels, eps)?,
            conv1: conv3x3(&path.sub("conv1"), in_channels, out_channels, 1, 1)?,
            time_emb_proj: Linear::new(
                &path.sub("time_emb_proj"),
                temb_channels,
                out_channels,
                true,
            )?,
            norm2: GroupNorm::new(&path.sub("norm2"), groups, out_channels, eps)?,
            conv2: conv3x3(&path.sub("conv2"), out_channels, out_channels, 1, 1)?,
            conv_shortcut: shortcut.transpose()?,
        })
    }

    /// `x` (N, in, H, W) and `temb_act` = SiLU(time embedding) (N, temb) → (N, out, H, W).
    pub fn forward(&self, x: &Var, temb_act: &Var) -> Result<Var> {
        let h = self.conv1.forward(&self.norm1.forward(x)?.silu()?)?;
        let t = self.time_emb_proj.forward(temb_act)?;
        let (n, c) = (t.shape()[0], t.shape()[1]);
        let h = h.add(&t.reshape(&[n, c, 1, 1])?)?;
        let h = self.conv2.forward(&self.norm2.forward(&h)?.silu()?)?;
        match &self.conv_shortcut {
            Some(conv) => conv.forward(x)?.add(&h),
            None => x.add(&h),
        }
    }
}
