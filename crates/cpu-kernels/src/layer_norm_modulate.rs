//! Layer normalisation fused with the adaptive modulation of a DiT block (adaLN, Peebles & Xie 2023): each token of
//! `x [batch, tokens, dim]` is normalised over `dim` without an affine of its own, then scaled and shifted by its
//! sample's conditioning, `scale, shift [batch, dim]`.
//!
//! Forward, per token row `x` of sample `n`: `mean`, `rstd = 1/sqrt(var + eps)` (biased variance, as PyTorch),
//! `x̂ = (x − mean)·rstd`, `y = x̂·(1 + scale[n]) + shift[n]`. `mean` and `rstd` (`[batch·tokens]`) are kept for the
//! backward pass. Unfused, this is a layer norm, a broadcast multiply and a broadcast add: three passes over the
//! activations and two intermediates the size of `x`; fused, it is one read of `x` and one write of `y`.
//!
//! Backward, with `g = ∂L/∂y` and the per-sample gain `a = 1 + scale[n]`: the layer norm's rule with `a` in place of
//! γ, `∂L/∂x = rstd·(a∘g − mean(a∘g) − x̂·mean(a∘g∘x̂))` (means over `dim`), and per sample and feature
//! `∂L/∂scale[n] = Σ_tokens g∘x̂`, `∂L/∂shift[n] = Σ_tokens g`.
//!
//! Loop structure. Forward: rows are independent; rayon hands out runs of rows, each row one pass for its moments
//! (`moments.rs`, f64 accumulators) and one to write. Backward: the tokens of each sample are cut into fixed blocks of
//! `TOKENS_PER_TASK`; a task owns one block, writes its rows of `∂x` and sums its `[Σ g ; Σ g∘x̂]` into a partial of
//! `2·dim` f64 values. The partials of a sample are then added in block order, so the result does not depend on the
//! thread count. Row bodies run in their AVX2 + FMA build when the CPU has it (`dispatch.rs`).

use rayon::prelude::*;

use crate::dispatch::dispatch;
use crate::error::{check_len, KernelError, Result};
use crate::moments::{mean_rstd, sum2_f64, sum3_f64};

/// Tokens per parallel task of the backward pass (and the granularity of its `∂scale`/`∂shift` partial sums).
const TOKENS_PER_TASK: usize = 16;

/// The shape of a modulated layer norm: `x [batch, tokens, dim]` normalised over `dim`, conditioned per sample.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ModulateShape {
    pub batch: usize,
    pub tokens: usize,
    pub dim: usize,
    pub eps: f32,
}

impl ModulateShape {
    /// Checks the shape; returns (elements of `x`, rows = batch·tokens, elements of `scale`).
    fn validate(&self, op: &'static str) -> Result<(usize, usize, usize)> {
        if self.dim == 0 {
            return Err(KernelError::new(op, "dim is 0: every row would be empty"));
        }
        if !(self.eps >= 0.0 && self.eps.is_finite()) {
            return Err(KernelError::new(
                op,
                format!("eps {} must be finite and ≥ 0", self.eps),
            ));
        }
        let overflow = || KernelError::new(op, format!("shape {self:?} overflows usize"));
        let rows = self.batch.checked_mul(self.tokens).ok_or_else(overflow)?;
        let len = rows.checked_mul(self.dim).ok_or_else(overflow)?;
        let cond = self.batch.checked_mul(self.dim).ok_or_else(overflow)?;
        Ok((len, rows, cond))
    }
}

/// `y = LayerNorm(x)·(1 + scale[n]) + shift[n]` for every token of every sample `n`, saving each row's `mean` and
/// `rstd` for the backward pass.
#[allow(clippy::too_many_arguments)] // the fixed kernel signature shared with the CUDA crate
pub fn layer_norm_modulate_forward(
    s: &ModulateShape,
    x: &[f32],
    scale: &[f32],
    shift: &[f32],
    y: &mut [f32],
    mean: &mut [f32],
    rstd: &mut [f32],
) -> Result<()> {
    const OP: &str = "layer_norm_modulate_forward";
    let (len, rows, cond) = s.validate(OP)?;
    check_len(OP, "x", x.len(), len)?;
    check_len(OP, "y", y.len(), len)?;
    check_len(OP, "scale", scale.len(), cond)?;
    check_len(OP, "shift", shift.len(), cond)?;
    check_len(OP, "mean", mean.len(), rows)?;
    check_len(OP, "rstd", rstd.len(), rows)?;

    let (d, tokens) = (s.dim, s.tokens);
    y.par_chunks_mut(d)
        .zip(x.par_chunks(d))
        .zip(mean.par_iter_mut().zip(rstd.par_iter_mut()))
        .enumerate()
        .with_min_len((4096 / d).max(1))
        .for_each(|(row, ((y, x), (mean, rstd)))| {
            let n = row / tokens;
            let (scale, shift) = (&scale[n * d..(n + 1) * d], &shift[n * d..(n + 1) * d]);
            let eps = s.eps;
            dispatch!(modulate_row(
                eps: f32,
                x: &[f32],
                scale: &[f32],
                shift: &[f32],
                y: &mut [f32],
                mean: &mut f32,
                rstd: &mut f32,
            ))
        });
    Ok(())
}

/// Gradients of [`layer_norm_modulate_forward`] with respect to `x`, `scale` and `shift` (all overwritten), from the
/// saved `mean` and `rstd`.
#[allow(clippy::too_many_arguments)] // the fixed kernel signature shared with the CUDA crate
pub fn layer_norm_modulate_backward(
    s: &ModulateShape,
    x: &[f32],
    scale: &[f32],
    mean: &[f32],
    rstd: &[f32],
    grad_y: &[f32],
    grad_x: &mut [f32],
    grad_scale: &mut [f32],
    grad_shift: &mut [f32],
) -> Result<()> {
    const OP: &str = "layer_norm_modulate_backward";
    let (len, rows, cond) = s.validate(OP)?;
    check_len(OP, "x", x.len(), len)?;
    check_len(OP, "grad_y", grad_y.len(), len)?;
    check_len(OP, "grad_x", grad_x.len(), len)?;
    check_len(OP, "scale", scale.len(), cond)?;
    check_len(OP, "grad_scale", grad_scale.len(), cond)?;
    check_len(OP, "grad_shift", grad_shift.len(), cond)?;
    check_len(OP, "mean", mean.len(), rows)?;
    check_len(OP, "rstd", rstd.len(), rows)?;
    if rows == 0 {
        grad_scale.fill(0.0);
        grad_shift.fill(0.0);
        return Ok(());
    }

    let (d, tokens) = (s.dim, s.tokens);
    let blocks = tokens.div_ceil(TOKENS_PER_TASK);
    let block_len = TOKENS_PER_TASK * d;
    // Per sample and block: [Σ g ; Σ g∘x̂] over the block's tokens, 2·dim values.
    let mut partial = vec![0.0f64; s.batch * blocks * 2 * d];
    let sample_len = tokens * d;
    grad_x
        .par_chunks_mut(sample_len)
        .zip(x.par_chunks(sample_len).zip(grad_y.par_chunks(sample_len)))
        .zip(partial.par_chunks_mut(blocks * 2 * d))
        .enumerate()
        .for_each(|(n, ((grad_x, (x, grad_y)), partial))| {
            let gain: Vec<f32> = scale[n * d..(n + 1) * d].iter().map(|&v| 1.0 + v).collect();
            grad_x
                .par_chunks_mut(block_len)
                .zip(x.par_chunks(block_len).zip(grad_y.par_chunks(block_len)))
                .zip(partial.par_chunks_mut(2 * d))
                .enumerate()
                .for_each(|(block, ((grad_x, (x, grad_y)), partial))| {
                    let first = n * tokens + block * TOKENS_PER_TASK;
                    let rows = first..first + x.len() / d;
                    let (mean, rstd) = (&mean[rows.clone()], &rstd[rows]);
                    let gain = &gain[..];
                    dispatch!(rows_backward(
                        d: usize,
                        x: &[f32],
                        gain: &[f32],
                        mean: &[f32],
                        rstd: &[f32],
                        grad_y: &[f32],
                        grad_x: &mut [f32],
                        partial: &mut [f64],
                    ))
                });
        });

    grad_scale
        .par_chunks_mut(d)
        .zip(grad_shift.par_chunks_mut(d))
        .zip(partial.par_chunks(blocks * 2 * d))
        .for_each(|((grad_scale, grad_shift), partial)| {
            let (mut sum_g, mut sum_g_xhat) = (vec![0.0f64; d], vec![0.0f64; d]);
            for block in partial.chunks_exact(2 * d) {
                for j in 0..d {
                    sum_g[j] += block[j];
                    sum_g_xhat[j] += block[d + j];
                }
            }
            for j in 0..d {
                grad_shift[j] = sum_g[j] as f32;
                grad_scale[j] = sum_g_xhat[j] as f32;
            }
        });
    Ok(())
}

/// Forward of one row: its moments, then `y = (x − mean)·rstd·(1 + scale) + shift`.
#[inline(always)]
fn modulate_row(
    eps: f32,
    x: &[f32],
    scale: &[f32],
    shift: &[f32],
    y: &mut [f32],
    mean: &mut f32,
    rstd: &mut f32,
) {
    let (mu, r) = mean_rstd(x, eps);
    *mean = mu;
    *rstd = r;
    for (((y, &x), &s), &b) in y.iter_mut().zip(x).zip(scale).zip(shift) {
        *y = (x - mu) * r * (1.0 + s) + b;
    }
}

/// Backward of a block of rows (`d` features each) of one sample with gain `1 + scale`: writes their `grad_x` and
/// adds the block's `Σ g` and `Σ g∘x̂` into `partial` (`[Σ g ; Σ g∘x̂]`, `2·d` values, zero on entry).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn rows_backward(
    d: usize,
    x: &[f32],
    gain: &[f32],
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
        // mean(a∘g) and mean(a∘g∘x̂) in f64, x̂ formed from the centred input so the mean's rounding enters once.
        let mean_dxhat = sum2_f64(gy, gain, |g, a| g * a) / d as f64;
        let sum_dxhat_centred = sum3_f64(gy, gain, x, |g, a, x| g * a * (x - mu64));
        let mean_dxhat_xhat = sum_dxhat_centred * r64 / d as f64;
        let (mean_dxhat, mean_dxhat_xhat) = (mean_dxhat as f32, mean_dxhat_xhat as f32);
        for j in 0..d {
            let xhat = (x[j] - mu) * r;
            gx[j] = r * (gain[j] * gy[j] - mean_dxhat - xhat * mean_dxhat_xhat);
            sum_g[j] += f64::from(gy[j]);
            sum_g_xhat[j] += f64::from(gy[j]) * (f64::from(x[j]) - mu64) * r64;
        }
    }
}
