//! The gated residual add of adaLN-Zero, `out = x + gate[n]∘y`, forward and backward, on `x, y [batch, tokens, dim]`
//! with `gate [batch, dim]` (`kernels/gated_residual.ptx` has the math).

use cudarc::driver::{DevicePtr, DevicePtrMut};

use crate::context::{Gpu, Module};
use crate::error::{check_len, KernelError, Result};
use crate::launch::{grid_for, launch, Arg, Launch};
pub use diffuse_cpu_kernels::gated_residual::GatedShape;

const THREADS: u32 = 256;

/// Checks the shape for the kernels' u32 indices (the forward's grid-stride loop also needs `len < 2^31`); returns
/// (elements, gate elements).
fn check_shape(op: &'static str, s: &GatedShape) -> Result<(usize, usize)> {
    let too_large = || {
        KernelError::new(
            op,
            format!("{s:?} has more than the 2^31 - 1 elements the kernels index"),
        )
    };
    let len = s
        .batch
        .checked_mul(s.tokens)
        .and_then(|rows| rows.checked_mul(s.dim))
        .filter(|&len| len <= i32::MAX as usize)
        .ok_or_else(too_large)?;
    let gate = s
        .batch
        .checked_mul(s.dim)
        .filter(|&len| len <= i32::MAX as usize)
        .ok_or_else(too_large)?;
    Ok((len, gate))
}

/// `out = x + gate[n]∘y` for every token of every sample `n`.
pub fn gated_residual_forward(
    gpu: &Gpu,
    shape: &GatedShape,
    x: &impl DevicePtr<f32>,
    gate: &impl DevicePtr<f32>,
    y: &impl DevicePtr<f32>,
    out: &mut impl DevicePtrMut<f32>,
) -> Result<()> {
    const OP: &str = "gated_residual_forward";
    let (len, gate_len) = check_shape(OP, shape)?;
    check_len(OP, "x", x.len(), len)?;
    check_len(OP, "y", y.len(), len)?;
    check_len(OP, "out", out.len(), len)?;
    check_len(OP, "gate", gate.len(), gate_len)?;
    if len == 0 {
        return Ok(());
    }
    let stream = gpu.stream();
    let (x_ptr, _g0) = x.device_ptr(stream);
    let (gate_ptr, _g1) = gate.device_ptr(stream);
    let (y_ptr, _g2) = y.device_ptr(stream);
    let (out_ptr, _g3) = out.device_ptr_mut(stream);
    launch(
        gpu,
        OP,
        Launch::linear(
            Module::GatedResidual,
            "gated_residual_forward",
            grid_for(len as u64, THREADS, gpu),
            THREADS,
        ),
        &[
            Arg::Ptr(x_ptr),
            Arg::Ptr(gate_ptr),
            Arg::Ptr(y_ptr),
            Arg::Ptr(out_ptr),
            Arg::U32(len as u32),
            Arg::U32((shape.tokens * shape.dim) as u32),
            Arg::U32(shape.dim as u32),
        ],
    )
}

/// Gradients of [`gated_residual_forward`] with respect to `y` and `gate` from `dout` (the gradient with respect to
/// `x` is `dout` itself).
pub fn gated_residual_backward(
    gpu: &Gpu,
    shape: &GatedShape,
    gate: &impl DevicePtr<f32>,
    y: &impl DevicePtr<f32>,
    dout: &impl DevicePtr<f32>,
    dy: &mut impl DevicePtrMut<f32>,
    dgate: &mut impl DevicePtrMut<f32>,
) -> Result<()> {
    const OP: &str = "gated_residual_backward";
    let (len, gate_len) = check_shape(OP, shape)?;
    check_len(OP, "y", y.len(), len)?;
    check_len(OP, "dout", dout.len(), len)?;
    check_len(OP, "dy", dy.len(), len)?;
    check_len(OP, "gate", gate.len(), gate_len)?;
    check_len(OP, "dgate", dgate.len(), gate_len)?;
    if gate_len == 0 {
        return Ok(());
    }
    let stream = gpu.stream();
    let (gate_ptr, _g0) = gate.device_ptr(stream);
    let (y_ptr, _g1) = y.device_ptr(stream);
    let (dout_ptr, _g2) = dout.device_ptr(stream);
    let (dy_ptr, _g3) = dy.device_ptr_mut(stream);
    let (dgate_ptr, _g4) = dgate.device_ptr_mut(stream);
    // With no tokens the sums are empty and the kernel writes zeros.
    let blocks = shape.batch * shape.dim.div_ceil(THREADS as usize);
    launch(
        gpu,
        OP,
        Launch::linear(
            Module::GatedResidual,
            "gated_residual_backward",
            u32::try_from(blocks).map_err(|_| {
                KernelError::new(OP, format!("{blocks} blocks exceed the grid's u32"))
            })?,
            THREADS,
        ),
        &[
            Arg::Ptr(gate_ptr),
            Arg::Ptr(y_ptr),
            Arg::Ptr(dout_ptr),
            Arg::Ptr(dy_ptr),
            Arg::Ptr(dgate_ptr),
            Arg::U32(shape.batch as u32),
            Arg::U32(shape.tokens as u32),
            Arg::U32(shape.dim as u32),
        ],
    )
}
