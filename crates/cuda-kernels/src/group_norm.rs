//! GroupNorm forward and backward on `x` of shape `[batch, channels, spatial]`, alone or followed by SiLU
//! (`kernels/group_norm.ptx` has the math). Statistics `mean` and `rstd` have shape `[batch, groups]`.

use cudarc::driver::{DevicePtr, DevicePtrMut};

use crate::context::{Gpu, Module};
use crate::error::{check_len, KernelError, Result};
use crate::launch::{launch, Arg, Launch};
pub use diffuse_cpu_kernels::group_norm::GroupNormShape;

const THREADS: u32 = 256;

/// Sizes the kernels index with u32, checked: (groups, channels per group, spatial, blocks).
fn check_shape(op: &'static str, s: &GroupNormShape) -> Result<(u32, u32, u32, u32)> {
    if s.groups == 0 || s.channels % s.groups != 0 {
        return Err(KernelError::new(
            op,
            format!(
                "{} channels do not split into {} groups",
                s.channels, s.groups
            ),
        ));
    }
    let cpg = s.channels / s.groups;
    let group_len = cpg.saturating_mul(s.spatial);
    // Welford counts are f32 and exact below 2^24; the kernels index a group with u32
    if group_len >= 1 << 24 {
        return Err(KernelError::new(
            op,
            format!("a group of {group_len} elements exceeds the 2^24 the kernels count"),
        ));
    }
    let rows = s.batch.saturating_mul(s.channels);
    let blocks = s.batch.saturating_mul(s.groups);
    if rows > u32::MAX as usize || blocks > i32::MAX as usize {
        return Err(KernelError::new(
            op,
            format!("batch {} x channels {} is too large", s.batch, s.channels),
        ));
    }
    Ok((s.groups as u32, cpg as u32, s.spatial as u32, blocks as u32))
}

/// `y = (x - mean) rstd gamma[c] + beta[c]` per group, writing the group statistics `mean` and `rstd`.
#[allow(clippy::too_many_arguments)] // the operation's own argument list, as on the CPU
pub fn group_norm_forward(
    gpu: &Gpu,
    shape: &GroupNormShape,
    x: &impl DevicePtr<f32>,
    gamma: &impl DevicePtr<f32>,
    beta: &impl DevicePtr<f32>,
    y: &mut impl DevicePtrMut<f32>,
    mean: &mut impl DevicePtrMut<f32>,
    rstd: &mut impl DevicePtrMut<f32>,
) -> Result<()> {
    let op = ("group_norm_forward", false);
    forward(gpu, op, shape, x, gamma, beta, y, (mean, rstd))
}

/// `y = silu((x - mean) rstd gamma[c] + beta[c])` per group (the CPU's `group_norm_silu_forward`), writing the group
/// statistics `mean` and `rstd`.
#[allow(clippy::too_many_arguments)] // the operation's own argument list, as on the CPU
pub fn group_norm_silu_forward(
    gpu: &Gpu,
    shape: &GroupNormShape,
    x: &impl DevicePtr<f32>,
    gamma: &impl DevicePtr<f32>,
    beta: &impl DevicePtr<f32>,
    y: &mut impl DevicePtrMut<f32>,
    mean: &mut impl DevicePtrMut<f32>,
    rstd: &mut impl DevicePtrMut<f32>,
) -> Result<()> {
    let op = ("group_norm_silu_forward", true);
    forward(gpu, op, shape, x, gamma, beta, y, (mean, rstd))
}

/// The forward kernel, `silu` saying whether SiLU follows the affine step.
#[allow(clippy::too_many_arguments)]
fn forward(
    gpu: &Gpu,
    (op, silu): (&'static str, bool),
    shape: &GroupNormShape,
    x: &impl DevicePtr<f32>,
    gamma: &impl DevicePtr<f32>,
    beta: &impl DevicePtr<f32>,
    y: &mut impl DevicePtrMut<f32>,
    (mean, rstd): (&mut impl DevicePtrMut<f32>, &mut impl DevicePtrMut<f32>),
) -> Result<()> {
    let (groups, cpg, spatial, blocks) = check_shape(op, shape)?;
    let numel = shape.batch * shape.channels * shape.spatial;
    check_len(op, "x", x.len(), numel)?;
    check_len(op, "y", y.len(), numel)?;
    check_len(op, "gamma", gamma.len(), shape.channels)?;
    check_len(op, "beta", beta.len(), shape.channels)?;
    check_len(op, "mean", mean.len(), shape.batch * shape.groups)?;
    check_len(op, "rstd", rstd.len(), shape.batch * shape.groups)?;
    if blocks == 0 {
        return Ok(());
    }
    let stream = gpu.stream();
    let (x_ptr, _g0) = x.device_ptr(stream);
    let (gamma_ptr, _g1) = gamma.device_ptr(stream);
    let (beta_ptr, _g2) = beta.device_ptr(stream);
    let (y_ptr, _g3) = y.device_ptr_mut(stream);
    let (mean_ptr, _g4) = mean.device_ptr_mut(stream);
    let (rstd_ptr, _g5) = rstd.device_ptr_mut(stream);
    // float4 loads and stores need every group start 16-byte aligned: spatial % 4 == 0 and aligned buffers
    let vec4 = spatial % 4 == 0 && x_ptr % 16 == 0 && y_ptr % 16 == 0;
    launch(
        gpu,
        op,
        Launch::linear(Module::GroupNorm, "group_norm_forward", blocks, THREADS),
        &[
            Arg::Ptr(x_ptr),
            Arg::Ptr(gamma_ptr),
            Arg::Ptr(beta_ptr),
            Arg::Ptr(y_ptr),
            Arg::Ptr(mean_ptr),
            Arg::Ptr(rstd_ptr),
            Arg::U32(groups),
            Arg::U32(cpg),
            Arg::U32(spatial),
            Arg::F32(shape.eps),
            Arg::U32(u32::from(vec4)),
            Arg::U32(u32::from(silu)),
        ],
    )
}

/// Gradients of [`group_norm_forward`] given `dy` and the saved `mean`, `rstd`: writes `dx`, `dgamma`, `dbeta`.
#[allow(clippy::too_many_arguments)] // the operation's own argument list, as on the CPU
pub fn group_norm_backward(
    gpu: &Gpu,
    shape: &GroupNormShape,
    x: &impl DevicePtr<f32>,
    gamma: &impl DevicePtr<f32>,
    mean: &impl DevicePtr<f32>,
    rstd: &impl DevicePtr<f32>,
    dy: &impl DevicePtr<f32>,
    dx: &mut impl DevicePtrMut<f32>,
    dgamma: &mut impl DevicePtrMut<f32>,
    dbeta: &mut impl DevicePtrMut<f32>,
) -> Result<()> {
    const OP: &str = "group_norm_backward";
    let blocks = check_backward(
        OP,
        shape,
        [x.len(), dy.len(), dx.len()],
        [gamma.len(), dgamma.len(), dbeta.len()],
    )?;
    check_stats(OP, shape, mean.len(), rstd.len())?;
    let stream = gpu.stream();
    let (x_ptr, _g0) = x.device_ptr(stream);
    let (gamma_ptr, _g1) = gamma.device_ptr(stream);
    let (mean_ptr, _g2) = mean.device_ptr(stream);
    let (rstd_ptr, _g3) = rstd.device_ptr(stream);
    let (dy_ptr, _g4) = dy.device_ptr(stream);
    let (dx_ptr, _g5) = dx.device_ptr_mut(stream);
    let (dgamma_ptr, _g6) = dgamma.device_ptr_mut(stream);
    let (dbeta_ptr, _g7) = dbeta.device_ptr_mut(stream);
    let inputs = [x_ptr, gamma_ptr, mean_ptr, rstd_ptr, dy_ptr];
    backward_from_dz(
        gpu,
        OP,
        shape,
        blocks,
        inputs,
        [dx_ptr, dgamma_ptr, dbeta_ptr],
    )
}

/// Gradients of [`group_norm_silu_forward`] given `dy` (the gradient of its SiLU output) and the saved `mean`,
/// `rstd`: `dz` (the length of `x`, overwritten) receives the gradient of the group norm output, from which `dx`,
/// `dgamma`, `dbeta` follow as in [`group_norm_backward`].
#[allow(clippy::too_many_arguments)] // the operation's own argument list, as on the CPU (plus the scratch dz)
pub fn group_norm_silu_backward(
    gpu: &Gpu,
    shape: &GroupNormShape,
    x: &impl DevicePtr<f32>,
    (gamma, beta): (&impl DevicePtr<f32>, &impl DevicePtr<f32>),
    mean: &impl DevicePtr<f32>,
    rstd: &impl DevicePtr<f32>,
    dy: &impl DevicePtr<f32>,
    dz: &mut impl DevicePtrMut<f32>,
    dx: &mut impl DevicePtrMut<f32>,
    dgamma: &mut impl DevicePtrMut<f32>,
    dbeta: &mut impl DevicePtrMut<f32>,
) -> Result<()> {
    const OP: &str = "group_norm_silu_backward";
    let blocks = check_backward(
        OP,
        shape,
        [x.len(), dy.len(), dx.len()],
        [gamma.len(), dgamma.len(), dbeta.len()],
    )?;
    check_len(OP, "beta", beta.len(), shape.channels)?;
    check_len(OP, "dz", dz.len(), x.len())?;
    check_stats(OP, shape, mean.len(), rstd.len())?;
    let (groups, cpg, spatial, _) = check_shape(OP, shape)?;
    let stream = gpu.stream();
    let (x_ptr, _g0) = x.device_ptr(stream);
    let (gamma_ptr, _g1) = gamma.device_ptr(stream);
    let (beta_ptr, _g2) = beta.device_ptr(stream);
    let (mean_ptr, _g3) = mean.device_ptr(stream);
    let (rstd_ptr, _g4) = rstd.device_ptr(stream);
    let (dy_ptr, _g5) = dy.device_ptr(stream);
    let (dz_ptr, _g6) = dz.device_ptr_mut(stream);
    let (dx_ptr, _g7) = dx.device_ptr_mut(stream);
    let (dgamma_ptr, _g8) = dgamma.device_ptr_mut(stream);
    let (dbeta_ptr, _g9) = dbeta.device_ptr_mut(stream);
    if blocks > 0 {
        launch(
            gpu,
            OP,
            Launch::linear(
                Module::GroupNorm,
                "group_norm_silu_backward_dz",
                blocks,
                THREADS,
            ),
            &[
                Arg::Ptr(x_ptr),
                Arg::Ptr(gamma_ptr),
                Arg::Ptr(beta_ptr),
                Arg::Ptr(mean_ptr),
                Arg::Ptr(rstd_ptr),
                Arg::Ptr(dy_ptr),
                Arg::Ptr(dz_ptr),
                Arg::U32(groups),
                Arg::U32(cpg),
                Arg::U32(spatial),
            ],
        )?;
    }
    let inputs = [x_ptr, gamma_ptr, mean_ptr, rstd_ptr, dz_ptr];
    backward_from_dz(
        gpu,
        OP,
        shape,
        blocks,
        inputs,
        [dx_ptr, dgamma_ptr, dbeta_ptr],
    )
}

/// Checks the shape and the lengths of a backward call (`[x, dy, dx]` and `[gamma, dgamma, dbeta]`); returns the
/// number of groups (blocks).
fn check_backward(
    op: &'static str,
    shape: &GroupNormShape,
    full: [usize; 3],
    per_channel: [usize; 3],
) -> Result<u32> {
    let (_, _, _, blocks) = check_shape(op, shape)?;
    let numel = shape.batch * shape.channels * shape.spatial;
    for (what, len) in ["x", "dy", "dx"].into_iter().zip(full) {
        check_len(op, what, len, numel)?;
    }
    for (what, len) in ["gamma", "dgamma", "dbeta"].into_iter().zip(per_channel) {
        check_len(op, what, len, shape.channels)?;
    }
    Ok(blocks)
}

fn check_stats(op: &'static str, shape: &GroupNormShape, mean: usize, rstd: usize) -> Result<()> {
    check_len(op, "mean", mean, shape.batch * shape.groups)?;
    check_len(op, "rstd", rstd, shape.batch * shape.groups)
}

/// Group norm's backward kernels on the gradient `dz` of its output (device pointers `[x, gamma, mean, rstd, dz]`,
/// their borrows held by the caller): `dx` per group, then `[dgamma, dbeta]` per channel.
fn backward_from_dz(
    gpu: &Gpu,
    op: &'static str,
    shape: &GroupNormShape,
    blocks: u32,
    [x_ptr, gamma_ptr, mean_ptr, rstd_ptr, dy_ptr]: [u64; 5],
    [dx_ptr, dgamma_ptr, dbeta_ptr]: [u64; 3],
) -> Result<()> {
    if shape.channels == 0 {
        return Ok(());
    }
    let (groups, cpg, spatial, _) = check_shape(op, shape)?;
    if blocks > 0 {
        launch(
            gpu,
            op,
            Launch::linear(Module::GroupNorm, "group_norm_backward_dx", blocks, THREADS),
            &[
                Arg::Ptr(x_ptr),
                Arg::Ptr(gamma_ptr),
                Arg::Ptr(mean_ptr),
                Arg::Ptr(rstd_ptr),
                Arg::Ptr(dy_ptr),
                Arg::Ptr(dx_ptr),
                Arg::U32(groups),
                Arg::U32(cpg),
                Arg::U32(spatial),
            ],
        )?;
    }
    launch(
        gpu,
        op,
        Launch::linear(
            Module::GroupNorm,
            "group_norm_backward_affine",
            shape.channels as u32,
            THREADS,
        ),
        &[
            Arg::Ptr(x_ptr),
            Arg::Ptr(mean_ptr),
            Arg::Ptr(rstd_ptr),
            Arg::Ptr(dy_ptr),
            Arg::Ptr(dgamma_ptr),
            Arg::Ptr(dbeta_ptr),
            Arg::U32(shape.batch as u32),
            Arg::U32(shape.channels as u32),
            Arg::U32(groups),
            Arg::U32(spatial),
        ],
    )
}
