//! diffusers' `Downsample2D` and `Upsample2D` with a convolution, as both the U-Net and the autoencoder use them:
//!
//! ```text
//! down: y = conv3x3_stride2(x)                    padding 1 on every side, or (padding 0) one zero row at the
//!                                                 bottom and one zero column at the right, then no padding
//! up:   y = conv3x3(nearest_2x(x))                padding 1
//! ```
//!
//! The asymmetric padding is the original DDPM/LDM code's "SAME" padding; diffusers' `Encoder` always uses it, and
//! the U-Net when `downsample_padding = 0`. Both keep the parameter name `conv` (`downsamplers.0.conv.weight`).

use super::resnet::conv3x3;
use diffuse_autograd::Var;
use diffuse_nn::{Conv2d, Module, Path};
use diffuse_tensor::{Error, Result, Tensor};

/// A stride-2 3×3 convolution that halves H and W (rounding up with padding 1, down with the asymmetric padding).
pub struct Downsample2D {
    pub conv: Conv2d,
    pad_bottom_right: bool,
}

impl Downsample2D {
    /// `padding` 1 pads every side; 0 pads one zero row and column at the bottom and right.
    pub fn new(path: &Path, channels: usize, padding: usize) -> Result<Downsample2D> {
        Ok(Downsample2D {
            conv: conv3x3(&path.sub("conv"), channels, channels, 2, padding)?,
            pad_bottom_right: padding == 0,
        })
    }

    pub fn forward(&self, x: &Var) -> Result<Var> {
        if !self.pad_bottom_right {
            return self.conv.forward(x);
        }
        let [n, c, h, w] = x.shape().try_into().map_err(|_| {
            Error::shape(
                "Downsample2D",
                format!("expects (N, C, H, W), got {:?}", x.shape()),
            )
        })?;
        let device = x.tensor().device();
        let dtype = x.tensor().dtype();
        let column = Var::constant(Tensor::zeros(&[n, c, h, 1], dtype, device)?);
        let row = Var::constant(Tensor::zeros(&[n, c, 1, w + 1], dtype, device)?);
        let padded = Var::concat(&[&Var::concat(&[x, &column], 3)?, &row], 2)?;
        self.conv.forward(&padded)
    }
}

/// Nearest-neighbour 2× upsampling, then a 3×3 convolution with padding 1.
pub struct Upsample2D {
    pub conv: Conv2d,
}

impl Upsample2D {
    pub fn new(path: &Path, channels: usize) -> Result<Upsample2D> {
        Ok(Upsample2D {
            conv: conv3x3(&path.sub("conv"), channels, channels, 1, 1)?,
        })
    }

    pub fn forward(&self, x: &Var) -> Result<Var> {
        self.conv.forward(&x.upsample_nearest2x()?)
    }
}
