//! Element-wise kernels over strided, broadcast operands: `out[i] = f(a[i])`, `f(a[i], b[i])`, `c[i] ? a[i] : b[i]`,
//! the strided copy that makes a tensor contiguous, and `acc[i] += x[i]` in place (gradient accumulation).
//!
//! The output is contiguous in row-major order of `shape`; inputs are [`StridedRef`]s (a zero stride broadcasts).
//! The loop over rows lives in [`crate::strided::for_each_row`]; this file only says what happens to one element.
//! The caller guarantees, through [`check_operand`], that every strided read stays inside its slice.
//!
//! Contiguous rows (the common case) go through [`map_row`] / [`zip_rows`], which pick the operation once per row so
//! that the loop over elements is a single function LLVM vectorises, compiled for AVX2 + FMA when the CPU has them
//! (`dispatch.rs`; both builds give identical bits). `exp`, `σ` and SiLU use the vectorisable [`crate::math::exp`]
//! (≤ 2 ulp) instead of libm's scalar call.

use rayon::prelude::*;

use crate::dispatch::dispatch;
use crate::error::{check_len, KernelError, Result};
use crate::math;
use crate::strided::{for_each_row, max_offset, StridedRef};

/// One-input element-wise functions. All compute in `f32`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum UnaryOp {
    Neg,
    Exp,
    Log,
    Sqrt,
    Rsqrt,
    Abs,
    Square,
    Recip,
    Relu,
    Tanh,
    Sigmoid,
    /// x·σ(x).
    Silu,
    /// x·Φ(x) with the exact normal CDF, Φ(x) = ½(1 + erf(x/√2)) (PyTorch's default GELU).
    Gelu,
    /// The tanh approximation of GELU (PyTorch's `approximate='tanh'`), ½x(1 + tanh u) with
    /// u = √(2/π)(x + 0.044715x³), computed as x·σ(2u) (the same function: ½(1 + tanh u) = σ(2u)), which keeps its
    /// relative precision in the negative tail where 1 + tanh u cancels.
    GeluTanh,
    /// x^p.
    Powf(f32),
    /// min(max(x, lo), hi).
    Clamp(f32, f32),
    /// x·mul + add (scalar arithmetic without a broadcast tensor).
    Affine(f32, f32),
}

impl UnaryOp {
    #[inline(always)]
    pub fn apply(self, x: f32) -> f32 {
        match self {
            UnaryOp::Neg => -x,
            UnaryOp::Exp => math::exp(x),
            UnaryOp::Log => x.ln(),
            UnaryOp::Sqrt => x.sqrt(),
            UnaryOp::Rsqrt => 1.0 / x.sqrt(),
            UnaryOp::Abs => x.abs(),
            UnaryOp::Square => x * x,
            UnaryOp::Recip => 1.0 / x,
            UnaryOp::Relu => x.max(0.0),
            UnaryOp::Tanh => x.tanh(),
            UnaryOp::Sigmoid => sigmoid(x),
            UnaryOp::Silu => x * sigmoid(x),
            UnaryOp::Gelu => 0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2)),
            UnaryOp::GeluTanh => x * sigmoid(2.0 * gelu_tanh_inner(x)),
            UnaryOp::Powf(p) => x.powf(p),
            UnaryOp::Clamp(lo, hi) => x.max(lo).min(hi),
            UnaryOp::Affine(mul, add) => x * mul + add,
        }
    }
}

/// Two-input element-wise functions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
    Maximum,
    Minimum,
    /// The gradient of SiLU in one pass: `a` is SiLU's input x, `b` the gradient g of its output, and the result
    /// g·σ(x)·(1 + x·(1 − σ(x))), the derivative of x·σ(x) times g.
    SiluBackward,
    /// The gradient of the tanh-approximated GELU in one pass: `a` is its input x, `b` the output gradient g, and the
    /// result g·(s + x·s·(1 − s)·2u′) with s = σ(2u), u′ = √(2/π)(1 + 3·0.044715x²), the derivative of x·σ(2u) times g.
    GeluTanhBackward,
}

impl BinaryOp {
    #[inline(always)]
    pub fn apply(self, a: f32, b: f32) -> f32 {
        match self {
            BinaryOp::Add => a + b,
            BinaryOp::Sub => a - b,
            BinaryOp::Mul => a * b,
            BinaryOp::Div => a / b,
            BinaryOp::Maximum => a.max(b),
            BinaryOp::Minimum => a.min(b),
            BinaryOp::SiluBackward => {
                let s = sigmoid(a);
                b * s * (1.0 + a * (1.0 - s))
            }
            BinaryOp::GeluTanhBackward => {
                let s = sigmoid(2.0 * gelu_tanh_inner(a));
                let du = GELU_TANH_SCALE * (1.0 + 3.0 * GELU_TANH_CUBIC * a * a);
                b * (s + a * s * (1.0 - s) * 2.0 * du)
            }
        }
    }
}

/// √(2/π), the scale of the tanh-GELU's argument.
const GELU_TANH_SCALE: f32 = 0.797_884_6;
/// The cubic coefficient of the tanh-GELU's argument (Hendrycks & Gimpel 2016).
const GELU_TANH_CUBIC: f32 = 0.044_715;

/// `u = √(2/π)(x + 0.044715x³)`, the argument of the tanh in the tanh-approximated GELU.
#[inline(always)]
fn gelu_tanh_inner(x: f32) -> f32 {
    GELU_TANH_SCALE * (x + GELU_TANH_CUBIC * x * x * x)
}

/// `σ(x) = 1/(1 + e⁻ˣ)`, with the vectorisable `exp` (0 for x < −88.72, where e⁻ˣ overflows).
#[inline(always)]
pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + math::exp(-x))
}

/// `out[i] = f(src[i])`.
#[inline(always)]
fn each(src: &[f32], out: &mut [f32], f: impl Fn(f32) -> f32) {
    for (o, &x) in out.iter_mut().zip(src) {
        *o = f(x);
    }
}

/// `out = op(src)` over one contiguous row. The operations the network's layers use get their own loop, so the
/// element loop holds no branch on `op` and vectorises; the rest share one loop over [`UnaryOp::apply`].
#[inline(always)]
fn map_row(op: UnaryOp, src: &[f32], out: &mut [f32]) {
    match op {
        UnaryOp::Exp => each(src, out, math::exp),
        UnaryOp::Sigmoid => each(src, out, sigmoid),
        UnaryOp::Silu => each(src, out, |x| UnaryOp::Silu.apply(x)),
        UnaryOp::GeluTanh => each(src, out, |x| UnaryOp::GeluTanh.apply(x)),
        UnaryOp::Square => each(src, out, |x| x * x),
        UnaryOp::Neg => each(src, out, |x| -x),
        UnaryOp::Affine(mul, add) => each(src, out, |x| x * mul + add),
        _ => each(src, out, |x| op.apply(x)),
    }
}

/// `out[i] = f(a[i], b[i])`.
#[inline(always)]
fn each2(a: &[f32], b: &[f32], out: &mut [f32], f: impl Fn(f32, f32) -> f32) {
    for ((o, &x), &y) in out.iter_mut().zip(a).zip(b) {
        *o = f(x, y);
    }
}

/// `out = op(a, b)` over one contiguous row of each, with one branch-free loop per operation.
#[inline(always)]
fn zip_rows(op: BinaryOp, a: &[f32], b: &[f32], out: &mut [f32]) {
    match op {
        BinaryOp::Add => each2(a, b, out, |x, y| x + y),
        BinaryOp::Sub => each2(a, b, out, |x, y| x - y),
        BinaryOp::Mul => each2(a, b, out, |x, y| x * y),
        BinaryOp::Div => each2(a, b, out, |x, y| x / y),
        BinaryOp::Maximum => each2(a, b, out, f32::max),
        BinaryOp::Minimum => each2(a, b, out, f32::min),
        BinaryOp::SiluBackward => each2(a, b, out, |x, y| BinaryOp::SiluBackward.apply(x, y)),
        BinaryOp::GeluTanhBackward => {
            each2(a, b, out, |x, y| BinaryOp::GeluTanhBackward.apply(x, y))
        }
    }
}

/// The error function, from the rational approximation of W. J. Cody (1969) evaluated in f64, so that its error
/// (below 1e-15 relative) is far under one f32 ulp.
pub fn erf(x: f32) -> f32 {
    erf_f64(f64::from(x)) as f32
}

// The coefficients are kept exactly as published, beyond f64 precision.
#[allow(clippy::excessive_precision)]
fn erf_f64(x: f64) -> f64 {
    let ax = x.abs();
    let r = if ax < 0.5 {
        // erf(x) = x · P(x²)/Q(x²) on |x| < 0.5.
        const P: [f64; 5] = [
            3.209_377_589_138_469_4e3,
            3.774_852_376_853_020_2e2,
            1.138_641_541_510_501_6e2,
            3.161_123_743_870_565_6,
            1.857_777_061_846_031_5e-1,
        ];
        const Q: [f64; 5] = [
            2.844_236_833_439_170_6e3,
            1.282_616_526_077_372_3e3,
            2.440_246_379_344_441_7e2,
            2.360_129_095_234_412_1e1,
            1.0,
        ];
        let z = x * x;
        let num = P[0] + z * (P[1] + z * (P[2] + z * (P[3] + z * P[4])));
        let den = Q[0] + z * (Q[1] + z * (Q[2] + z * (Q[3] + z * Q[4])));
        return x * num / den;
    } else if ax < 4.0 {
        // erfc(|x|) = exp(−x²) · P(|x|)/Q(|x|) on 0.5 ≤ |x| < 4.
        const P: [f64; 9] = [
            1.230_339_354_797_997_2e3,
            2.051_078_377_826_071_5e3,
            1.712_047_612_634_070_6e3,
            8.819_522_212_417_690_9e2,
            2.986_351_381_974_001_3e2,
            6.611_919_063_714_163e1,
            8.883_149_794_388_376,
            5.641_884_969_886_700_9e-1,
            2.153_115_354_744_038_5e-8,
        ];
        const Q: [f64; 9] = [
            1.230_339_354_803_749_4e3,
            3.439_367_674_143_721_6e3,
            4.362_619_090_143_247e3,
            3.290_799_235_733_459_7e3,
            1.621_389_574_566_690_2e3,
            5.371_811_018_620_098_6e2,
            1.176_939_508_913_125e2,
            1.574_492_611_070_983_5e1,
            1.0,
        ];
        let num = P.iter().rev().fold(0.0, |acc, &p| acc * ax + p);
        let den = Q.iter().rev().fold(0.0, |acc, &q| acc * ax + q);
        1.0 - (-ax * ax).exp() * num / den
    } else {
        // erfc(|x|) = exp(−x²)/|x| · (1/√π + 1/x² · P(1/x²)/Q(1/x²)) on |x| ≥ 4.
        const P: [f64; 6] = [
            -6.587_491_615_298_378e-4,
            -1.608_378_514_874_227_5e-2,
            -1.257_817_261_112_292_6e-1,
            -3.603_448_999_498_044_5e-1,
            -3.053_266_349_612_323_4e-1,
            -1.631_538_713_730_709_8e-2,
        ];
        const Q: [f64; 6] = [
            2.335_204_976_268_691_8e-3,
            6.051_834_131_244_131_9e-2,
            5.278_905_347_532_218_7e-1,
            1.872_952_849_923_460_4,
            2.568_520_192_289_822_4,
            1.0,
        ];
        let z = 1.0 / (ax * ax);
        let num = P.iter().rev().fold(0.0, |acc, &p| acc * z + p);
        let den = Q.iter().rev().fold(0.0, |acc, &q| acc * z + q);
        let frac_1_sqrt_pi = 0.564_189_583_547_756_3;
        1.0 - (-ax * ax).exp() / ax * (frac_1_sqrt_pi + z * num / den)
    };
    r.copysign(x)
}

/// Checks that the strided operand `what` of `op`, read over `shape`, stays inside a slice of `len` elements.
pub fn check_operand(
    op: &'static str,
    what: &str,
    shape: &[usize],
    operand: StridedRef<'_>,
    len: usize,
) -> Result<()> {
    if operand.strides.len() != shape.len() {
        return Err(KernelError::new(
            op,
            format!(
                "{what} has {} strides for a rank-{} shape",
                operand.strides.len(),
                shape.len()
            ),
        ));
    }
    if shape.contains(&0) {
        return Ok(());
    }
    match max_offset(shape, operand.strides, operand.offset) {
        Some(last) if last < len => Ok(()),
        Some(last) => Err(KernelError::new(
            op,
            format!("{what} reaches element {last} but its buffer has only {len} elements"),
        )),
        None => Err(KernelError::new(
            op,
            format!("{what}'s strides overflow the address space"),
        )),
    }
}

fn check_output(op: &'static str, shape: &[usize], out: &[f32]) -> Result<()> {
    // A zero dimension empties the shape whatever the order of the others (`[usize::MAX, usize::MAX, 0]`).
    let numel = if shape.contains(&0) {
        Some(0)
    } else {
        shape.iter().try_fold(1usize, |acc, &n| acc.checked_mul(n))
    };
    match numel {
        Some(n) if n == out.len() => Ok(()),
        Some(n) => Err(KernelError::new(
            op,
            format!(
                "output has {} elements but the shape {shape:?} has {n}",
                out.len()
            ),
        )),
        None => Err(KernelError::new(
            op,
            format!("shape {shape:?} has more elements than fit in usize"),
        )),
    }
}

/// `out = op(a)` over `shape`.
pub fn unary(
    op: UnaryOp,
    shape: &[usize],
    a: &[f32],
    a_layout: StridedRef<'_>,
    out: &mut [f32],
) -> Result<()> {
    check_output("unary", shape, out)?;
    check_operand("unary", "input", shape, a_layout, a.len())?;
    for_each_row(out, shape, [a_layout], |row, [ao], [asz]| {
        let n = row.len();
        if asz == 1 {
            let src = &a[ao..ao + n];
            dispatch!(map_row(op: UnaryOp, src: &[f32], row: &mut [f32]));
        } else {
            for (j, o) in row.iter_mut().enumerate() {
                *o = op.apply(a[ao + j * asz]);
            }
        }
    });
    Ok(())
}

/// `out = op(a, b)` over the broadcast `shape` (each operand already has broadcast strides for `shape`).
pub fn binary(
    op: BinaryOp,
    shape: &[usize],
    a: &[f32],
    a_layout: StridedRef<'_>,
    b: &[f32],
    b_layout: StridedRef<'_>,
    out: &mut [f32],
) -> Result<()> {
    check_output("binary", shape, out)?;
    check_operand("binary", "left operand", shape, a_layout, a.len())?;
    check_operand("binary", "right operand", shape, b_layout, b.len())?;
    for_each_row(
        out,
        shape,
        [a_layout, b_layout],
        |row, [ao, bo], [asz, bsz]| {
            let n = row.len();
            match (asz, bsz) {
                (1, 1) => {
                    let (ar, br) = (&a[ao..ao + n], &b[bo..bo + n]);
                    dispatch!(zip_rows(op: BinaryOp, ar: &[f32], br: &[f32], row: &mut [f32]));
                }
                (1, 0) => {
                    let y = b[bo];
                    for (o, &x) in row.iter_mut().zip(&a[ao..ao + n]) {
                        *o = op.apply(x, y);
                    }
                }
                (0, 1) => {
                    let x = a[ao];
                    for (o, &y) in row.iter_mut().zip(&b[bo..bo + n]) {
                        *o = op.apply(x, y);
                    }
                }
                _ => {
                    for (j, o) in row.iter_mut().enumerate() {
                        *o = op.apply(a[ao + j * asz], b[bo + j * bsz]);
                    }
                }
            }
        },
    );
    Ok(())
}

/// `out = if cond != 0 { a } else { b }` over the broadcast `shape`.
#[allow(clippy::too_many_arguments)]
pub fn where_select(
    shape: &[usize],
    cond: &[f32],
    cond_layout: StridedRef<'_>,
    a: &[f32],
    a_layout: StridedRef<'_>,
    b: &[f32],
    b_layout: StridedRef<'_>,
    out: &mut [f32],
) -> Result<()> {
    check_output("where", shape, out)?;
    check_operand("where", "condition", shape, cond_layout, cond.len())?;
    check_operand("where", "on-true operand", shape, a_layout, a.len())?;
    check_operand("where", "on-false operand", shape, b_layout, b.len())?;
    for_each_row(
        out,
        shape,
        [cond_layout, a_layout, b_layout],
        |row, [co, ao, bo], [cs, as_, bs]| {
            for (j, o) in row.iter_mut().enumerate() {
                *o = if cond[co + j * cs] != 0.0 {
                    a[ao + j * as_]
                } else {
                    b[bo + j * bs]
                };
            }
        },
    );
    Ok(())
}

/// Copies the strided view `a` into the contiguous `out` (row-major over `shape`).
pub fn copy_strided(
    shape: &[usize],
    a: &[f32],
    a_layout: StridedRef<'_>,
    out: &mut [f32],
) -> Result<()> {
    check_output("copy_strided", shape, out)?;
    check_operand("copy_strided", "source", shape, a_layout, a.len())?;
    for_each_row(out, shape, [a_layout], |row, [ao], [asz]| {
        let n = row.len();
        if asz == 1 {
            row.copy_from_slice(&a[ao..ao + n]);
        } else {
            for (j, o) in row.iter_mut().enumerate() {
                *o = a[ao + j * asz];
            }
        }
    });
    Ok(())
}

/// Elements per rayon task of [`add_assign`]: a fixed size, so the split depends only on the length.
const ADD_ASSIGN_CHUNK: usize = 1 << 14;

/// `acc[i] += x[i]`: [`BinaryOp::Add`] written into the buffer of its left operand (the backward pass accumulates
/// gradients this way when it owns the accumulator alone). Each element is one f32 addition, so the result is
/// bit for bit that of `binary(Add, …)`.
pub fn add_assign(acc: &mut [f32], x: &[f32]) -> Result<()> {
    check_len("add_assign", "x", x.len(), acc.len())?;
    acc.par_chunks_mut(ADD_ASSIGN_CHUNK)
        .zip(x.par_chunks(ADD_ASSIGN_CHUNK))
        .for_each(|(acc, x)| dispatch!(add_row(acc: &mut [f32], x: &[f32])));
    Ok(())
}

#[inline(always)]
fn add_row(acc: &mut [f32], x: &[f32]) {
    for (a, &x) in acc.iter_mut().zip(x) {
        *a += x;
    }
}
