//! The 3×3, padding-1 convolution layer the conv2d bench and the `conv_time` example time (one definition, included
//! by `#[path]` from each target).

use diffuse_cpu_kernels::conv2d::Conv2dShape;

/// A square `side × side` layer of `channels` in and out, kernel 3×3, stride 1, padding 1: a ResNet-like layer.
pub fn layer(batch: usize, channels: usize, side: usize) -> Conv2dShape {
    Conv2dShape {
        batch,
        in_channels: channels,
        in_h: side,
        in_w: side,
        out_channels: channels,
        kernel_h: 3,
        kernel_w: 3,
        stride: (1, 1),
        padding: (1, 1),
        dilation: (1, 1),
        groups: 1,
    }
}
