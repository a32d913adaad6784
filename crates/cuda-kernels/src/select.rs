//! Picking elements: [`where_select`] by a condition, [`row_argmax`] by the largest value of each row
//! (`kernels/select.ptx` has the math). Operands are contiguous; the tensor layer makes strided ones contiguous first.

use cudarc::driver::{DevicePtr, DevicePtrMut};

use crate::context::{Gpu, Module};
use crate::error::{check_len, KernelError, Result};
use crate::launch::{grid_for, launch, Arg, Launch};

const THREADS: u32 = 256;

/// `out[i] = a[i]` where `cond[i] != 0` (NaN included), else `b[i]`; all four buffers hold `out.len()` elements.
pub fn where_select(
    gpu: &Gpu,
    cond: &impl DevicePtr<f32>,
    a: &impl DevicePtr<f32>,
    b: &impl DevicePtr<f32>,
    out: &mut impl DevicePtrMut<f32>,
) -> Result<()> {
    const OP: &str = "where_select";
    let n = out.len();
    check_len(OP, "condition", cond.len(), n)?;
    check_len(OP, "a", a.len(), n)?;
    check_len(OP, "b", b.len(), n)?;
    if n == 0 {
        return Ok(());
    }
    let stream = gpu.stream();
    let (cond_ptr, _gc) = cond.device_ptr(stream);
    let (a_ptr, _ga) = a.device_ptr(stream);
    let (b_ptr, _gb) = b.device_ptr(stream);
    let (out_ptr, _go) = out.device_ptr_mut(stream);
    launch(
        gpu,
        OP,
        Launch::linear(
            Module::Select,
            "where_select",
            grid_for(n as u64, THREADS, gpu),
            THREADS,
        ),
        &[
            Arg::Ptr(out_ptr),
            Arg::Ptr(cond_ptr),
            Arg::Ptr(a_ptr),
            Arg::Ptr(b_ptr),
            Arg::U64(n as u64),
        ],
    )
}

/// `out[r]` = the index (as f32) of the first maximum of row r of a contiguous `[rows, cols]` matrix, a NaN counting
/// as larger than every number. `cols` must be in `1..=2^24` (larger indices are not exact in f32).
pub fn row_argmax(
    gpu: &Gpu,
    rows: usize,
    cols: usize,
    x: &impl DevicePtr<f32>,
    out: &mut impl DevicePtrMut<f32>,
) -> Result<()> {
    const OP: &str = "row_argmax";
    if rows > 0 && !(1..=1 << 24).contains(&cols) {
        return Err(KernelError::new(
            OP,
            format!("rows of {cols} elements: the argmax needs 1 ..= 2^24 (exact f32 indices)"),
        ));
    }
    let numel = rows
        .checked_mul(cols)
        .ok_or_else(|| KernelError::new(OP, format!("[{rows}, {cols}] overflows usize")))?;
    check_len(OP, "x", x.len(), numel)?;
    check_len(OP, "out", out.len(), rows)?;
    if rows == 0 {
        return Ok(());
    }
    let stream = gpu.stream();
    let (x_ptr, _gx) = x.device_ptr(stream);
    let (out_ptr, _go) = out.device_ptr_mut(stream);
    launch(
        gpu,
        OP,
        Launch::linear(
            Module::Select,
            "row_argmax",
            grid_for(rows as u64, THREADS, gpu),
            THREADS,
        ),
        &[
            Arg::Ptr(out_ptr),
            Arg::Ptr(x_ptr),
            Arg::U64(rows as u64),
            Arg::U64(cols as u64),
        ],
    )
}
