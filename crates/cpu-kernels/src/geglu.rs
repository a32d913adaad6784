//! GEGLU, the gated feed-forward activation of Stable Diffusion's transformer blocks (Shazeer 2020, "GLU Variants
//! Improve Transformer"): a linear layer's output row of `2·inner` values is split into a hidden half `h` and a gate
//! half `a`, and
//!
//! ```text
//! out[r, j] = h[r, j]·gelu(a[r, j])          h = x[r, 0..inner], a = x[r, inner..2·inner], gelu(a) = a·Φ(a)
//! ```
//!
//! (the exact GELU, diffusers' `GEGLU`). Backward, with `g = ∂L/∂out`: `∂L/∂h = g·gelu(a)` and
//! `∂L/∂a = g·h·gelu′(a)`, `gelu′(a) = Φ(a) + a·φ(a)`, written into the two halves of one `[rows, 2·inner]` gradient.
//!
//! Unfused, the forward is a GELU of the gate view into a temporary and a product (two passes, one temporary), and the
//! backward two products, a GELU derivative, and two zero-padded scatters of the halves into full-width buffers that
//! are then added: six passes over the widest activations of the block. Fused, the forward reads `x` once and writes
//! `out` once; the backward reads `x` and `g` once and writes each element of `∂x` once.
//!
//! The backward computes `Φ(a)` once for both `gelu(a) = a·Φ(a)` and `gelu′(a)`, where the unfused kernels each
//! compute it.
//!
//! Loop structure: rows are independent; rayon hands out runs of rows, and each row is a loop over `j` that the
//! AVX-512 / AVX2 builds (`dispatch.rs`) vectorise. Every element is computed alone, so the result does not depend on
//! the thread count.

use rayon::prelude::*;

use crate::dispatch::dispatch;
use crate::elementwise::{gelu, gelu_derivative_from_cdf, normal_cdf};
use crate::error::{check_len, KernelError, Result};

/// Output elements per rayon task, at least one row.
const ELEMENTS_PER_TASK: usize = 8192;

/// (input elements `rows·2·inner`, output elements `rows·inner`), or an error naming the overflowing shape. The GPU
/// entries (`diffuse_cuda_kernels::geglu`) check their operands with it too.
pub fn lengths(op: &'static str, rows: usize, inner: usize) -> Result<(usize, usize)> {
    let out = rows
        .checked_mul(inner)
        .ok_or_else(|| KernelError::new(op, format!("{rows} rows of {inner} overflow usize")))?;
    let input = out
        .checked_mul(2)
        .ok_or_else(|| KernelError::new(op, format!("{rows} rows of 2·{inner} overflow usize")))?;
    Ok((input, out))
}

#[inline(always)]
fn forward_row(x: &[f32], out: &mut [f32]) {
    let (h, a) = x.split_at(out.len());
    for ((o, &h), &a) in out.iter_mut().zip(h).zip(a) {
        *o = h * gelu(a);
    }
}

#[inline(always)]
fn backward_row(x: &[f32], g: &[f32], dx: &mut [f32]) {
    let (h, a) = x.split_at(g.len());
    let (dh, da) = dx.split_at_mut(g.len());
    for ((((dh, da), &h), &a), &g) in dh.iter_mut().zip(da).zip(h).zip(a).zip(g) {
        // Φ(a) once for both halves: g·gelu(a) = g·(a·Φ(a)), and gelu′(a) = Φ(a) + a·φ(a), rounded as the
        // element-wise GELU and GELU-derivative kernels round them
        let cdf = normal_cdf(a);
        *dh = g * (a * cdf);
        *da = (g * h) * gelu_derivative_from_cdf(a, cdf);
    }
}

/// `out[r, j] = x[r, j]·gelu(x[r, inner + j])` for `x` `[rows, 2·inner]` and `out` `[rows, inner]`, row-major.
pub fn geglu_forward(rows: usize, inner: usize, x: &[f32], out: &mut [f32]) -> Result<()> {
    const OP: &str = "geglu_forward";
    let (input, output) = lengths(OP, rows, inner)?;
    check_len(OP, "x", x.len(), input)?;
    check_len(OP, "out", out.len(), output)?;
    if output == 0 {
        return Ok(());
    }
    out.par_chunks_mut(inner)
        .zip(x.par_chunks(2 * inner))
        .with_min_len((ELEMENTS_PER_TASK / inner).max(1))
        .for_each(|(out, x)| dispatch!(forward_row(x: &[f32], out: &mut [f32])));
    Ok(())
}

/// The gradient of [`geglu_forward`] with respect to `x` (`[rows, 2·inner]`, overwritten) from the input and the
/// output gradient `grad_out` (`[rows, inner]`).
pub fn geglu_backward(
    rows: usize,
    inner: usize,
    x: &[f32],
    grad_out: &[f32],
    grad_x: &mut [f32],
) -> Result<()> {
    const OP: &str = "geglu_backward";
    let (input, output) = lengths(OP, rows, inner)?;
    check_len(OP, "x", x.len(), input)?;
    check_len(OP, "grad_out", grad_out.len(), output)?;
    check_len(OP, "grad_x", grad_x.len(), input)?;
    if output == 0 {
        return Ok(());
    }
    grad_x
        .par_chunks_mut(2 * inner)
        .zip(x.par_chunks(2 * inner).zip(grad_out.par_chunks(inner)))
        .with_min_len((ELEMENTS_PER_TASK / inner).max(1))
        .for_each(|(dx, (x, g))| dispatch!(backward_row(x: &[f32], g: &[f32], dx: &mut [f32])));
    Ok(())
}
