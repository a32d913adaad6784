//! f32 matrices rounded to bf16 for the tensor cores (`kernels/pack_bf16.ptx` has the rounding): a `[rows, cols]`
//! operand read through strides becomes a row-major, zero-padded `[rows_out, cols_out]` bf16 matrix, the layout
//! [`crate::gemm::gemm_bf16`] multiplies (k and n multiples of 8, contiguous). Rounding is to nearest, ties to even,
//! bit for bit `half::bf16::from_f32`.

use cudarc::driver::{DevicePtr, DevicePtrMut};

use crate::context::{Gpu, Module};
use crate::error::{check_len, KernelError, Result};
use crate::gemm::{check_operand, MatrixLayout};
use crate::launch::{grid_for, launch, Arg, Launch};

const THREADS: u32 = 256;

/// `dst[r, c] = bf16(src[r, c])` inside `[rows, cols]` and 0 in the padding up to `[rows_out, cols_out]`;
/// `cols_out` must be even (every 32-bit store holds two elements of one row).
#[allow(clippy::too_many_arguments)] // the source's shape and layout, the destination's shape
pub fn pack_bf16(
    gpu: &Gpu,
    src: &impl DevicePtr<f32>,
    rows: usize,
    cols: usize,
    layout: MatrixLayout,
    rows_out: usize,
    cols_out: usize,
    dst: &mut impl DevicePtrMut<half::bf16>,
) -> Result<()> {
    const OP: &str = "pack_bf16";
    if rows_out < rows || cols_out < cols || cols_out % 2 != 0 {
        return Err(KernelError::new(
            OP,
            format!(
                "[{rows}, {cols}] cannot be padded to [{rows_out}, {cols_out}]: the padded shape must contain it and \
                 have an even number of columns"
            ),
        ));
    }
    check_operand(OP, "the source", rows, cols, layout, src.len())?;
    let out_len = rows_out
        .checked_mul(cols_out)
        .ok_or_else(|| KernelError::new(OP, format!("[{rows_out}, {cols_out}] overflows usize")))?;
    check_len(OP, "the destination", dst.len(), out_len)?;
    if out_len == 0 {
        return Ok(());
    }
    let stream = gpu.stream();
    let (src_ptr, _gs) = src.device_ptr(stream);
    let (dst_ptr, _gd) = dst.device_ptr_mut(stream);
    if dst_ptr % 4 != 0 {
        return Err(KernelError::new(
            OP,
            "the destination must start 4-byte aligned",
        ));
    }
    let pairs = (out_len / 2) as u64;
    launch(
        gpu,
        OP,
        Launch::linear(
            Module::PackBf16,
            "pack_bf16",
            grid_for(pairs, THREADS, gpu),
            THREADS,
        ),
        &[
            Arg::Ptr(dst_ptr),
            Arg::Ptr(src_ptr),
            Arg::U64(rows as u64),
            Arg::U64(cols as u64),
            Arg::U64(layout.row_stride as u64),
            Arg::U64(layout.col_stride as u64),
            Arg::U64(rows_out as u64),
            Arg::U64(cols_out as u64),
        ],
    )
}
