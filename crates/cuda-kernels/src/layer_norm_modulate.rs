//! The modulated layer norm of adaLN, forward and backward, on `x [batch, tokens, dim]` with `scale, shift
//! [batch, dim]` (`kernels/layer_norm_modulate.ptx` has the math). Statistics `mean` and `rstd` are `[batch·tokens]`.

use cudarc::driver::{DevicePtr, DevicePtrMut};

use crate::context::{Gpu, Module};
use crate::error::{check_len, KernelError, Result};
use crate::launch::{launch, Arg, Launch};
pub use diffuse_cpu_kernels::layer_norm_modulate::ModulateShape;

const THREADS: u32 = 256;
/// Rows per block of the row kernels: one warp each.
const ROWS_PER_BLOCK: usize = THREADS as usize / 32;

/// Checks the shape for the kernels' u32 indices; returns (elements, rows, conditioning elements).
fn check_shape(op: &'static str, s: &ModulateShape) -> Result<(usize, usize, usize)> {
    if s.dim == 0 {
        return Err(KernelError::new(op, "dim is 0: every row would be empty"));
    }
    if !(s.eps >= 0.0 && s.eps.is_finite()) {
        return Err(KernelError::new(
            op,
            format!("eps {} must be finite and ≥ 0", s.eps),
        ));
    }
    let too_large = || {
        KernelError::new(
            op,
            format!("{s:?} has more than the 2^32 - 1 elements the kernels index with u32"),
        )
    };
    let fits = |len: &usize| *len <= u32::MAX as usize;
    let len = s
        .batch
        .checked_mul(s.tokens)
        .and_then(|rows| rows.checked_mul(s.dim))
        .filter(fits)
        .ok_or_else(too_large)?;
    let cond = s
        .batch
        .checked_mul(s.dim)
        .filter(fits)
        .ok_or_else(too_large)?;
    Ok((len, len / s.dim, cond))
}

/// `y = LayerNorm(x)·(1 + scale[n]) + shift[n]`, writing each row's `mean` and `rstd`.
#[allow(clippy::too_many_arguments)] // the operation's own argument list, as on the CPU
pub fn layer_norm_modulate_forward(
    gpu: &Gpu,
    shape: &ModulateShape,
    x: &impl DevicePtr<f32>,
    scale: &impl DevicePtr<f32>,
    shift: &impl DevicePtr<f32>,
    y: &mut impl DevicePtrMut<f32>,
    mean: &mut impl DevicePtrMut<f32>,
    rstd: &mut impl DevicePtrMut<f32>,
) -> Result<()> {
    const OP: &str = "layer_norm_modulate_forward";
    let (len, rows, cond) = check_shape(OP, shape)?;
    check_len(OP, "x", x.len(), len)?;
    check_len(OP, "y", y.len(), len)?;
    check_len(OP, "scale", scale.len(), cond)?;
    check_len(OP, "shift", shift.len(), cond)?;
    check_len(OP, "mean", mean.len(), rows)?;
    check_len(OP, "rstd", rstd.len(), rows)?;
    if rows == 0 {
        return Ok(());
    }
    let stream = gpu.stream();
    let (x_ptr, _g0) = x.device_ptr(stream);
    let (scale_ptr, _g1) = scale.device_ptr(stream);
    let (shift_ptr, _g2) = shift.device_ptr(stream);
    let (y_ptr, _g3) = y.device_ptr_mut(stream);
    let (mean_ptr, _g4) = mean.device_ptr_mut(stream);
    let (rstd_ptr, _g5) = rstd.device_ptr_mut(stream);
    let blocks = rows.div_ceil(ROWS_PER_BLOCK) as u32;
    launch(
        gpu,
        OP,
        Launch::linear(
            Module::LayerNormModulate,
            "layer_norm_modulate_forward",
            blocks,
            THREADS,
        ),
        &[
            Arg::Ptr(x_ptr),
            Arg::Ptr(scale_ptr),
            Arg::Ptr(shift_ptr),
            Arg::Ptr(y_ptr),
            Arg::Ptr(mean_ptr),
            Arg::Ptr(rstd_ptr),
            Arg::U32(rows as u32),
            Arg::U32(shape.tokens as u32),
            Arg::U32(shape.dim as u32),
            Arg::F32(shape.eps),
        ],
    )
}

/// Gradients of [`layer_norm_modulate_forward`] given `dy` and the saved `mean`, `rstd`: writes `dx`, `dscale`,
/// `dshift`.
#[allow(clippy::too_many_arguments)] // the operation's own argument list, as on the CPU
pub fn layer_norm_modulate_backward(
    gpu: &Gpu,
    shape: &ModulateShape,
    x: &impl DevicePtr<f32>,
    scale: &impl DevicePtr<f32>,
    mean: &impl DevicePtr<f32>,
    rstd: &impl DevicePtr<f32>,
    dy: &impl DevicePtr<f32>,
    dx: &mut impl DevicePtrMut<f32>,
    dscale: &mut impl DevicePtrMut<f32>,
    dshift: &mut impl DevicePtrMut<f32>,
) -> Result<()> {
    const OP: &str = "layer_norm_modulate_backward";
    let (len, rows, cond) = check_shape(OP, shape)?;
    check_len(OP, "x", x.len(), len)?;
    check_len(OP, "dy", dy.len(), len)?;
    check_len(OP, "dx", dx.len(), len)?;
    check_len(OP, "scale", scale.len(), cond)?;
    check_len(OP, "dscale", dscale.len(), cond)?;
    check_len(OP, "dshift", dshift.len(), cond)?;
    check_len(OP, "mean", mean.len(), rows)?;
    check_len(OP, "rstd", rstd.len(), rows)?;
    if cond == 0 {
        return Ok(());
    }
    let stream = gpu.stream();
    let (x_ptr, _g0) = x.device_ptr(stream);
    let (scale_ptr, _g1) = scale.device_ptr(stream);
    let (mean_ptr, _g2) = mean.device_ptr(stream);
    let (rstd_ptr, _g3) = rstd.device_ptr(stream);
    let (dy_ptr, _g4) = dy.device_ptr(stream);
    let (dx_ptr, _g5) = dx.device_ptr_mut(stream);
    let (dscale_ptr, _g6) = dscale.device_ptr_mut(stream);
    let (dshift_ptr, _g7) = dshift.device_ptr_mut(stream);
    if rows > 0 {
        launch(
            gpu,
            OP,
            Launch::linear(
                Module::LayerNormModulate,
                "layer_norm_modulate_backward_dx",
                rows.div_ceil(ROWS_PER_BLOCK) as u32,
                THREADS,
            ),
            &[
                Arg::Ptr(x_ptr),
                Arg::Ptr(scale_ptr),
                Arg::Ptr(mean_ptr),
                Arg::Ptr(rstd_ptr),
                Arg::Ptr(dy_ptr),
                Arg::Ptr(dx_ptr),
                Arg::U32(rows as u32),
                Arg::U32(shape.tokens as u32),
                Arg::U32(shape.dim as u32),
            ],
        )?;
    }
    // With no tokens the sums are empty and the kernel writes zeros.
    let blocks = shape.batch * shape.dim.div_ceil(THREADS as usize);
    launch(
        gpu,
        OP,
        Launch::linear(
            Module::LayerNormModulate,
            "layer_norm_modulate_backward_cond",
            u32::try_from(blocks).map_err(|_| {
                KernelError::new(OP, format!("{blocks} blocks exceed the grid's u32"))
            })?,
            THREADS,
        ),
        &[
            Arg::Ptr(x_ptr),
            Arg::Ptr(mean_ptr),
            Arg::Ptr(rstd_ptr),
            Arg::Ptr(dy_ptr),
            Arg::Ptr(dscale_ptr),
            Arg::Ptr(dshift_ptr),
            Arg::U32(shape.batch as u32),
            Arg::U32(shape.tokens as u32),
            Arg::U32(shape.dim as u32),
        ],
    )
}
