//! Softmax and log-softmax over the last dimension of a contiguous `[rows, cols]` matrix (`kernels/softmax.ptx`).

use cudarc::driver::{DevicePtr, DevicePtrMut};

use crate::context::{Gpu, Module};
use crate::error::{check_len, Result};
use crate::launch::{launch, Arg, Launch};
use crate::reduce::{rows_grid, ROW_THREADS};

/// `out[r, c] = e^(x[r, c] - m_r) / sum_c' e^(x[r, c'] - m_r)` with `m_r` the row max.
pub fn softmax(
    gpu: &Gpu,
    rows: usize,
    cols: usize,
    x: &impl DevicePtr<f32>,
    out: &mut impl DevicePtrMut<f32>,
) -> Result<()> {
    softmax_rows(gpu, "softmax", false, rows, cols, x, out)
}

/// `out[r, c] = x[r, c] - m_r - ln sum_c' e^(x[r, c'] - m_r)`.
pub fn log_softmax(
    gpu: &Gpu,
    rows: usize,
    cols: usize,
    x: &impl DevicePtr<f32>,
    out: &mut impl DevicePtrMut<f32>,
) -> Result<()> {
    softmax_rows(gpu, "log_softmax", true, rows, cols, x, out)
}

fn softmax_rows(
    gpu: &Gpu,
    op: &'static str,
    log: bool,
    rows: usize,
    cols: usize,
    x: &impl DevicePtr<f32>,
    out: &mut impl DevicePtrMut<f32>,
) -> Result<()> {
    let grid = rows_grid(op, rows, cols, x.len())?;
    check_len(op, "out", out.len(), rows * cols)?;
    if rows == 0 || cols == 0 {
        return Ok(());
    }
    let stream = gpu.stream();
    let (x_ptr, _gx) = x.device_ptr(stream);
    let (out_ptr, _go) = out.device_ptr_mut(stream);
    launch(
        gpu,
        op,
        Launch::linear(Module::Softmax, "softmax_rows", grid, ROW_THREADS),
        &[
            Arg::Ptr(x_ptr),
            Arg::Ptr(out_ptr),
            Arg::U64(cols as u64),
            Arg::U32(u32::from(log)),
        ],
    )
}
