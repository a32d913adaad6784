//! What a forward convolution adds to its products in its output stage, so that a residual block's bias, time
//! embedding and skip connection cost no separate pass over the output:
//!
//! ```text
//! y[n, o, oh, ow] = Σ W·x  +  bias[o]  +  channel[n, o]  +  residual[n, o, oh, ow]      (each term optional)
//! ```
//!
//! `channel` is one value per image and output channel (a U-Net's projected time embedding, broadcast over the
//! plane); `residual` has the output's shape. The im2col path writes `residual + (bias + channel)` into the output
//! block before its GEMM, which then accumulates the products onto it (β = 1): the addends ride on the GEMM's
//! write-back instead of a pass of their own. Winograd adds `bias + channel` inside its output transform and the
//! residual as it stores each value.
//!
//! Gradients (the autograd layer's rule): `∂bias[o] = Σ_{n, oh, ow} g`, `∂channel[n, o] = Σ_{oh, ow} g`,
//! `∂residual = g`; the products' gradients are those of the plain convolution.

use super::Conv2dShape;
use crate::error::{check_len, Result};

/// The optional addends of a forward convolution (see the module header); lengths `O`, `N·O` and `N·O·OH·OW`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Conv2dAddends<'a> {
    pub bias: Option<&'a [f32]>,
    pub channel: Option<&'a [f32]>,
    pub residual: Option<&'a [f32]>,
}

impl<'a> Conv2dAddends<'a> {
    /// Only a bias (the plain convolution's addend).
    pub fn bias(bias: Option<&'a [f32]>) -> Self {
        Self {
            bias,
            ..Self::default()
        }
    }

    /// Whether anything is added at all.
    pub(super) fn any(&self) -> bool {
        self.bias.is_some() || self.channel.is_some() || self.residual.is_some()
    }

    /// Checks each present addend's length against the shape.
    pub(super) fn check(&self, op: &'static str, s: &Conv2dShape) -> Result<()> {
        if let Some(bias) = self.bias {
            check_len(op, "bias", bias.len(), s.out_channels)?;
        }
        if let Some(channel) = self.channel {
            check_len(
                op,
                "channel addend",
                channel.len(),
                s.batch * s.out_channels,
            )?;
        }
        if let Some(residual) = self.residual {
            check_len(op, "residual", residual.len(), s.output_len())?;
        }
        Ok(())
    }

    /// `bias[o] + channel[n, o]` (0 for absent terms) for image `n` and output channel `o` of `out_channels`.
    pub(super) fn constant(&self, n: usize, o: usize, out_channels: usize) -> f32 {
        let bias = self.bias.map_or(0.0, |b| b[o]);
        match self.channel {
            Some(channel) => bias + channel[n * out_channels + o],
            None => bias,
        }
    }

    /// Plane `o` of image `n` of the residual (`plane` floats), if there is one.
    pub(super) fn residual_plane(
        &self,
        n: usize,
        o: usize,
        out_channels: usize,
        plane: usize,
    ) -> Option<&'a [f32]> {
        self.residual
            .map(|r| &r[(n * out_channels + o) * plane..][..plane])
    }

    /// Writes `residual + (bias + channel)` for image `n`, output channel `o`, into `row` (one plane): the starting
    /// value the GEMM accumulates the products onto.
    pub(super) fn fill(&self, n: usize, o: usize, out_channels: usize, row: &mut [f32]) {
        let constant = self.constant(n, o, out_channels);
        match self.residual_plane(n, o, out_channels, row.len()) {
            Some(residual) => {
                for (y, &r) in row.iter_mut().zip(residual) {
                    *y = r + constant;
                }
            }
            None => row.fill(constant),
        }
    }
}
