//! GroupNorm forward and backward on `x` of shape `[batch, channels, spatial]` (`kernels/group_norm.ptx` has the
//! math). Statistics `mean` and `rstd` have shape `[batch, groups]`.

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
    const OP: &str = "group_norm_forward";
    let (groups, cpg, spatial, blocks) = check_shape(OP, shape)?;
    let numel = shape.batch * shape.channels * shape.spatial;
    check_len(OP, "x", x.len(), numel)?;
    check_len(OP, "y", y.len(), numel)?;
    check_len(OP, "gamma", gamma.len(), shape.channels)?;
    check_len(OP, "beta", beta.len(), shape.channels)?;
    check_len(OP, "mean", mean.len(), shape.batch * shape.groups)?;
    check_len(OP, "rstd", rstd.len(), shape.batch * shape.groups)?;
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
        OP,
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
    let (groups, cpg, spatial, blocks) = check_shape(OP, shape)?;
    let numel = shape.batch * shape.channels * shape.spatial;
    check_len(OP, "x", x.len(), numel)?;
    check_len(OP, "dy", dy.len(), numel)?;
    check_len(OP, "dx", dx.len(), numel)?;
    check_len(OP, "gamma", gamma.len(), shape.channels)?;
    check_len(OP, "dgamma", dgamma.len(), shape.channels)?;
    check_len(OP, "dbeta", dbeta.len(), shape.channels)?;
    check_len(OP, "mean", mean.len(), shape.batch * shape.groups)?;
    check_len(OP, "rstd", rstd.len(), shape.batch * shape.groups)?;
    if shape.channels == 0 {
        return Ok(());
    }
    let stream = gpu.stream();
    let (x_ptr, _g0) = x.device_ptr(stream);
    let (gamma_ptr, _g1) = gamma.device_ptr(stream);
    let (mean_ptr, _g2) = mean.device_ptr(stream);
    let (rstd_ptr, _g3) = rstd.device_ptr(stream);
    let (dy_ptr, _g4) = dy.device_ptr(stream);
    let (dx_ptr, _g5) = dx.device_ptr_mut(stream);
    let (dgamma_ptr, _g6) = dgamma.device_ptr_mut(stream);
    let (dbeta_ptr, _g7) = dbeta.device_ptr_mut(stream);
    if blocks > 0 {
        launch(
            gpu,
            OP,
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
        OP,
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
