//! Group normalisation followed by SiLU in one kernel, forward and backward: `y = silu(z)`, `z = x̂·γ[c] + β[c]`,
//! over `x [N, C, S]` in `G` groups (the pre-activation of every residual block of a U-Net).
//!
//! Forward, per group `(n, g)` of `M = (C/G)·S` values: `mean`, `rstd` as [`crate::group_norm`], then in the same
//! pass over the group `z = (x − mean)·(rstd·γ[c]) + β[c]` and `y = z·σ(z)`. Only `x`, `mean` and `rstd` are needed
//! afterwards: the separate ops also keep `z` for SiLU's backward, a whole activation more.
//!
//! Backward, with `g = ∂L/∂y`: SiLU's rule gives `∂L/∂z = g·σ(z)·(1 + z·(1 − σ(z)))`, recomputed from the saved `x`,
//! `mean`, `rstd` and `γ, β`, then group norm's rule on `∂L/∂z`: `∂L/∂x = rstd·(γ[c]·∂z − mean(γ·∂z) −
//! x̂·mean(γ·∂z·x̂))`, `∂L/∂γ[c] = Σ_{n,s} ∂z·x̂`, `∂L/∂β[c] = Σ_{n,s} ∂z`.
//!
//! Loop structure: rayon hands out groups (a group is contiguous). Backward pass 1 runs channel by channel through
//! the group, writes `∂z` into `grad_x` and sums `Σ ∂z`, `Σ ∂z·x̂` over the channel in f64 lanes while the channel is
//! in L1; pass 2 turns `grad_x` into `∂L/∂x` in place. Each group task writes its per-(n, c) partial sums and a
//! fixed-order sum over `n` finishes γ and β, so the result does not depend on the thread count.
//!
//! What the fusion saves, in whole-tensor transfers to and from memory (a group, at most a few tens of KB, stays in
//! cache between the passes over it): the separate ops read `x` and write `z` (group norm), read `z` and write `y`
//! (SiLU) forward, 4 transfers and 2 new tensors, and keep both `x` and `z` for backward; backward they read `z`, `g`
//! and write `∂z` (SiLU), read `x`, `∂z` and write `∂x` (group norm), 6 transfers and 2 new tensors. This kernel
//! reads `x` and writes `y` forward (2 transfers, 1 tensor, only `x` kept) and reads `x`, `g` and writes `∂x`
//! backward (3 transfers, 1 tensor).

use rayon::prelude::*;

use crate::dispatch::dispatch;
use crate::elementwise::sigmoid;
use crate::error::{check_len, Result};
use crate::group_norm::{groups_per_task, normalised, sum_over_batch, GroupNormShape};
use crate::moments::{mean_rstd, sum2_f64, sum_f64};

/// `silu(group_norm(x))` into `y`, saving each group's `mean` and `rstd` (both `[N·G]`) for the backward pass.
pub fn group_norm_silu_forward(
    s: &GroupNormShape,
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    y: &mut [f32],
    mean: &mut [f32],
    rstd: &mut [f32],
) -> Result<()> {
    const OP: &str = "group_norm_silu_forward";
    let len = s.validate(OP)?;
    check_len(OP, "x", x.len(), len)?;
    check_len(OP, "y", y.len(), len)?;
    check_len(OP, "gamma", gamma.len(), s.channels)?;
    check_len(OP, "beta", beta.len(), s.channels)?;
    check_len(OP, "mean", mean.len(), s.batch * s.groups)?;
    check_len(OP, "rstd", rstd.len(), s.batch * s.groups)?;

    let m = s.group_len();
    y.par_chunks_mut(m)
        .zip(x.par_chunks(m))
        .zip(mean.par_iter_mut().zip(rstd.par_iter_mut()))
        .enumerate()
        .with_min_len(groups_per_task(m))
        .for_each(|(ng, ((y, x), (mean, rstd)))| {
            dispatch!(forward_group(
                s: &GroupNormShape,
                ng: usize,
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

/// Gradients of [`group_norm_silu_forward`] with respect to `x`, `gamma` and `beta` (all overwritten), from the
/// input, the affine parameters and the saved `mean`/`rstd`.
#[allow(clippy::too_many_arguments)] // the fixed kernel signature shared with the CUDA crate
pub fn group_norm_silu_backward(
    s: &GroupNormShape,
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    mean: &[f32],
    rstd: &[f32],
    grad_y: &[f32],
    grad_x: &mut [f32],
    grad_gamma: &mut [f32],
    grad_beta: &mut [f32],
) -> Result<()> {
    const OP: &str = "group_norm_silu_backward";
    let len = s.validate(OP)?;
    check_len(OP, "x", x.len(), len)?;
    check_len(OP, "grad_y", grad_y.len(), len)?;
    check_len(OP, "grad_x", grad_x.len(), len)?;
    check_len(OP, "gamma", gamma.len(), s.channels)?;
    check_len(OP, "beta", beta.len(), s.channels)?;
    check_len(OP, "grad_gamma", grad_gamma.len(), s.channels)?;
    check_len(OP, "grad_beta", grad_beta.len(), s.channels)?;
    check_len(OP, "mean", mean.len(), s.batch * s.groups)?;
    check_len(OP, "rstd", rstd.len(), s.batch * s.groups)?;

    let (cpg, m) = (s.channels_per_group(), s.group_len());
    // Per (n, c): Σ_s ∂z and Σ_s ∂z·x̂, laid out [N, C] = [N·G, C/G] so each group task owns a contiguous piece.
    let mut sum_g = vec![0.0f64; s.batch * s.channels];
    let mut sum_g_xhat = vec![0.0f64; s.batch * s.channels];
    grad_x
        .par_chunks_mut(m)
        .zip(x.par_chunks(m).zip(grad_y.par_chunks(m)))
        .zip(
            sum_g
                .par_chunks_mut(cpg)
                .zip(sum_g_xhat.par_chunks_mut(cpg)),
        )
        .enumerate()
        .with_min_len(groups_per_task(m))
        .for_each(|(ng, ((grad_x, (x, grad_y)), (sum_g, sum_g_xhat)))| {
            let (mean, rstd) = (mean[ng], rstd[ng]);
            dispatch!(backward_group(
                s: &GroupNormShape,
                ng: usize,
                x: &[f32],
                gamma: &[f32],
                beta: &[f32],
                mean: f32,
                rstd: f32,
                grad_y: &[f32],
                grad_x: &mut [f32],
                sum_g: &mut [f64],
                sum_g_xhat: &mut [f64],
            ))
        });

    sum_over_batch(s, &sum_g, &sum_g_xhat, grad_gamma, grad_beta);
    Ok(())
}

/// Forward of group `ng`: its moments, then `y = silu((x − mean)·(rstd·γ[c]) + β[c])` channel by channel.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn forward_group(
    s: &GroupNormShape,
    ng: usize,
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
    let first_channel = (ng % s.groups) * s.channels_per_group();
    for (c, (y, x)) in y
        .chunks_exact_mut(s.spatial)
        .zip(x.chunks_exact(s.spatial))
        .enumerate()
    {
        let (a, b) = (r * gamma[first_channel + c], beta[first_channel + c]);
        for (y, &x) in y.iter_mut().zip(x) {
            let z = normalised(x, mu, a, b);
            *y = z * sigmoid(z);
        }
    }
}

/// Backward of group `ng`: `∂z` into `grad_x` with its channel sums, then `grad_x` in place.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn backward_group(
    s: &GroupNormShape,
    ng: usize,
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    mean: f32,
    rstd: f32,
    grad_y: &[f32],
    grad_x: &mut [f32],
    sum_g: &mut [f64],
    sum_g_xhat: &mut [f64],
) {
    let (cpg, m) = (s.channels_per_group(), s.group_len());
    let (mu, r) = (f64::from(mean), f64::from(rstd));
    let first_channel = (ng % s.groups) * cpg;
    let (mut sum_dxhat, mut sum_dxhat_xhat) = (0.0f64, 0.0f64);
    for (c, (gz, (x, gy))) in grad_x
        .chunks_exact_mut(s.spatial)
        .zip(
            x.chunks_exact(s.spatial)
                .zip(grad_y.chunks_exact(s.spatial)),
        )
        .enumerate()
    {
        let (a, b) = (rstd * gamma[first_channel + c], beta[first_channel + c]);
        for ((gz, &x), &gy) in gz.iter_mut().zip(x).zip(gy) {
            let z = normalised(x, mean, a, b);
            let sig = sigmoid(z);
            *gz = gy * sig * (1.0 + z * (1.0 - sig));
        }
        sum_g[c] = sum_f64(gz, |g| g);
        sum_g_xhat[c] = sum2_f64(gz, x, |g, x| g * (x - mu)) * r;
        let gamma_c = f64::from(gamma[first_channel + c]);
        sum_dxhat += gamma_c * sum_g[c];
        sum_dxhat_xhat += gamma_c * sum_g_xhat[c];
    }
    let (mean_dxhat, mean_dxhat_xhat) = (
        (sum_dxhat / m as f64) as f32,
        (sum_dxhat_xhat / m as f64) as f32,
    );
    for (c, (gx, x)) in grad_x
        .chunks_exact_mut(s.spatial)
        .zip(x.chunks_exact(s.spatial))
        .enumerate()
    {
        let gamma_c = gamma[first_channel + c];
        for (gx, &x) in gx.iter_mut().zip(x) {
            let xhat = (x - mean) * rstd;
            *gx = rstd * (gamma_c * *gx - mean_dxhat - xhat * mean_dxhat_xhat);
        }
    }
}
