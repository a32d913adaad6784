//! The geometry of a 2-D convolution and its validation.
//!
//! Along each spatial axis, with input size `i`, padding `p`, dilation `d`, kernel size `k` and stride `s`, the dilated
//! kernel spans `d·(k − 1) + 1` input positions and the output has `⌊(i + 2p − d·(k − 1) − 1) / s⌋ + 1` positions.

use crate::error::{KernelError, Result};

/// The shape of an NCHW convolution: input `[batch, in_channels, in_h, in_w]`, weight
/// `[out_channels, in_channels / groups, kernel_h, kernel_w]`, bias `[out_channels]`,
/// output `[batch, out_channels, out_h, out_w]`, all contiguous. `(h, w)` pairs order stride, padding and dilation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dShape {
    pub batch: usize,
    pub in_channels: usize,
    pub in_h: usize,
    pub in_w: usize,
    pub out_channels: usize,
    pub kernel_h: usize,
    pub kernel_w: usize,
    pub stride: (usize, usize),
    pub padding: (usize, usize),
    pub dilation: (usize, usize),
    pub groups: usize,
}

/// Output positions along one axis; 0 where the geometry is invalid (never panics).
fn out_size(input: usize, padding: usize, dilation: usize, kernel: usize, stride: usize) -> usize {
    let span = dilation
        .saturating_mul(kernel.saturating_sub(1))
        .saturating_add(1);
    let padded = input.saturating_add(padding.saturating_mul(2));
    match padded
        .checked_sub(span)
        .and_then(|room| room.checked_div(stride))
    {
        Some(steps) => steps + 1,
        None => 0,
    }
}

impl Conv2dShape {
    /// Checks that the shape describes a convolution whose every buffer length fits in `usize`. A batch of 0 is
    /// allowed (all buffers are empty); every other size, stride, dilation and the group count must be positive.
    pub fn validate(&self) -> Result<()> {
        self.validate_for("conv2d")
    }

    /// [`Conv2dShape::validate`], reporting errors as coming from `op`.
    pub(crate) fn validate_for(&self, op: &'static str) -> Result<()> {
        let positive = [
            ("in_channels", self.in_channels),
            ("in_h", self.in_h),
            ("in_w", self.in_w),
            ("out_channels", self.out_channels),
            ("kernel_h", self.kernel_h),
            ("kernel_w", self.kernel_w),
            ("stride.0 (h)", self.stride.0),
            ("stride.1 (w)", self.stride.1),
            ("dilation.0 (h)", self.dilation.0),
            ("dilation.1 (w)", self.dilation.1),
            ("groups", self.groups),
        ];
        if let Some((field, _)) = positive.iter().find(|(_, value)| *value == 0) {
            return Err(KernelError::new(
                op,
                format!("{field} is 0; it must be positive"),
            ));
        }
        for (field, channels) in [
            ("in_channels", self.in_channels),
            ("out_channels", self.out_channels),
        ] {
            if channels % self.groups != 0 {
                return Err(KernelError::new(
                    op,
                    format!(
                        "{field} = {channels} is not divisible by groups = {}",
                        self.groups
                    ),
                ));
            }
        }
        let axes = [
            (
                "kernel_h",
                self.kernel_h,
                self.dilation.0,
                "in_h",
                self.in_h,
                self.padding.0,
            ),
            (
                "kernel_w",
                self.kernel_w,
                self.dilation.1,
                "in_w",
                self.in_w,
                self.padding.1,
            ),
        ];
        for (kernel_field, kernel, dilation, input_field, input, padding) in axes {
            let span = (kernel - 1)
                .checked_mul(dilation)
                .and_then(|s| s.checked_add(1));
            let padded = padding.checked_mul(2).and_then(|p| p.checked_add(input));
            let (Some(span), Some(padded)) = (span, padded) else {
                return Err(KernelError::new(
                    op,
                    format!("{kernel_field} or {input_field}: extent overflows usize"),
                ));
            };
            if span > padded {
                return Err(KernelError::new(
                    op,
                    format!(
                        "{kernel_field} = {kernel} with dilation {dilation} spans {span} positions, more than the \
                         padded {input_field} of {padded}"
                    ),
                ));
            }
        }
        let product = |field: &str, factors: &[usize]| {
            factors
                .iter()
                .try_fold(1usize, |acc, &f| acc.checked_mul(f))
                .ok_or_else(|| KernelError::new(op, format!("{field} length overflows usize")))
        };
        product(
            "input",
            &[self.batch, self.in_channels, self.in_h, self.in_w],
        )?;
        let group_in = self.in_channels / self.groups;
        product(
            "weight",
            &[self.out_channels, group_in, self.kernel_h, self.kernel_w],
        )?;
        product(
            "output",
            &[self.batch, self.out_channels, self.out_h(), self.out_w()],
        )?;
        product(
            "im2col scratch",
            &[
                group_in,
                self.kernel_h,
                self.kernel_w,
                self.out_h(),
                self.out_w(),
            ],
        )?;
        Ok(())
    }

    /// Output height (meaningful once [`Conv2dShape::validate`] passes; 0 for an impossible geometry).
    pub fn out_h(&self) -> usize {
        out_size(
            self.in_h,
            self.padding.0,
            self.dilation.0,
            self.kernel_h,
            self.stride.0,
        )
    }

    /// Output width (meaningful once [`Conv2dShape::validate`] passes; 0 for an impossible geometry).
    pub fn out_w(&self) -> usize {
        out_size(
            self.in_w,
            self.padding.1,
            self.dilation.1,
            self.kernel_w,
            self.stride.1,
        )
    }

    /// `batch · in_channels · in_h · in_w` (saturating; exact once validated).
    pub fn input_len(&self) -> usize {
        saturating_product(&[self.batch, self.in_channels, self.in_h, self.in_w])
    }

    /// `out_channels · (in_channels / groups) · kernel_h · kernel_w` (saturating; exact once validated).
    pub fn weight_len(&self) -> usize {
        saturating_product(&[
            self.out_channels,
            self.group_in_channels(),
            self.kernel_h,
            self.kernel_w,
        ])
    }

    /// `batch · out_channels · out_h · out_w` (saturating; exact once validated).
    pub fn output_len(&self) -> usize {
        saturating_product(&[self.batch, self.out_channels, self.out_h(), self.out_w()])
    }

    /// Input channels seen by one group.
    pub(crate) fn group_in_channels(&self) -> usize {
        self.in_channels.checked_div(self.groups).unwrap_or(0)
    }

    /// Output channels produced by one group.
    pub(crate) fn group_out_channels(&self) -> usize {
        self.out_channels.checked_div(self.groups).unwrap_or(0)
    }

    /// Rows of one group's im2col matrix: `(in_channels / groups) · kernel_h · kernel_w`, the GEMM depth.
    pub(crate) fn patch_len(&self) -> usize {
        self.group_in_channels() * self.kernel_h * self.kernel_w
    }

    /// Output positions of one image, `out_h · out_w`: the columns of the im2col matrix.
    pub(crate) fn out_plane(&self) -> usize {
        self.out_h() * self.out_w()
    }

    /// Whether the im2col matrix of a group *is* its input slab (1×1 kernel, stride 1, no padding), so no copy is
    /// needed.
    pub(crate) fn is_pointwise(&self) -> bool {
        self.kernel_h == 1 && self.kernel_w == 1 && self.stride == (1, 1) && self.padding == (0, 0)
    }
}

fn saturating_product(factors: &[usize]) -> usize {
    factors.iter().fold(1usize, |acc, &f| acc.saturating_mul(f))
}
