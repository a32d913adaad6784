//! Row softmax and log-softmax over the last dimension of a `[rows, cols]` matrix, and their backward passes.
//!
//! Forward, per row: `m = max_j x_j`, `s = Σ_j exp(x_j − m)`; softmax `y_j = exp(x_j − m) / s`, log-softmax
//! `y_j = (x_j − m) − ln s`. Subtracting the maximum keeps every exponent ≤ 0, so nothing overflows.
//! Backward, per row with `g = ∂L/∂y`: softmax `∂L/∂x_j = y_j (g_j − Σ_k g_k y_k)`; log-softmax
//! `∂L/∂x_j = g_j − exp(y_j) Σ_k g_k`. Rows are independent: rayon splits the matrix by rows.
//! A row whose entries are all −∞ has no distribution; its softmax is written as 0 (log-softmax −∞), not NaN.
//! `exp` is the vectorisable [`crate::math::exp`] (≤ 2 ulp), so the element loops vectorise.

use rayon::prelude::*;

use crate::error::{check_len, KernelError, Result};
use crate::math::exp;

/// Rows per rayon task: enough work per task for short rows, and still many tasks for a few long ones.
fn rows_per_task(cols: usize) -> usize {
    (16_384 / cols.max(1)).max(1)
}

fn check_shape(op: &'static str, rows: usize, cols: usize, slices: &[(&str, usize)]) -> Result<()> {
    let expected = rows.checked_mul(cols).ok_or_else(|| {
        KernelError::new(op, format!("rows {rows} × cols {cols} overflows usize"))
    })?;
    for &(name, len) in slices {
        check_len(op, name, len, expected)?;
    }
    Ok(())
}

/// Applies `row_op(input_row, output_row)` to every row in parallel.
fn for_each_row(
    cols: usize,
    input: &[f32],
    output: &mut [f32],
    row_op: impl Fn(&[f32], &mut [f32]) + Sync,
) {
    if cols == 0 {
        return;
    }
    let task = rows_per_task(cols) * cols;
    output
        .par_chunks_mut(task)
        .zip(input.par_chunks(task))
        .for_each(|(out, inp)| {
            for (y, x) in out.chunks_exact_mut(cols).zip(inp.chunks_exact(cols)) {
                row_op(x, y);
            }
        });
}

/// The row maximum and `Σ exp(x − max)`; the maximum is −∞ (and the sum 0) for a row of −∞.
fn max_and_sum(x: &[f32]) -> (f32, f32) {
    let m = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if m == f32::NEG_INFINITY {
        return (m, 0.0);
    }
    (m, x.iter().map(|&v| exp(v - m)).sum())
}

/// `y = softmax(x)` over each row of `[rows, cols]`.
pub fn softmax(rows: usize, cols: usize, x: &[f32], y: &mut [f32]) -> Result<()> {
    check_shape("softmax", rows, cols, &[("x", x.len()), ("y", y.len())])?;
    for_each_row(cols, x, y, |x, y| {
        let (m, s) = max_and_sum(x);
        let inv = if s > 0.0 { 1.0 / s } else { 0.0 };
        for (yj, &xj) in y.iter_mut().zip(x) {
            *yj = if s > 0.0 { exp(xj - m) * inv } else { 0.0 };
        }
    });
    Ok(())
}

/// `y = log_softmax(x)` over each row of `[rows, cols]`.
pub fn log_softmax(rows: usize, cols: usize, x: &[f32], y: &mut [f32]) -> Result<()> {
    check_shape("log_softmax", rows, cols, &[("x", x.len()), ("y", y.len())])?;
    for_each_row(cols, x, y, |x, y| {
        let (m, s) = max_and_sum(x);
        // (x − m) − ln s rather than x − (m + ln s): the shifted value is exact near the maximum, where it matters.
        let ln_s = if s > 0.0 { s.ln() } else { 0.0 };
        for (yj, &xj) in y.iter_mut().zip(x) {
            *yj = if s > 0.0 {
                (xj - m) - ln_s
            } else {
                f32::NEG_INFINITY
            };
        }
    });
    Ok(())
}

/// Applies `row_op(y_row, grad_y_row, grad_x_row)` to every row in parallel.
fn for_each_row_backward(
    cols: usize,
    y: &[f32],
    grad_y: &[f32],
    grad_x: &mut [f32],
    row_op: impl Fn(&[f32], &[f32], &mut [f32]) + Sync,
) {
    if cols == 0 {
        return;
    }
    let task = rows_per_task(cols) * cols;
    grad_x
        .par_chunks_mut(task)
        .zip(y.par_chunks(task).zip(grad_y.par_chunks(task)))
        .for_each(|(gx, (y, gy))| {
            for ((gx, y), gy) in gx
                .chunks_exact_mut(cols)
                .zip(y.chunks_exact(cols))
                .zip(gy.chunks_exact(cols))
            {
                row_op(y, gy, gx);
            }
        });
}

/// `grad_x = y ∘ (grad_y − ⟨grad_y, y⟩)` per row, from the softmax output `y` (overwrites `grad_x`).
pub fn softmax_backward(
    rows: usize,
    cols: usize,
    y: &[f32],
    grad_y: &[f32],
    grad_x: &mut [f32],
) -> Result<()> {
    check_shape(
        "softmax_backward",
        rows,
        cols,
        &[
            ("y", y.len()),
            ("grad_y", grad_y.len()),
            ("grad_x", grad_x.len()),
        ],
    )?;
    for_each_row_backward(cols, y, grad_y, grad_x, |y, gy, gx| {
        let dot: f32 = y.iter().zip(gy).map(|(&a, &b)| a * b).sum();
        for ((gxj, &yj), &gyj) in gx.iter_mut().zip(y).zip(gy) {
            *gxj = yj * (gyj - dot);
        }
    });
    Ok(())
}

/// `grad_x = grad_y − exp(y) Σ grad_y` per row, from the log-softmax output `y` (overwrites `grad_x`).
pub fn log_softmax_backward(
    rows: usize,
    cols: usize,
    y: &[f32],
    grad_y: &[f32],
    grad_x: &mut [f32],
) -> Result<()> {
    check_shape(
        "log_softmax_backward",
        rows,
        cols,
        &[
            ("y", y.len()),
            ("grad_y", grad_y.len()),
            ("grad_x", grad_x.len()),
        ],
    )?;
    for_each_row_backward(cols, y, grad_y, grad_x, |y, gy, gx| {
        let total: f32 = gy.iter().sum();
        for ((gxj, &yj), &gyj) in gx.iter_mut().zip(y).zip(gy) {
            *gxj = gyj - exp(yj) * total;
        }
    });
    Ok(())
}
