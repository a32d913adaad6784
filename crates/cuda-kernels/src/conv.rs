//! 2-D convolution forward, NCHW, as an implicit GEMM (`kernels/conv2d.ptx` has the mapping and the tiling).

use cudarc::driver::{DevicePtr, DevicePtrMut};

use crate::context::{Gpu, Module};
use crate::error::{check_len, KernelError, Result};
use crate::launch::{launch, Arg, Launch};

const TILE: usize = 128;
const THREADS: u32 = 256;

/// x is `[batch, in_channels, in_h, in_w]`, the weight `[out_channels, in_channels / groups, kernel_h, kernel_w]`,
/// y `[batch, out_channels, out_h, out_w]` with `out = (in + 2 padding - dilation (kernel - 1) - 1) / stride + 1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv2dShape {
    pub batch: usize,
    pub in_channels: usize,
    pub in_h: usize,
    pub in_w: usize,
    pub out_channels: usize,
    pub kernel_h: usize,
    pub kernel_w: usize,
    pub stride: usize,
    pub padding: usize,
    pub dilation: usize,
    pub groups: usize,
}

impl Conv2dShape {
    /// `(out_h, out_w)` after checking that the channels split into the groups and that the kernel fits the padded
    /// input; otherwise an error of `op` saying which.
    pub(crate) fn checked_output_hw(&self, op: &'static str) -> Result<(usize, usize)> {
        let s = self;
        if s.groups == 0 || s.in_channels % s.groups != 0 || s.out_channels % s.groups != 0 {
            return Err(KernelError::new(
                op,
                format!(
                    "{} input and {} output channels do not split into {} groups",
                    s.in_channels, s.out_channels, s.groups
                ),
            ));
        }
        s.output_hw().ok_or_else(|| {
            KernelError::new(
                op,
                format!(
                    "a {}x{} kernel (dilation {}, stride {}) does not fit a {}x{} input padded by {}",
                    s.kernel_h, s.kernel_w, s.dilation, s.stride, s.in_h, s.in_w, s.padding
                ),
            )
        })
    }

    /// `(out_h, out_w)`, or `None` when the dilated kernel does not fit in the padded input (or stride/dilation is 0).
    pub fn output_hw(&self) -> Option<(usize, usize)> {
        let out = |input: usize, kernel: usize| {
            let span = self.dilation.checked_mul(kernel.checked_sub(1)?)? + 1;
            let padded = input.checked_add(2 * self.padding)?;
            (self.stride > 0 && padded >= span).then(|| (padded - span) / self.stride + 1)
        };
        if self.dilation == 0 || self.kernel_h == 0 || self.kernel_w == 0 {
            return None;
        }
        Some((
            out(self.in_h, self.kernel_h)?,
            out(self.in_w, self.kernel_w)?,
        ))
    }
}

/// The optional addends the forward kernel adds in its epilogue: `bias` (out_channels), `channel` (batch ×
/// out_channels, one value per image and channel, e.g. a time embedding) and `residual` (the output's shape).
pub struct Conv2dAddends<'a, P> {
    pub bias: Option<&'a P>,
    pub channel: Option<&'a P>,
    pub residual: Option<&'a P>,
}

/// `y = conv2d(x, weight) + bias` (bias per output channel, optional).
pub fn conv2d_forward<P: DevicePtr<f32>>(
    gpu: &Gpu,
    shape: &Conv2dShape,
    x: &impl DevicePtr<f32>,
    weight: &impl DevicePtr<f32>,
    bias: Option<&P>,
    y: &mut impl DevicePtrMut<f32>,
) -> Result<()> {
    let addends = Conv2dAddends {
        bias,
        channel: None,
        residual: None,
    };
    conv2d_forward_add(gpu, shape, x, weight, addends, y)
}

/// `y = conv2d(x, weight) + bias[oc] + channel[b, oc] + residual[b, oc, oh, ow]`, each addend optional, added in the
/// kernel's epilogue.
pub fn conv2d_forward_add<P: DevicePtr<f32>>(
    gpu: &Gpu,
    shape: &Conv2dShape,
    x: &impl DevicePtr<f32>,
    weight: &impl DevicePtr<f32>,
    addends: Conv2dAddends<'_, P>,
    y: &mut impl DevicePtrMut<f32>,
) -> Result<()> {
    const OP: &str = "conv2d_forward";
    let s = shape;
    let (out_h, out_w) = s.checked_output_hw(OP)?;
    let cg = s.in_channels / s.groups;
    let k = cg * s.kernel_h * s.kernel_w;
    let n = s.batch * out_h * out_w;
    let fits = |v: usize| v < (1usize << 31);
    if !(fits(k)
        && fits(n)
        && fits(s.batch * s.in_channels)
        && fits(s.batch * s.out_channels)
        && fits(cg * s.in_h * s.in_w)
        && fits(s.in_h + s.padding)
        && fits(s.in_w + s.padding)
        && s.groups < 65536)
    {
        return Err(KernelError::new(
            OP,
            format!("{shape:?} exceeds the kernel's 32-bit indices"),
        ));
    }
    check_len(OP, "x", x.len(), s.batch * s.in_channels * s.in_h * s.in_w)?;
    check_len(OP, "weight", weight.len(), s.out_channels * k)?;
    let out_len = s.batch * s.out_channels * out_h * out_w;
    if let Some(b) = addends.bias {
        check_len(OP, "bias", b.len(), s.out_channels)?;
    }
    if let Some(c) = addends.channel {
        check_len(OP, "channel addend", c.len(), s.batch * s.out_channels)?;
    }
    if let Some(r) = addends.residual {
        check_len(OP, "residual", r.len(), out_len)?;
    }
    check_len(OP, "y", y.len(), out_len)?;
    if n == 0 || s.out_channels == 0 {
        return Ok(());
    }
    let stream = gpu.stream();
    let (x_ptr, _gx) = x.device_ptr(stream);
    let (w_ptr, _gw) = weight.device_ptr(stream);
    let [bias_ptr, channel_ptr, residual_ptr] =
        [addends.bias, addends.channel, addends.residual].map(|a| a.map(|a| a.device_ptr(stream)));
    let ptr = |p: &Option<(u64, _)>| Arg::Ptr(p.as_ref().map_or(0, |(ptr, _guard)| *ptr));
    let flag = |p: &Option<(u64, _)>| Arg::U32(u32::from(p.is_some()));
    let (y_ptr, _gy) = y.device_ptr_mut(stream);
    let ocg = s.out_channels / s.groups;
    let grid = (
        n.div_ceil(TILE) as u32,
        ocg.div_ceil(TILE) as u32,
        s.groups as u32,
    );
    let u = |v: usize| Arg::U32(v as u32);
    launch(
        gpu,
        OP,
        Launch {
            module: Module::Conv2d,
            kernel: "conv2d_forward",
            grid,
            block: (THREADS, 1, 1),
            shared_bytes: 0,
        },
        &[
            Arg::Ptr(x_ptr),
            Arg::Ptr(w_ptr),
            ptr(&bias_ptr),
            ptr(&channel_ptr),
            ptr(&residual_ptr),
            Arg::Ptr(y_ptr),
            flag(&bias_ptr),
            flag(&channel_ptr),
            flag(&residual_ptr),
            u(s.batch),
            u(s.in_channels),
            u(s.in_h),
            u(s.in_w),
            u(s.out_channels),
            u(s.kernel_h),
            u(s.kernel_w),
            u(s.stride),
            u(s.padding),
            u(s.dilation),
            u(s.groups),
            u(out_h),
            u(out_w),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::Conv2dShape;

    fn shape(
        size: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
        dilation: usize,
    ) -> Conv2dShape {
        Conv2dShape {
            batch: 1,
            in_channels: 1,
            in_h: size,
            in_w: size,
            out_channels: 1,
            kernel_h: kernel,
            kernel_w: kernel,
            stride,
            padding,
            dilation,
            groups: 1,
        }
    }

    #[test]
    fn output_size_follows_the_pytorch_formula() {
        assert_eq!(shape(5, 3, 2, 1, 1).output_hw(), Some((3, 3)));
        assert_eq!(shape(5, 3, 1, 0, 2).output_hw(), Some((1, 1)));
        assert_eq!(shape(1, 1, 1, 0, 1).output_hw(), Some((1, 1)));
        assert_eq!(shape(2, 5, 1, 0, 1).output_hw(), None);
        assert_eq!(shape(2, 5, 1, 2, 1).output_hw(), Some((2, 2)));
        assert_eq!(shape(4, 3, 0, 0, 1).output_hw(), None);
    }
}
