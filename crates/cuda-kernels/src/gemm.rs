//! GEMM, `C = alpha A B + beta C`: f32 on the FMA pipes (`kernels/gemm_f32.ptx`) and bf16 on tensor cores
//! (`kernels/gemm_bf16.ptx`); each file has its tiling.
//!
//! A and B are read through element strides, so a transposed operand is just a layout; C is contiguous row-major.

use cudarc::driver::{DevicePtr, DevicePtrMut};

use crate::context::{Gpu, Module};
use crate::error::{check_len, KernelError, Result};
use crate::launch::{launch, Arg, Launch};

/// The C tile of one block (128 x 128) and its thread count.
const TILE: usize = 128;
const THREADS: u32 = 256;

/// Element `(r, c)` of a matrix operand is at `r * row_stride + c * col_stride`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MatrixLayout {
    pub row_stride: usize,
    pub col_stride: usize,
}

impl MatrixLayout {
    /// A contiguous row-major `[rows, cols]` matrix.
    pub fn row_major(cols: usize) -> Self {
        Self {
            row_stride: cols,
            col_stride: 1,
        }
    }

    /// The transpose of a contiguous row-major `[cols, rows]` matrix, read as `[rows, cols]`.
    pub fn transposed(rows: usize) -> Self {
        Self {
            row_stride: 1,
            col_stride: rows,
        }
    }
}

/// Checks that every element of a `[rows, cols]` operand lies inside its buffer.
pub(crate) fn check_operand(
    op: &'static str,
    name: &str,
    rows: usize,
    cols: usize,
    layout: MatrixLayout,
    len: usize,
) -> Result<()> {
    if rows == 0 || cols == 0 {
        return Ok(());
    }
    let last = (rows - 1) as u128 * layout.row_stride as u128
        + (cols - 1) as u128 * layout.col_stride as u128;
    if last >= len as u128 {
        return Err(KernelError::new(
            op,
            format!("{name} [{rows}, {cols}] with strides {layout:?} reaches element {last} of a buffer of {len}"),
        ));
    }
    Ok(())
}

/// `C = alpha A B + beta C` for A `[m, k]`, B `[k, n]`, C `[m, n]` row-major. With `beta = 0`, C is not read.
#[allow(clippy::too_many_arguments)] // BLAS's own argument list
pub fn sgemm(
    gpu: &Gpu,
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    a: &impl DevicePtr<f32>,
    a_layout: MatrixLayout,
    b: &impl DevicePtr<f32>,
    b_layout: MatrixLayout,
    beta: f32,
    c: &mut impl DevicePtrMut<f32>,
) -> Result<()> {
    const OP: &str = "sgemm";
    for (name, size) in [("m", m), ("n", n), ("k", k)] {
        if size > i32::MAX as usize {
            return Err(KernelError::new(
                OP,
                format!("{name} = {size} exceeds the kernel's 32-bit indices"),
            ));
        }
    }
    check_operand(OP, "A", m, k, a_layout, a.len())?;
    check_operand(OP, "B", k, n, b_layout, b.len())?;
    check_len(OP, "C", c.len(), m * n)?;
    if m == 0 || n == 0 {
        return Ok(());
    }
    let grid = (n.div_ceil(TILE) as u32, m.div_ceil(TILE) as u32, 1);
    let stream = gpu.stream();
    let (a_ptr, _ga) = a.device_ptr(stream);
    let (b_ptr, _gb) = b.device_ptr(stream);
    let (c_ptr, _gc) = c.device_ptr_mut(stream);
    launch(
        gpu,
        OP,
        Launch {
            module: Module::GemmF32,
            kernel: "sgemm",
            grid,
            block: (THREADS, 1, 1),
            shared_bytes: 0,
        },
        &[
            Arg::Ptr(a_ptr),
            Arg::Ptr(b_ptr),
            Arg::Ptr(c_ptr),
            Arg::U32(m as u32),
            Arg::U32(n as u32),
            Arg::U32(k as u32),
            Arg::U64(a_layout.row_stride as u64),
            Arg::U64(a_layout.col_stride as u64),
            Arg::U64(b_layout.row_stride as u64),
            Arg::U64(b_layout.col_stride as u64),
            Arg::F32(alpha),
            Arg::F32(beta),
        ],
    )
}

/// `C = alpha A B + beta C` on tensor cores: A `[m, k]` and B `[k, n]` row-major bf16, C `[m, n]` row-major f32,
/// accumulated in f32 (`kernels/gemm_bf16.ptx`). Needs `k % 8 == 0`, `n % 8 == 0` and 16-byte aligned A and B
/// (whole 16-byte rows of 8 bf16 are copied with cp.async); m is free. With `beta = 0`, C is not read.
#[allow(clippy::too_many_arguments)] // BLAS's own argument list
pub fn gemm_bf16(
    gpu: &Gpu,
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    a: &impl DevicePtr<half::bf16>,
    b: &impl DevicePtr<half::bf16>,
    beta: f32,
    c: &mut impl DevicePtrMut<f32>,
) -> Result<()> {
    const OP: &str = "gemm_bf16";
    if k % 8 != 0 || n % 8 != 0 {
        return Err(KernelError::new(
            OP,
            format!("k = {k} and n = {n} must be multiples of 8 (16-byte bf16 rows)"),
        ));
    }
    for (name, size) in [("m", m), ("n", n), ("k", k)] {
        if size > i32::MAX as usize {
            return Err(KernelError::new(
                OP,
                format!("{name} = {size} exceeds the kernel's 32-bit indices"),
            ));
        }
    }
    check_len(OP, "A", a.len(), m * k)?;
    check_len(OP, "B", b.len(), k * n)?;
    check_len(OP, "C", c.len(), m * n)?;
    if m == 0 || n == 0 {
        return Ok(());
    }
    let grid = (n.div_ceil(TILE) as u32, m.div_ceil(TILE) as u32, 1);
    let stream = gpu.stream();
    let (a_ptr, _ga) = a.device_ptr(stream);
    let (b_ptr, _gb) = b.device_ptr(stream);
    let (c_ptr, _gc) = c.device_ptr_mut(stream);
    if a_ptr % 16 != 0 || b_ptr % 16 != 0 || c_ptr % 8 != 0 {
        return Err(KernelError::new(
            OP,
            "A and B must start 16-byte aligned and C 8-byte aligned",
        ));
    }
    launch(
        gpu,
        OP,
        Launch {
            module: Module::GemmBf16,
            kernel: "gemm_bf16",
            grid,
            block: (THREADS, 1, 1),
            shared_bytes: 0,
        },
        &[
            Arg::Ptr(a_ptr),
            Arg::Ptr(b_ptr),
            Arg::Ptr(c_ptr),
            Arg::U32(m as u32),
            Arg::U32(n as u32),
            Arg::U32(k as u32),
            Arg::F32(alpha),
            Arg::F32(beta),
        ],
    )
}
