//! Group normalisation (Wu & He, 2018) of `x [N, C, S]` (S = H·W) with `G` groups of `C/G` consecutive channels.
//!
//! Forward, per group `(n, g)` of `M = (C/G)·S` values: `mean`, `rstd = 1/sqrt(var + eps)` (biased variance, as
//! PyTorch), `x̂ = (x − mean)·rstd`, `y = x̂·γ[c] + β[c]`. A group is contiguous in memory, so rayon hands out groups.
//! Backward, with `g = ∂L/∂y`, per group: `∂L/∂x = rstd·(γ[c]·g − mean(γ·g) − x̂·mean(γ·g·x̂))`; per channel
//! `∂L/∂γ[c] = Σ_{n,s} g·x̂`, `∂L/∂β[c] = Σ_{n,s} g`. Each group task writes its per-(n, c) partial sums of `g` and
//! `g·x̂`; a fixed-order sum over `n` finishes γ and β, so the result does not depend on the thread count.
//! The per-group bodies run in their AVX2 + FMA build when the CPU has it (`dispatch.rs`); moments accumulate in
//! f64 lanes (`moments.rs`).

use rayon::prelude::*;

use crate::dispatch::dispatch;
use crate::error::{check_len, KernelError, Result};
use crate::moments::{mean_rstd, sum2_f64, sum_f64};

/// The shape of a group-norm call: `x [batch, channels, spatial]`, `groups` dividing `channels`.
#[derive(Clone, Copy, Debug)]
pub struct GroupNormShape {
    pub batch: usize,
    pub channels: usize,
    pub spatial: usize,
    pub groups: usize,
    pub eps: f32,
}

impl GroupNormShape {
    pub(crate) fn channels_per_group(&self) -> usize {
        self.channels / self.groups
    }

    pub(crate) fn group_len(&self) -> usize {
        self.channels_per_group() * self.spatial
    }

    pub(crate) fn validate(&self, op: &'static str) -> Result<usize> {
        let fail = |message: String| Err(KernelError::new(op, message));
        if self.groups == 0 || self.channels == 0 || !self.channels.is_multiple_of(self.groups) {
            return fail(format!(
                "groups {} must be ≥ 1 and divide channels {} (≥ 1)",
                self.groups, self.channels
            ));
        }
        if self.spatial == 0 {
            return fail("spatial size is 0: every group would be empty".into());
        }
        if !(self.eps >= 0.0 && self.eps.is_finite()) {
            return fail(format!("eps {} must be finite and ≥ 0", self.eps));
        }
        self.batch
            .checked_mul(self.channels)
            .and_then(|v| v.checked_mul(self.spatial))
            .ok_or_else(|| KernelError::new(op, format!("shape {self:?} overflows usize")))
    }
}

/// Groups per rayon task: small groups are batched so a task has a few thousand values.
pub(crate) fn groups_per_task(group_len: usize) -> usize {
    (4096 / group_len).max(1)
}

/// Normalises `x` into `y` and saves each group's `mean` and `rstd` (both `[N·G]`) for the backward pass.
pub fn group_norm_forward(
    s: &GroupNormShape,
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    y: &mut [f32],
    mean: &mut [f32],
    rstd: &mut [f32],
) -> Result<()> {
    const OP: &str = "group_norm_forward";
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
            dispatch!(normalise_group(
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

/// Gradients of group norm with respect to `x`, `gamma` and `beta` (all overwritten) from the saved `mean`/`rstd`.
#[allow(clippy::too_many_arguments)] // the fixed kernel signature shared with the CUDA crate
pub fn group_norm_backward(
    s: &GroupNormShape,
    x: &[f32],
    gamma: &[f32],
    mean: &[f32],
    rstd: &[f32],
    grad_y: &[f32],
    grad_x: &mut [f32],
    grad_gamma: &mut [f32],
    grad_beta: &mut [f32],
) -> Result<()> {
    const OP: &str = "group_norm_backward";
    let len = s.validate(OP)?;
    check_len(OP, "x", x.len(), len)?;
    check_len(OP, "grad_y", grad_y.len(), len)?;
    check_len(OP, "grad_x", grad_x.len(), len)?;
    check_len(OP, "gamma", gamma.len(), s.channels)?;
    check_len(OP, "grad_gamma", grad_gamma.len(), s.channels)?;
    check_len(OP, "grad_beta", grad_beta.len(), s.channels)?;
    check_len(OP, "mean", mean.len(), s.batch * s.groups)?;
    check_len(OP, "rstd", rstd.len(), s.batch * s.groups)?;

    let (cpg, m) = (s.channels_per_group(), s.group_len());
    // Per (n, c): Σ_s g and Σ_s g·x̂, laid out [N, C] = [N·G, C/G] so each group task owns a contiguous piece.
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
            dispatch!(group_backward(
                s: &GroupNormShape,
                ng: usize,
                x: &[f32],
                gamma: &[f32],
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

/// Finishes `∂L/∂β[c] = Σ_n sum_g[n, c]` and `∂L/∂γ[c] = Σ_n sum_g_xhat[n, c]` from the group tasks' per-(n, c)
/// partial sums (`[N, C]`), in a fixed order over `n` so the result does not depend on the thread count.
pub(crate) fn sum_over_batch(
    s: &GroupNormShape,
    sum_g: &[f64],
    sum_g_xhat: &[f64],
    grad_gamma: &mut [f32],
    grad_beta: &mut [f32],
) {
    for c in 0..s.channels {
        let over_batch = |partial: &[f64]| {
            (0..s.batch)
                .map(|n| partial[n * s.channels + c])
                .sum::<f64>() as f32
        };
        grad_beta[c] = over_batch(sum_g);
        grad_gamma[c] = over_batch(sum_g_xhat);
    }
}

/// `z = (x − mean)·a + b` with `a = rstd·γ[c]`, `b = β[c]`: the group norm output, computed the same way by every
/// kernel that needs it (the fused SiLU's backward recomputes the forward's `z` bit for bit). Folding the mean into
/// the offset, `x·a + (b − mean·a)`, would cancel two large terms when rstd is large, e.g. a near-constant group.
#[inline(always)]
pub(crate) fn normalised(x: f32, mean: f32, a: f32, b: f32) -> f32 {
    (x - mean) * a + b
}

/// Forward of group `ng`: its moments, then `y = (x − mean)·(rstd·γ[c]) + β[c]` channel by channel.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn normalise_group(
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
            *y = normalised(x, mu, a, b);
        }
    }
}

/// Backward of group `ng`: writes its `grad_x` and its channels' sums `Σ_s g` and `Σ_s g·x̂`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn group_backward(
    s: &GroupNormShape,
    ng: usize,
    x: &[f32],
    gamma: &[f32],
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
    for (c, (x, gy)) in x
        .chunks_exact(s.spatial)
        .zip(grad_y.chunks_exact(s.spatial))
        .enumerate()
    {
        sum_g[c] = sum_f64(gy, |g| g);
        sum_g_xhat[c] = sum2_f64(gy, x, |g, x| g * (x - mu)) * r;
        let gamma_c = f64::from(gamma[first_channel + c]);
        sum_dxhat += gamma_c * sum_g[c];
        sum_dxhat_xhat += gamma_c * sum_g_xhat[c];
    }
    let (mean_dxhat, mean_dxhat_xhat) = (
        (sum_dxhat / m as f64) as f32,
        (sum_dxhat_xhat / m as f64) as f32,
    );
    for (c, (gx, (x, gy))) in grad_x
        .chunks_exact_mut(s.spatial)
        .zip(
            x.chunks_exact(s.spatial)
                .zip(grad_y.chunks_exact(s.spatial)),
        )
        .enumerate()
    {
        let gamma_c = gamma[first_channel + c];
        for ((gx, &x), &gy) in gx.iter_mut().zip(x).zip(gy) {
            let xhat = (x - mean) * rstd;
            *gx = rstd * (gamma_c * gy - mean_dxhat - xhat * mean_dxhat_xhat);
        }
    }
}
