//! Reductions over the last dimension of a contiguous `[rows, n]` buffer: sum, max, min, argmax.
//!
//! The tensor layer brings any set of reduced axes to the back and makes them contiguous, so one row kernel serves
//! every axis, and [`sum_columns`] sums over leading axes in place. Sums accumulate in f64: a row of n f32 values then carries no accumulated rounding beyond the final
//! conversion, which keeps `mean` of a million elements exact to one f32 ulp. Rows are split across rayon.

use crate::dispatch::dispatch;
use crate::error::{KernelError, Result};
use rayon::prelude::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReduceOp {
    Sum,
    Max,
    Min,
    /// Index of the first maximum, written as an f32 (exact for rows shorter than 2^24).
    ArgMax,
}

/// `out[r] = op(src[r·n .. (r+1)·n])` for every row r. A row of length 0 reduces to 0 for `Sum` and is an error for
/// the others (there is no maximum of nothing).
pub fn reduce_rows(
    op: ReduceOp,
    rows: usize,
    n: usize,
    src: &[f32],
    out: &mut [f32],
) -> Result<()> {
    let expected = rows
        .checked_mul(n)
        .ok_or_else(|| KernelError::new("reduce", "rows × n overflows usize"))?;
    crate::error::check_len("reduce", "source", src.len(), expected)?;
    crate::error::check_len("reduce", "output", out.len(), rows)?;
    if n == 0 {
        if op != ReduceOp::Sum && rows > 0 {
            return Err(KernelError::new(
                "reduce",
                format!("{op:?} of an empty dimension has no value"),
            ));
        }
        out.fill(0.0);
        return Ok(());
    }
    if op == ReduceOp::ArgMax && n > 1 << 24 {
        return Err(KernelError::new(
            "reduce",
            format!("argmax over {n} elements: indices above 2^24 are not exact in f32"),
        ));
    }
    out.par_iter_mut()
        .with_min_len((1 << 14) / n + 1)
        .enumerate()
        .for_each(|(r, o)| {
            let row = &src[r * n..(r + 1) * n];
            *o = match op {
                ReduceOp::Sum => row.iter().map(|&x| f64::from(x)).sum::<f64>() as f32,
                ReduceOp::Max => row.iter().copied().fold(f32::NEG_INFINITY, nan_max),
                ReduceOp::Min => row
                    .iter()
                    .copied()
                    .fold(f32::INFINITY, |a, b| -nan_max(-a, -b)),
                ReduceOp::ArgMax => {
                    let mut best = 0;
                    for (j, &x) in row.iter().enumerate() {
                        if x > row[best] || (x.is_nan() && !row[best].is_nan()) {
                            best = j;
                        }
                    }
                    best as f32
                }
            };
        });
    Ok(())
}

/// Columns per task of [`sum_columns`]: 64 f64 accumulators (512 bytes) stay in registers and L1 while the task
/// walks every row.
const SUM_COLUMNS_WIDTH: usize = 64;

/// `out[c] = Σ_r src[r·n + c]` for every column c of a contiguous `[rows, n]` buffer: a sum over leading axes (a bias
/// gradient sums `[tokens, features]` over the tokens) read in place, where [`reduce_rows`] would need the transpose
/// copied out first. Each column accumulates in f64 over the rows in ascending order, the order `reduce_rows` sums a
/// row of the transpose, so the two agree bit for bit. Tasks own [`SUM_COLUMNS_WIDTH`] adjacent columns and walk all
/// the rows, reading each row's slice of them contiguously.
pub fn sum_columns(rows: usize, n: usize, src: &[f32], out: &mut [f32]) -> Result<()> {
    let expected = rows
        .checked_mul(n)
        .ok_or_else(|| KernelError::new("sum_columns", "rows × n overflows usize"))?;
    crate::error::check_len("sum_columns", "source", src.len(), expected)?;
    crate::error::check_len("sum_columns", "output", out.len(), n)?;
    let tasks_min = (1 << 14) / (rows.max(1) * SUM_COLUMNS_WIDTH) + 1;
    out.par_chunks_mut(SUM_COLUMNS_WIDTH)
        .with_min_len(tasks_min)
        .enumerate()
        .for_each(|(chunk, out)| {
            let first = chunk * SUM_COLUMNS_WIDTH;
            dispatch!(sum_column_block(rows: usize, n: usize, first: usize, src: &[f32], out: &mut [f32]));
        });
    Ok(())
}

/// Columns `first..first + out.len()` of [`sum_columns`].
#[inline(always)]
fn sum_column_block(rows: usize, n: usize, first: usize, src: &[f32], out: &mut [f32]) {
    let width = out.len();
    let mut acc = [0.0f64; SUM_COLUMNS_WIDTH];
    let acc = &mut acc[..width];
    for r in 0..rows {
        let row = &src[r * n + first..r * n + first + width];
        for (a, &x) in acc.iter_mut().zip(row) {
            *a += f64::from(x);
        }
    }
    for (o, &a) in out.iter_mut().zip(acc.iter()) {
        *o = a as f32;
    }
}

/// max that propagates NaN (as PyTorch's `max` does), unlike `f32::max`.
#[inline]
fn nan_max(a: f32, b: f32) -> f32 {
    if a.is_nan() || b.is_nan() {
        f32::NAN
    } else {
        a.max(b)
    }
}
