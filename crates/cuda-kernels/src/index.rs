//! Data movement on contiguous buffers viewed as `[outer, dim, inner]`: concatenation, index selection, gathering
//! along a dimension, nearest 2× upsampling, and the gradients of the last three (`kernels/index.ptx` has the math).
//! Same arguments as `diffuse_cpu_kernels::index`, on device buffers. Index lists arrive on the host (as the tensor
//! layer holds them), are checked against `dim` there, and travel to the device as u64.

use cudarc::driver::{CudaSlice, CudaView, DevicePtr, DevicePtrMut};

use crate::context::{Gpu, Module};
use crate::error::{check_len, driver_error, KernelError, Result};
use crate::launch::{grid_for, launch, Arg, Launch};

const THREADS: u32 = 256;

/// `Π dims`; 0 whenever one of them is 0, even if the others alone would overflow.
fn product(op: &'static str, dims: &[usize]) -> Result<usize> {
    if dims.contains(&0) {
        return Ok(0);
    }
    dims.iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| KernelError::new(op, format!("{dims:?} overflows usize")))
}

/// Checks every index against `dim`.
fn check_indices(op: &'static str, indices: &[usize], dim: usize) -> Result<()> {
    match indices.iter().position(|&i| i >= dim) {
        Some(p) => Err(KernelError::new(
            op,
            format!(
                "index {} at position {p} is out of range for a dimension of size {dim}",
                indices[p]
            ),
        )),
        None => Ok(()),
    }
}

/// Copies a checked, non-empty index list to the device as u64; `None` for an empty list (the kernels read no index
/// when there is none to read).
fn upload_indices(
    gpu: &Gpu,
    op: &'static str,
    indices: &[usize],
) -> Result<Option<CudaSlice<u64>>> {
    if indices.is_empty() {
        return Ok(None);
    }
    let wide: Vec<u64> = indices.iter().map(|&i| i as u64).collect();
    gpu.stream()
        .clone_htod(&wide)
        .map(Some)
        .map_err(|e| driver_error(op, "copying indices to the device", e))
}

/// Concatenates `parts` (part p is `[outer, sizes[p], inner]`) along the middle dimension into
/// `out` = `[outer, Σ sizes, inner]`: one launch of `concat_part` per non-empty part.
pub fn concat(
    gpu: &Gpu,
    parts: &[CudaView<'_, f32>],
    sizes: &[usize],
    outer: usize,
    inner: usize,
    out: &mut impl DevicePtrMut<f32>,
) -> Result<()> {
    const OP: &str = "concat";
    if parts.len() != sizes.len() {
        return Err(KernelError::new(
            OP,
            format!("{} parts but {} sizes", parts.len(), sizes.len()),
        ));
    }
    let total = sizes
        .iter()
        .try_fold(0usize, |a, &s| a.checked_add(s))
        .ok_or_else(|| KernelError::new(OP, format!("sizes {sizes:?} overflow usize")))?;
    for (p, (part, &size)) in parts.iter().zip(sizes).enumerate() {
        check_len(
            OP,
            &format!("part {p}"),
            part.len(),
            product(OP, &[outer, size, inner])?,
        )?;
    }
    check_len(
        OP,
        "output",
        out.len(),
        product(OP, &[outer, total, inner])?,
    )?;
    let stream = gpu.stream();
    let (out_ptr, _go) = out.device_ptr_mut(stream);
    let mut start = 0usize;
    for (part, &size) in parts.iter().zip(sizes) {
        let n = part.len();
        if n > 0 {
            let (part_ptr, _gp) = part.device_ptr(stream);
            launch(
                gpu,
                OP,
                Launch::linear(
                    Module::Index,
                    "concat_part",
                    grid_for(n as u64, THREADS, gpu),
                    THREADS,
                ),
                &[
                    Arg::Ptr(out_ptr),
                    Arg::Ptr(part_ptr),
                    Arg::U64(n as u64),
                    Arg::U64((size * inner) as u64),
                    Arg::U64((total * inner) as u64),
                    Arg::U64((start * inner) as u64),
                ],
            )?;
        }
        start += size;
    }
    Ok(())
}

/// The launch shared by the four indexed kernels: `(out, src, idx, n, k, dim, inner)`, `n` = `out.len()`. `idx` is
/// `None` only when `k = 0`, where the kernels read no index (the backward ones then write zeros).
fn launch_indexed(
    gpu: &Gpu,
    op: &'static str,
    kernel: &'static str,
    out: &mut impl DevicePtrMut<f32>,
    src: &impl DevicePtr<f32>,
    idx: Option<&CudaSlice<u64>>,
    (k, dim, inner): (usize, usize, usize),
) -> Result<()> {
    let n = out.len();
    if n == 0 {
        return Ok(());
    }
    let stream = gpu.stream();
    let (src_ptr, _gs) = src.device_ptr(stream);
    let (idx_ptr, _gi) = match idx {
        Some(idx) => {
            let (ptr, guard) = idx.device_ptr(stream);
            (ptr, Some(guard))
        }
        None => (0, None),
    };
    let (out_ptr, _go) = out.device_ptr_mut(stream);
    launch(
        gpu,
        op,
        Launch::linear(
            Module::Index,
            kernel,
            grid_for(n as u64, THREADS, gpu),
            THREADS,
        ),
        &[
            Arg::Ptr(out_ptr),
            Arg::Ptr(src_ptr),
            Arg::Ptr(idx_ptr),
            Arg::U64(n as u64),
            Arg::U64(k as u64),
            Arg::U64(dim as u64),
            Arg::U64(inner as u64),
        ],
    )
}

/// `out[o, j, i] = src[o, indices[j], i]`: src is `[outer, dim, inner]`, out is `[outer, indices.len(), inner]`.
pub fn index_select(
    gpu: &Gpu,
    src: &impl DevicePtr<f32>,
    outer: usize,
    dim: usize,
    inner: usize,
    indices: &[usize],
    out: &mut impl DevicePtrMut<f32>,
) -> Result<()> {
    const OP: &str = "index_select";
    let k = indices.len();
    check_len(OP, "source", src.len(), product(OP, &[outer, dim, inner])?)?;
    check_len(OP, "output", out.len(), product(OP, &[outer, k, inner])?)?;
    check_indices(OP, indices, dim)?;
    if out.len() == 0 {
        return Ok(());
    }
    let idx = upload_indices(gpu, OP, indices)?;
    launch_indexed(
        gpu,
        OP,
        "index_select",
        out,
        src,
        idx.as_ref(),
        (k, dim, inner),
    )
}

/// The gradient of [`index_select`]: `grad_src[o, d, i] = Σ_{j: indices[j] = d} grad_out[o, j, i]` (grad_src is
/// overwritten, so repeated indices accumulate).
pub fn index_select_backward(
    gpu: &Gpu,
    grad_out: &impl DevicePtr<f32>,
    outer: usize,
    dim: usize,
    inner: usize,
    indices: &[usize],
    grad_src: &mut impl DevicePtrMut<f32>,
) -> Result<()> {
    const OP: &str = "index_select_backward";
    let k = indices.len();
    check_len(
        OP,
        "gradient",
        grad_out.len(),
        product(OP, &[outer, k, inner])?,
    )?;
    check_len(
        OP,
        "source gradient",
        grad_src.len(),
        product(OP, &[outer, dim, inner])?,
    )?;
    check_indices(OP, indices, dim)?;
    if grad_src.len() == 0 {
        return Ok(());
    }
    let idx = upload_indices(gpu, OP, indices)?;
    launch_indexed(
        gpu,
        OP,
        "index_select_backward",
        grad_src,
        grad_out,
        idx.as_ref(),
        (k, dim, inner),
    )
}

/// `out[o, j, i] = src[o, index[o, j, i], i]`: src is `[outer, dim, inner]`, index and out are `[outer, k, inner]`.
#[allow(clippy::too_many_arguments)] // the CPU kernel's argument list plus the device
pub fn gather(
    gpu: &Gpu,
    src: &impl DevicePtr<f32>,
    outer: usize,
    dim: usize,
    inner: usize,
    index: &[usize],
    k: usize,
    out: &mut impl DevicePtrMut<f32>,
) -> Result<()> {
    const OP: &str = "gather";
    check_len(OP, "source", src.len(), product(OP, &[outer, dim, inner])?)?;
    let n = product(OP, &[outer, k, inner])?;
    check_len(OP, "index", index.len(), n)?;
    check_len(OP, "output", out.len(), n)?;
    check_indices(OP, index, dim)?;
    if n == 0 {
        return Ok(());
    }
    let idx = upload_indices(gpu, OP, index)?;
    launch_indexed(gpu, OP, "gather", out, src, idx.as_ref(), (k, dim, inner))
}

/// The gradient of [`gather`]: `grad_src[o, d, i] = Σ_{j: index[o, j, i] = d} grad_out[o, j, i]` (overwritten).
#[allow(clippy::too_many_arguments)] // the CPU kernel's argument list plus the device
pub fn gather_backward(
    gpu: &Gpu,
    grad_out: &impl DevicePtr<f32>,
    outer: usize,
    dim: usize,
    inner: usize,
    index: &[usize],
    k: usize,
    grad_src: &mut impl DevicePtrMut<f32>,
) -> Result<()> {
    const OP: &str = "gather_backward";
    let n = product(OP, &[outer, k, inner])?;
    check_len(OP, "gradient", grad_out.len(), n)?;
    check_len(OP, "index", index.len(), n)?;
    check_len(
        OP,
        "source gradient",
        grad_src.len(),
        product(OP, &[outer, dim, inner])?,
    )?;
    check_indices(OP, index, dim)?;
    if grad_src.len() == 0 {
        return Ok(());
    }
    // with n = 0 (k = 0, since grad_src is not empty) every sum is empty and the kernel writes zeros
    let idx = upload_indices(gpu, OP, index)?;
    launch_indexed(
        gpu,
        OP,
        "gather_backward",
        grad_src,
        grad_out,
        idx.as_ref(),
        (k, dim, inner),
    )
}

/// Nearest-neighbour 2× upsampling of `planes` images of `h × w`: `out[p, y, x] = src[p, y/2, x/2]`.
pub fn upsample_nearest2x(
    gpu: &Gpu,
    src: &impl DevicePtr<f32>,
    planes: usize,
    h: usize,
    w: usize,
    out: &mut impl DevicePtrMut<f32>,
) -> Result<()> {
    const OP: &str = "upsample_nearest2x";
    check_len(OP, "source", src.len(), product(OP, &[planes, h, w])?)?;
    check_len(OP, "output", out.len(), product(OP, &[planes, 4, h, w])?)?;
    launch_upsample(gpu, OP, "upsample_nearest2x", src, out, h, w)
}

/// The gradient of [`upsample_nearest2x`]: each source pixel receives the sum of its 2×2 block.
pub fn upsample_nearest2x_backward(
    gpu: &Gpu,
    grad_out: &impl DevicePtr<f32>,
    planes: usize,
    h: usize,
    w: usize,
    grad_src: &mut impl DevicePtrMut<f32>,
) -> Result<()> {
    const OP: &str = "upsample_nearest2x_backward";
    check_len(
        OP,
        "gradient",
        grad_out.len(),
        product(OP, &[planes, 4, h, w])?,
    )?;
    check_len(
        OP,
        "source gradient",
        grad_src.len(),
        product(OP, &[planes, h, w])?,
    )?;
    launch_upsample(
        gpu,
        OP,
        "upsample_nearest2x_backward",
        grad_out,
        grad_src,
        h,
        w,
    )
}

fn launch_upsample(
    gpu: &Gpu,
    op: &'static str,
    kernel: &'static str,
    src: &impl DevicePtr<f32>,
    out: &mut impl DevicePtrMut<f32>,
    h: usize,
    w: usize,
) -> Result<()> {
    let n = out.len();
    if n == 0 {
        return Ok(());
    }
    let stream = gpu.stream();
    let (src_ptr, _gs) = src.device_ptr(stream);
    let (out_ptr, _go) = out.device_ptr_mut(stream);
    launch(
        gpu,
        op,
        Launch::linear(
            Module::Index,
            kernel,
            grid_for(n as u64, THREADS, gpu),
            THREADS,
        ),
        &[
            Arg::Ptr(out_ptr),
            Arg::Ptr(src_ptr),
            Arg::U64(n as u64),
            Arg::U64(h as u64),
            Arg::U64(w as u64),
        ],
    )
}
