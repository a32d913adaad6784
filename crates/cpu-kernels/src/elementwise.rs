//! Element-wise kernels over strided, broadcast operands: `out[i] = f(a[i])`, `f(a[i], b[i])`, `c[i] ? a[i] : b[i]`,
//! the strided copy that makes a tensor contiguous, and `acc[i] += x[i]` in place (gradient accumulation).
//!
//! The output is contiguous in row-major order of `shape`; inputs are [`StridedRef`]s (a zero stride broadcasts).
//! The loop over rows lives in [`crate::strided::for_each_row`]; this file only says what happens to one element.
//! The caller guarantees, through [`check_operand`], that every strided read stays inside its slice.
//!
//! Contiguous rows (the common case) go through [`map_row`] / [`zip_rows`], which pick the operation once per row so
//! that the loop over elements is a single function LLVM vectorises, compiled for AVX2 + FMA when the CPU has them
//! (`dispatch.rs`; both builds give identical bits); strided and broadcast rows go through the same builds
//! ([`map_strided_row`], [`zip_strided_rows`]). `exp` uses the vectorisable [`crate::math::exp`] (≤ 2 ulp) instead of
//! libm's scalar call, `σ`, SiLU and the GELUs its fused-multiply-add form [`crate::math::exp_fused`]; the exact
//! GELU's normal CDF is [`normal_cdf`], branch-free, its polynomial by fused multiply-adds too.

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
            UnaryOp::Gelu => gelu(x),
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
    /// The gradient of the exact GELU in one pass: `a` is its input x, `b` the output gradient g, and the result
    /// g·(Φ(x) + x·φ(x)) with φ(x) = e^{−x²/2}/√(2π), the derivative of x·Φ(x) times g.
    GeluBackward,
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
            BinaryOp::GeluBackward => gelu_backward(a, b),
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

/// `g·(Φ(x) + x·φ(x))`, the exact GELU's derivative at `x` times `g`, called directly by the row loop so that it is
/// inlined there (passed as a closure or `fn` item, its body is large enough for LLVM to leave a call per element,
/// outside the AVX2 build).
#[inline(always)]
pub(crate) fn gelu_backward(x: f32, g: f32) -> f32 {
    g * gelu_derivative_from_cdf(x, normal_cdf(x))
}

/// `Φ(x) + x·φ(x)`, the exact GELU's derivative, from `cdf = Φ(x)`: for a caller that needs `Φ(x)` for the GELU
/// itself too and computes it once (the same roundings as [`gelu_backward`]).
#[inline(always)]
pub(crate) fn gelu_derivative_from_cdf(x: f32, cdf: f32) -> f32 {
    cdf + x * FRAC_1_SQRT_2PI * math::exp_fused(-0.5 * x * x)
}

/// The exact GELU `x·Φ(x)`, called directly by the row loop for the same reason as [`gelu_backward`].
#[inline(always)]
pub(crate) fn gelu(x: f32) -> f32 {
    x * normal_cdf(x)
}

/// 1/√(2π), the normal density at 0.
const FRAC_1_SQRT_2PI: f32 = 0.398_942_3;

/// The standard normal CDF `Φ(x) = ½·erfc(−x/√2)`, branch-free so that its loops vectorise. With `z = |x|/√2` and
/// `t = 1/(1 + z/2)`, `erfc(z) = t·exp(−z² + P(t))` where `P` is the degree-9 Chebyshev fit of Press et al.
/// (Numerical Recipes, `erfcc`; fractional error below 1.2e-7 for every z ≥ 0); then `Φ(x) = erfc(z)/2` for x < 0
/// and `1 − erfc(z)/2` otherwise, so neither tail cancels. In f32 the Horner steps (fused multiply-adds: one
/// rounding each, and half the operations) and `exp` (≤ 2 ulp, [`math::exp_fused`]) add a few ulp, and the exponent `P(t) − x²/2` carries the roundings of x² and of the difference: a relative error of about
/// `(2z² + 6)·2⁻²⁴` in Φ for x < 0, which grows only in the tail where Φ is tiny. The coefficients are the fit's as
/// published. Like [`math::exp_fused`], meant for routines compiled through `dispatch!` (a build without FMA calls
/// libm's exact, scalar `fmaf`: the same bits, slowly).
#[inline(always)]
#[allow(clippy::excessive_precision)]
pub fn normal_cdf(x: f32) -> f32 {
    let z = x.abs() * std::f32::consts::FRAC_1_SQRT_2;
    let t = 1.0 / (1.0 + 0.5 * z);
    let p = t.mul_add(0.170_872_77, -0.822_152_23);
    let p = t.mul_add(p, 1.488_515_87);
    let p = t.mul_add(p, -1.135_203_98);
    let p = t.mul_add(p, 0.278_868_07);
    let p = t.mul_add(p, -0.186_288_06);
    let p = t.mul_add(p, 0.096_784_18);
    let p = t.mul_add(p, 0.374_091_96);
    let p = t.mul_add(p, 1.000_023_68);
    let p = t.mul_add(p, -1.265_512_23);
    let half_erfc = 0.5 * t * math::exp_fused(p - 0.5 * (x * x));
    if x < 0.0 {
        half_erfc
    } else {
        1.0 - half_erfc
    }
}

/// `σ(x) = 1/(1 + e⁻ˣ)`, with the vectorisable `exp` by fused multiply-adds ([`math::exp_fused`]; 0 for
/// x < −88.72, where e⁻ˣ overflows). For routines compiled through `dispatch!`, as [`normal_cdf`].
#[inline(always)]
pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + math::exp_fused(-x))
}

/// `out[i] = f(src[i])`.
#[inline(always)]
fn each(src: &[f32], out: &mut [f32], f: impl Fn(f32) -> f32) {
    for (o, &x) in out.iter_mut().zip(src) {
        *o = f(x);
    }
}

/// `row[j] = op(a[ao + j·asz])`: a row of a strided input, compiled through `dispatch!` like the contiguous rows, so
/// that the operations' fused multiply-adds ([`normal_cdf`], [`sigmoid`]) are instructions here too.
#[inline(always)]
fn map_strided_row(op: UnaryOp, a: &[f32], ao: usize, asz: usize, row: &mut [f32]) {
    for (j, o) in row.iter_mut().enumerate() {
        *o = op.apply(a[ao + j * asz]);
    }
}

/// `row[j] = op(a[ao + j·asz], b[bo + j·bsz])` for a row whose operands are not both contiguous: one of them
/// broadcast along the row (stride 0), or strided. Compiled through `dispatch!`, as [`map_strided_row`].
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn zip_strided_rows(
    op: BinaryOp,
    a: &[f32],
    ao: usize,
    asz: usize,
    b: &[f32],
    bo: usize,
    bsz: usize,
    row: &mut [f32],
) {
    let n = row.len();
    match (asz, bsz) {
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
        UnaryOp::Gelu => {
            // A direct call, as `zip_rows` does for the GELU's gradient.
            for (o, &x) in out.iter_mut().zip(src) {
                *o = gelu(x);
            }
        }
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
        BinaryOp::GeluBackward => {
            // A direct call: through `each2`'s `Fn` the large body stays an outlined call per element.
            for ((o, &x), &g) in out.iter_mut().zip(a).zip(b) {
                *o = gelu_backward(x, g);
            }
        }
    }
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
            dispatch!(map_strided_row(op: UnaryOp, a: &[f32], ao: usize, asz: usize, row: &mut [f32]));
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
            if (asz, bsz) == (1, 1) {
                let (ar, br) = (&a[ao..ao + n], &b[bo..bo + n]);
                dispatch!(zip_rows(op: BinaryOp, ar: &[f32], br: &[f32], row: &mut [f32]));
            } else {
                dispatch!(zip_strided_rows(
                    op: BinaryOp,
                    a: &[f32],
                    ao: usize,
                    asz: usize,
                    b: &[f32],
                    bo: usize,
                    bsz: usize,
                    row: &mut [f32],
                ));
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
