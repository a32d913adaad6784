//! Row sum and row max over the last dimension of a contiguous `[rows, cols]` matrix (`kernels/reduce.ptx`).

use cudarc::driver::{DevicePtr, DevicePtrMut};

use crate::context::{Gpu, Module};
use crate::error::{check_len, KernelError, Result};
use crate::launch::{launch, Arg, Launch};

/// Threads per block: one block per row, each thread folding every 256th element.
pub(crate) const ROW_THREADS: u32 = 256;

/// `out[r] = sum_c x[r, c]`.
pub fn row_sum(
    gpu: &Gpu,
    rows: usize,
    cols: usize,
    x: &impl DevicePtr<f32>,
    out: &mut impl DevicePtrMut<f32>,
) -> Result<()> {
    row_reduce(gpu, "row_sum", 0, rows, cols, x, out)
}

/// `out[r] = max_c x[r, c]`; `cols` must be at least 1.
pub fn row_max(
    gpu: &Gpu,
    rows: usize,
    cols: usize,
    x: &impl DevicePtr<f32>,
    out: &mut impl DevicePtrMut<f32>,
) -> Result<()> {
    if cols == 0 && rows > 0 {
        return Err(KernelError::new(
            "row_max",
            "the max of an empty row (cols = 0) is undefined",
        ));
    }
    row_reduce(gpu, "row_max", 1, rows, cols, x, out)
}

/// Checks a `[rows, cols]` input and returns the grid size (one block per row).
pub(crate) fn rows_grid(op: &'static str, rows: usize, cols: usize, x_len: usize) -> Result<u32> {
    let numel = rows
        .checked_mul(cols)
        .ok_or_else(|| KernelError::new(op, format!("[{rows}, {cols}] overflows usize")))?;
    check_len(op, "x", x_len, numel)?;
    u32::try_from(rows)
        .map_err(|_| KernelError::new(op, format!("{rows} rows exceed one block per row")))
}

fn row_reduce(
    gpu: &Gpu,
    op: &'static str,
    code: u32,
    rows: usize,
    cols: usize,
    x: &impl DevicePtr<f32>,
    out: &mut impl DevicePtrMut<f32>,
) -> Result<()> {
    let grid = rows_grid(op, rows, cols, x.len())?;
    check_len(op, "out", out.len(), rows)?;
    if rows == 0 {
        return Ok(());
    }
    let stream = gpu.stream();
    let (x_ptr, _gx) = x.device_ptr(stream);
    let (out_ptr, _go) = out.device_ptr_mut(stream);
    launch(
        gpu,
        op,
        Launch::linear(Module::Reduce, "row_reduce", grid, ROW_THREADS),
        &[
            Arg::Ptr(x_ptr),
            Arg::Ptr(out_ptr),
            Arg::U64(cols as u64),
            Arg::U32(code),
        ],
    )
}
