//! GEGLU, `out[r, j] = x[r, j]·gelu(x[r, inner + j])` on a row-major `[rows, 2·inner]` input, forward and backward.
//! The entries live in `kernels/elementwise.ptx` beside the GELU they share (the math is at the top of that file;
//! the CPU twin is `diffuse_cpu_kernels::geglu`).

use cudarc::driver::{DevicePtr, DevicePtrMut};
use diffuse_cpu_kernels::geglu::lengths;

use crate::context::{Gpu, Module};
use crate::error::{check_len, Result};
use crate::launch::{grid_for, launch, Arg, Launch};

const THREADS: u32 = 256;

/// `out[r, j] = x[r, j]·gelu(x[r, inner + j])`.
pub fn geglu_forward(
    gpu: &Gpu,
    rows: usize,
    inner: usize,
    x: &impl DevicePtr<f32>,
    out: &mut impl DevicePtrMut<f32>,
) -> Result<()> {
    const OP: &str = "geglu_forward";
    let (input, output) = lengths(OP, rows, inner)?;
    check_len(OP, "x", x.len(), input)?;
    check_len(OP, "out", out.len(), output)?;
    if output == 0 {
        return Ok(());
    }
    let stream = gpu.stream();
    let (x_ptr, _x_guard) = x.device_ptr(stream);
    let (out_ptr, _out_guard) = out.device_ptr_mut(stream);
    launch(
        gpu,
        OP,
        Launch::linear(
            Module::Elementwise,
            OP,
            grid_for(output as u64, THREADS, gpu),
            THREADS,
        ),
        &[
            Arg::Ptr(out_ptr),
            Arg::Ptr(x_ptr),
            Arg::U64(output as u64),
            Arg::U64(inner as u64),
        ],
    )
}

/// The gradient of [`geglu_forward`] with respect to `x` (`[rows, 2·inner]`) from `dout` (`[rows, inner]`).
pub fn geglu_backward(
    gpu: &Gpu,
    rows: usize,
    inner: usize,
    x: &impl DevicePtr<f32>,
    dout: &impl DevicePtr<f32>,
    dx: &mut impl DevicePtrMut<f32>,
) -> Result<()> {
    const OP: &str = "geglu_backward";
    let (input, output) = lengths(OP, rows, inner)?;
    check_len(OP, "x", x.len(), input)?;
    check_len(OP, "dout", dout.len(), output)?;
    check_len(OP, "dx", dx.len(), input)?;
    if output == 0 {
        return Ok(());
    }
    let stream = gpu.stream();
    let (x_ptr, _x_guard) = x.device_ptr(stream);
    let (dout_ptr, _dout_guard) = dout.device_ptr(stream);
    let (dx_ptr, _dx_guard) = dx.device_ptr_mut(stream);
    launch(
        gpu,
        OP,
        Launch::linear(
            Module::Elementwise,
            OP,
            grid_for(output as u64, THREADS, gpu),
            THREADS,
        ),
        &[
            Arg::Ptr(dx_ptr),
            Arg::Ptr(x_ptr),
            Arg::Ptr(dout_ptr),
            Arg::U64(output as u64),
            Arg::U64(inner as u64),
        ],
    )
}
