//! Layer normalisation (Ba, Kiros & Hinton, 2016) over the last dimension of `x [rows, D]`.
//!
//! Forward, per row: `mean`, `rstd = 1/sqrt(var + eps)` (biased variance, as PyTorch), `x̂ = (x − mean)·rstd`,
//! `y = x̂·γ + β` with `γ, β [D]`. Rows are independent: rayon hands out blocks of rows.
//! Backward, with `g = ∂L/∂y`, per row: `∂L/∂x = rstd·(γ∘g − mean(γ∘g) − x̂·mean(γ∘g∘x̂))`; per feature
//! `∂L/∂γ = Σ_rows g∘x̂`, `∂L/∂β = Σ_rows g`. Each fixed block of `ROWS_PER_TASK` rows writes partial γ/β sums,
//! added in block order afterwards, so the result does not depend on the thread count. Row bodies run in their
//! AVX2 + FMA build when the CPU has it (`dispatch.rs`).

use rayon::prelude::*;

use crate::dispatch::dispatch;
use crate::error::{check_len, KernelError, Result};
use crate::moments::{mean_rstd, sum2_f64, sum3_f64};

/// Rows per parallel task of the backward pass (and the granularity of its γ/β partial sums).
const ROWS_PER_TASK: usize = 16;

/// The shape of a layer-norm call: `x [rows, dim]`, normalised over `dim`.
#[derive(Clone, Copy, Debug)]
pub struct LayerNormShape {
    pub rows: usize,
    pub dim: usize,
    pub eps: f32,
}

impl LayerNormShape {
    fn validate(&self, op: &'static str) -> Result<usize> {
        if self.dim == 0 {
            return Err(KernelError::new(op, "dim is 0: every row would be empty"));
        }
        if !(self.eps >= 0.0 && self.eps.is_finite()) {
            return Err(KernelError::new(
                op,
                format!("eps {} must be finite and ≥ 0", self.eps),
            ));
        }
        self.rows
            .checked_mul(self.dim)
            .ok_or_else(|| KernelError::new(op, format!("shape {self:?} overflows usize")))
    }
}

/// Normalises each row of `x` into `y` and saves its `mean` and `rstd` (both `[rows]`) for the backward pass.
pub fn layer_norm_forward(
    s: &LayerNormShape,
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    y: &mut [f32],
    mean: &mut [f32],
    rstd: &mut [f32],
) -> Result<()> {
    const OP: &str = "layer_norm_forward";
    let len = s.validate(OP)?;
    check_len(OP, "x", x.len(), len)?;
    check_len(OP, "y", y.len(), len)?;
    check_len(OP, "gamma", gamma.len(), s.dim)?;
    check_len(OP, "beta", beta.len(), s.dim)?;
    check_len(OP, "mean", mean.len(), s.rows)?;
    check_len(OP, "rstd", rstd.len(), s.rows)?;

    y.par_chunks_mut(s.dim)
        .zip(x.par_chunks(s.dim))
        .zip(mean.par_iter_mut().zip(rstd.par_iter_mut()))
        .with_min_len((4096 / s.dim).max(1))
        .for_each(|((y, x), (mean, rstd))| {
            dispatch!(normalise_row(
                s: &LayerNormShape,
                x: &[f32],
                gamma: &[f32],
                beta: &[f32],
                y: &mut [f32],
                mean: &mut f32,
                rstd: &mut f32,
            ))
        });
    Ok(())
}

/// Gradients of layer norm with respect to `x`, `gamma` and `beta` (all overwritten) from the saved `mean`/`rstd`.
#[allow(clippy::too_many_arguments)] // the fixed kernel signature shared with the CUDA crate
pub fn layer_norm_backward(
    s: &LayerNormShape,
    x: &[f32],
    gamma: &[f32],
    mean: &[f32],
    rstd: &[f32],
    grad_y: &[f32],
    grad_x: &mut [f32],
    grad_gamma: &mut [f32],
    grad_beta: &mut [f32],
) -> Result<()> {
    const OP: &str = "layer_norm_backward";
    let len = s.validate(OP)?;
    check_len(OP, "x", x.len(), len)?;
    check_len(OP, "grad_y", grad_y.len(), len)?;
    check_len(OP, "grad_x", grad_x.len(), len)?;
    check_len(OP, "gamma", gamma.len(), s.dim)?;
    check_len(OP, "grad_gamma", grad_gamma.len(), s.dim)?;
    check_len(OP, "grad_beta", grad_beta.len(), s.dim)?;
    check_len(OP, "mean", mean.len(), s.rows)?;
    check_len(OP, "rstd", rstd.len(), s.rows)?;

    let d = s.dim;
    let block = ROWS_PER_TASK * d;
    let tasks = s.rows.div_ceil(ROWS_PER_TASK);
    // Per task: [Σ g ; Σ g∘x̂] over its rows, 2·D values.
    let mut partial = vec![0.0f64; tasks * 2 * d];
    grad_x
        .par_chunks_mut(block)
        .zip(x.par_chunks(block).zip(grad_y.par_chunks(block)))
        .zip(partial.par_chunks_mut(2 * d))
        .enumerate()
        .for_each(|(task, ((grad_x, (x, grad_y)), partial))| {
            let rows = task * ROWS_PER_TASK..task * ROWS_PER_TASK + x.len() / d;
            let (mean, rstd) = (&mean[rows.clone()], &rstd[rows]);
            dispatch!(rows_backward(
                d: usize,
                x: &[f32],
                gamma: &[f32],
                mean: &[f32],
                rstd: &[f32],
                grad_y: &[f32],
                grad_x: &mut [f32],
                partial: &mut [f64],
            ))
        });

    let (mut beta_acc, mut gamma_acc) = (vec![0.0f64; d], vec![0.0f64; d]);
    for partial in partial.chunks_exact(2 * d) {
        for j in 0..d {
            beta_acc[j] += partial[j];
            gamma_acc[j] += partial[d + j];
        }
    }
    for j in 0..d {
        grad_beta[j] = beta_acc[j] as f32;
        grad_gamma[j] = gamma_acc[j] as f32;
    }
    Ok(())
}

/// Forward of one row: its moments, then `y = (x − mean)·rstd·γ + β`.
#[inline(always)]
fn normalise_row(
    s: &LayerNormShape,
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    y: &mut [f32],
    mean: &mut f32,
    rstd: &mut f32,
) {
    let (mu, r) = mean_rstd(x, s.eps);
    *mean = mu;
    *rstd = r;
    for (((y, &x), &g), &b) in y.iter_mut().zip(x).zip(gamma).zip(beta) {
        *y = (x - mu) * r * g + b;
    }
}

/// Backward of a block of rows (`d` features each): writes their `grad_x` and adds the block's `Σ g` and `Σ g∘x̂` into
/// `partial` (`[Σ g ; Σ g∘x̂]`, `2·d` values, zero on entry).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn rows_backward(
    d: usize,
    x: &[f32],
    gamma: &[f32],
    mean: &[f32],
    rstd: &[f32],
    grad_y: &[f32],
    grad_x: &mut [f32],
    partial: &mut [f64],
) {
    let (sum_g, sum_g_xhat) = partial.split_at_mut(d);
    let rows = grad_x
        .chunks_exact_mut(d)
        .zip(x.chunks_exact(d).zip(grad_y.chunks_exact(d)));
    for ((gx, (x, gy)), (&mu, &r)) in rows.zip(mean.iter().zip(rstd)) {
        let (mu64, r64) = (f64::from(mu), f64::from(r));
        let mean_dxhat = sum2_f64(gy, gamma, |g, w| g * w) / d as f64;
        let sum_dxhat_centred = sum3_f64(gy, gamma, x, |g, w, x| g * w * (x - mu64));
        let mean_dxhat_xhat = sum_dxhat_centred * r64 / d as f64;
        let (mean_dxhat, mean_dxhat_xhat) = (mean_dxhat as f32, mean_dxhat_xhat as f32);
        for j in 0..d {
            let xhat = (x[j] - mu) * r;
            gx[j] = r * (gamma[j] * gy[j] - mean_dxhat - xhat * mean_dxhat_xhat);
            sum_g[j] += f64::from(gy[j]);
            sum_g_xhat[j] += f64::from(gy[j]) * (f64::from(x[j]) - mu64) * r64;
        }
    }
}
