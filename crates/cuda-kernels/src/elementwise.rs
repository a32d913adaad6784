//! Unary and binary maps on strided, broadcast operands of rank <= 6, and `copy_strided` (make contiguous).
//! `kernels/elementwise.ptx` has the math; this file validates shapes, merges dimensions and launches.
//!
//! An operand is a device buffer plus an [`Operand`] layout: one signed element stride per output dimension (0 for a
//! broadcast dimension) and an element offset of the first element. The output is always contiguous, row-major, of
//! `shape.iter().product()` elements.

use cudarc::driver::{DevicePtr, DevicePtrMut, DeviceRepr};

use crate::context::{Gpu, Module};
use crate::error::{check_len, KernelError, Result};
use crate::launch::{grid_for, launch, Arg, Launch};

/// The largest rank the kernels take (after merging contiguous dimensions).
pub const MAX_RANK: usize = 6;
const THREADS: u32 = 256;

/// Where an operand's elements are: element `(i0, .., ik)` of the output reads `offset + sum_d i_d * strides[d]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Operand<'a> {
    pub strides: &'a [isize],
    pub offset: usize,
}

impl<'a> Operand<'a> {
    pub fn new(strides: &'a [isize], offset: usize) -> Self {
        Self { strides, offset }
    }
}

/// A one-input map.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum UnaryOp {
    Neg,
    Exp,
    Log,
    Sqrt,
    Rsqrt,
    Abs,
    /// x * sigmoid(x)
    Silu,
    /// The exact GELU, x/2 (1 + erf(x / sqrt 2)) (not the tanh approximation).
    Gelu,
    /// The tanh-approximated GELU, x/2 (1 + tanh u), u = sqrt(2/pi) (x + 0.044715 x^3), computed as x sigmoid(2u).
    GeluTanh,
    Tanh,
    Sigmoid,
    /// x^p
    Powf(f32),
    /// min(max(x, lo), hi)
    Clamp {
        lo: f32,
        hi: f32,
    },
    /// x * x
    Square,
    /// 1 / x
    Recip,
    /// max(x, 0)
    Relu,
    /// x * mul + add
    Affine {
        mul: f32,
        add: f32,
    },
}

impl UnaryOp {
    /// (op code, alpha, beta) as `unary_strided` takes them.
    fn code(self) -> (u32, f32, f32) {
        match self {
            UnaryOp::Neg => (0, 0.0, 0.0),
            UnaryOp::Exp => (1, 0.0, 0.0),
            UnaryOp::Log => (2, 0.0, 0.0),
            UnaryOp::Sqrt => (3, 0.0, 0.0),
            UnaryOp::Rsqrt => (4, 0.0, 0.0),
            UnaryOp::Abs => (5, 0.0, 0.0),
            UnaryOp::Silu => (6, 0.0, 0.0),
            UnaryOp::Gelu => (7, 0.0, 0.0),
            UnaryOp::Tanh => (8, 0.0, 0.0),
            UnaryOp::Sigmoid => (9, 0.0, 0.0),
            UnaryOp::Powf(p) => (10, p, 0.0),
            UnaryOp::Clamp { lo, hi } => (11, lo, hi),
            UnaryOp::Square => (13, 0.0, 0.0),
            UnaryOp::Recip => (14, 0.0, 0.0),
            UnaryOp::Relu => (15, 0.0, 0.0),
            UnaryOp::Affine { mul, add } => (16, mul, add),
            UnaryOp::GeluTanh => (17, 0.0, 0.0),
        }
    }
}

/// The identity map of `unary_strided`, used by [`copy_strided`].
const IDENTITY: u32 = 12;

/// A two-input map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
    Max,
    Min,
    /// The gradient of SiLU: `a` is its input x, `b` the output gradient g; `g s (1 + x (1 - s))`, `s = sigmoid(x)`.
    SiluBackward,
    /// The gradient of the tanh GELU: `a` is its input x, `b` the output gradient g; `g (s + x s (1 - s) 2u')`,
    /// `s = sigmoid(2u)`.
    GeluTanhBackward,
    /// The gradient of the exact GELU: `a` is its input x, `b` the output gradient g; `g (Φ(x) + x φ(x))`.
    GeluBackward,
}

impl BinaryOp {
    fn code(self) -> u32 {
        match self {
            BinaryOp::Add => 0,
            BinaryOp::Sub => 1,
            BinaryOp::Mul => 2,
            BinaryOp::Div => 3,
            BinaryOp::Max => 4,
            BinaryOp::Min => 5,
            BinaryOp::SiluBackward => 6,
            BinaryOp::GeluTanhBackward => 7,
            BinaryOp::GeluBackward => 8,
        }
    }
}

/// The layout `.param` struct of elementwise.ptx: innermost dimension first.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct LayoutParam {
    rank: u64,
    shape: [u64; MAX_RANK],
    stride_a: [i64; MAX_RANK],
    stride_b: [i64; MAX_RANK],
}

// SAFETY: `LayoutParam` is `repr(C)`, made only of u64/i64 (no padding, no pointers), and matches the 152-byte,
// 8-aligned `.param .b8 layout[152]` of the kernels field for field.
unsafe impl DeviceRepr for LayoutParam {}

/// Drops size-1 dimensions and merges each pair of neighbours that is contiguous in both operands, so a contiguous
/// map becomes rank 1. Returns (shape, strides_a, strides_b), outermost first, never empty.
pub fn merge_dimensions(
    shape: &[usize],
    a: &[isize],
    b: &[isize],
) -> (Vec<usize>, Vec<isize>, Vec<isize>) {
    let mut merged: (Vec<usize>, Vec<isize>, Vec<isize>) = (Vec::new(), Vec::new(), Vec::new());
    for d in 0..shape.len() {
        if shape[d] == 1 {
            continue;
        }
        if let (Some(&sa), Some(&sb)) = (merged.1.last(), merged.2.last()) {
            // the previous (outer) dimension steps exactly over this one in both operands: fold it in
            if sa == a[d] * shape[d] as isize && sb == b[d] * shape[d] as isize {
                *merged.0.last_mut().expect("non-empty") *= shape[d];
                *merged.1.last_mut().expect("non-empty") = a[d];
                *merged.2.last_mut().expect("non-empty") = b[d];
                continue;
            }
        }
        merged.0.push(shape[d]);
        merged.1.push(a[d]);
        merged.2.push(b[d]);
    }
    if merged.0.is_empty() {
        merged = (vec![1], vec![0], vec![0]);
    }
    merged
}

/// Checks one operand's strides against the shape, and that every element it reaches lies inside its buffer.
fn check_operand(
    op: &'static str,
    name: &str,
    shape: &[usize],
    operand: &Operand,
    buffer_len: usize,
) -> Result<()> {
    if operand.strides.len() != shape.len() {
        return Err(KernelError::new(
            op,
            format!(
                "{name} has {} strides for a rank-{} shape {shape:?}",
                operand.strides.len(),
                shape.len()
            ),
        ));
    }
    if shape.contains(&0) {
        return Ok(());
    }
    // the lowest and highest element the map touches, relative to the offset
    let (mut low, mut high) = (0i128, 0i128);
    for (&extent, &stride) in shape.iter().zip(operand.strides) {
        let span = (extent as i128 - 1) * stride as i128;
        if span < 0 {
            low += span;
        } else {
            high += span;
        }
    }
    let first = operand.offset as i128 + low;
    let last = operand.offset as i128 + high;
    if first < 0 || last >= buffer_len as i128 {
        return Err(KernelError::new(
            op,
            format!(
                "{name} (shape {shape:?}, strides {:?}, offset {}) reaches elements {first}..={last} of a buffer of {buffer_len}",
                operand.strides, operand.offset
            ),
        ));
    }
    Ok(())
}

fn layout_param(
    op: &'static str,
    shape: &[usize],
    a: &[isize],
    b: &[isize],
) -> Result<(LayoutParam, u64)> {
    let (shape, a, b) = merge_dimensions(shape, a, b);
    if shape.len() > MAX_RANK {
        return Err(KernelError::new(
            op,
            format!(
                "rank {} after merging contiguous dimensions exceeds {MAX_RANK}",
                shape.len()
            ),
        ));
    }
    let mut param = LayoutParam {
        rank: shape.len() as u64,
        ..LayoutParam::default()
    };
    for (slot, d) in (0..shape.len()).rev().enumerate() {
        param.shape[slot] = shape[d] as u64;
        param.stride_a[slot] = a[d] as i64;
        param.stride_b[slot] = b[d] as i64;
    }
    Ok((param, shape.iter().product::<usize>() as u64))
}

/// out = f(x), elementwise, x read through its layout.
pub fn unary(
    gpu: &Gpu,
    op: UnaryOp,
    shape: &[usize],
    x: &impl DevicePtr<f32>,
    x_layout: Operand,
    out: &mut impl DevicePtrMut<f32>,
) -> Result<()> {
    let (code, alpha, beta) = op.code();
    unary_code(gpu, "unary", code, alpha, beta, shape, x, x_layout, out)
}

/// out = x made contiguous (row-major) from any strided, broadcast layout.
pub fn copy_strided(
    gpu: &Gpu,
    shape: &[usize],
    x: &impl DevicePtr<f32>,
    x_layout: Operand,
    out: &mut impl DevicePtrMut<f32>,
) -> Result<()> {
    unary_code(
        gpu,
        "copy_strided",
        IDENTITY,
        0.0,
        0.0,
        shape,
        x,
        x_layout,
        out,
    )
}

#[allow(clippy::too_many_arguments)] // the kernel's own parameter list
fn unary_code(
    gpu: &Gpu,
    op: &'static str,
    code: u32,
    alpha: f32,
    beta: f32,
    shape: &[usize],
    x: &impl DevicePtr<f32>,
    x_layout: Operand,
    out: &mut impl DevicePtrMut<f32>,
) -> Result<()> {
    let numel: usize = shape.iter().product();
    check_len(op, "out", out.len(), numel)?;
    check_operand(op, "x", shape, &x_layout, x.len())?;
    if numel == 0 {
        return Ok(());
    }
    let (layout, n) = layout_param(op, shape, x_layout.strides, x_layout.strides)?;
    let stream = gpu.stream();
    let (x_ptr, _x_guard) = x.device_ptr(stream);
    let (out_ptr, _out_guard) = out.device_ptr_mut(stream);
    launch(
        gpu,
        op,
        Launch::linear(
            Module::Elementwise,
            "unary_strided",
            grid_for(n, THREADS, gpu),
            THREADS,
        ),
        &[
            Arg::Ptr(out_ptr),
            Arg::Ptr(x_ptr + 4 * x_layout.offset as u64),
            Arg::U64(n),
            Arg::U32(code),
            Arg::F32(alpha),
            Arg::F32(beta),
            Arg::Layout(layout),
        ],
    )
}

/// out = g(a, b), elementwise, each operand read through its own (possibly broadcast) layout.
#[allow(clippy::too_many_arguments)] // two (buffer, layout) operands
pub fn binary(
    gpu: &Gpu,
    op: BinaryOp,
    shape: &[usize],
    a: &impl DevicePtr<f32>,
    a_layout: Operand,
    b: &impl DevicePtr<f32>,
    b_layout: Operand,
    out: &mut impl DevicePtrMut<f32>,
) -> Result<()> {
    const OP: &str = "binary";
    let numel: usize = shape.iter().product();
    check_len(OP, "out", out.len(), numel)?;
    check_operand(OP, "a", shape, &a_layout, a.len())?;
    check_operand(OP, "b", shape, &b_layout, b.len())?;
    if numel == 0 {
        return Ok(());
    }
    let (layout, n) = layout_param(OP, shape, a_layout.strides, b_layout.strides)?;
    let stream = gpu.stream();
    let (a_ptr, _a_guard) = a.device_ptr(stream);
    let (b_ptr, _b_guard) = b.device_ptr(stream);
    let (out_ptr, _out_guard) = out.device_ptr_mut(stream);
    launch(
        gpu,
        OP,
        Launch::linear(
            Module::Elementwise,
            "binary_strided",
            grid_for(n, THREADS, gpu),
            THREADS,
        ),
        &[
            Arg::Ptr(out_ptr),
            Arg::Ptr(a_ptr + 4 * a_layout.offset as u64),
            Arg::Ptr(b_ptr + 4 * b_layout.offset as u64),
            Arg::U64(n),
            Arg::U32(op.code()),
            Arg::Layout(layout),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::merge_dimensions;

    #[test]
    fn contiguous_operands_merge_to_rank_one() {
        assert_eq!(
            merge_dimensions(&[2, 3, 4], &[12, 4, 1], &[12, 4, 1]),
            (vec![24], vec![1], vec![1])
        );
    }

    #[test]
    fn a_broadcast_dimension_stops_the_merge() {
        // b broadcasts over the middle dimension
        assert_eq!(
            merge_dimensions(&[2, 3, 4], &[12, 4, 1], &[4, 0, 1]),
            (vec![2, 3, 4], vec![12, 4, 1], vec![4, 0, 1])
        );
        // b broadcasts over the leading two: they merge with each other but not with the last
        assert_eq!(
            merge_dimensions(&[2, 3, 4], &[12, 4, 1], &[0, 0, 1]),
            (vec![6, 4], vec![4, 1], vec![0, 1])
        );
    }

    #[test]
    fn unit_dimensions_vanish_and_a_scalar_is_rank_one() {
        assert_eq!(
            merge_dimensions(&[1, 5, 1], &[5, 1, 1], &[0, 1, 0]),
            (vec![5], vec![1], vec![1])
        );
        assert_eq!(merge_dimensions(&[], &[], &[]), (vec![1], vec![0], vec![0]));
    }
}
