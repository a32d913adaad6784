//! Data-movement kernels on contiguous buffers viewed as `[outer, dim, inner]`: concatenation, index selection,
//! gathering along a dimension, and the scatter-adds that are their gradients.
//!
//! Viewing a tensor as `[outer, dim, inner]` around the dimension being indexed turns every one of these into a copy
//! of `inner`-long runs, which is what makes them fast; the tensor layer computes `outer` and `inner`.

use crate::error::{check_len, KernelError, Result};
use rayon::prelude::*;

/// `Π dims`; 0 whenever one of them is 0, even if the others alone would overflow.
fn product(op: &'static str, dims: &[usize]) -> Result<usize> {
    if dims.contains(&0) {
        return Ok(0);
    }
    dims.iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| KernelError::new(op, format!("{dims:?} overflows usize")))
}

/// Concatenates `parts` (part p is `[outer, sizes[p], inner]`) along the middle dimension into
/// `out` = `[outer, Σ sizes, inner]`.
pub fn concat(
    parts: &[&[f32]],
    sizes: &[usize],
    outer: usize,
    inner: usize,
    out: &mut [f32],
) -> Result<()> {
    if parts.len() != sizes.len() {
        return Err(KernelError::new(
            "concat",
            format!("{} parts but {} sizes", parts.len(), sizes.len()),
        ));
    }
    let total: usize = sizes
        .iter()
        .try_fold(0usize, |a, &s| a.checked_add(s))
        .ok_or_else(|| KernelError::new("concat", "sizes overflow"))?;
    for (p, (part, &size)) in parts.iter().zip(sizes).enumerate() {
        check_len(
            "concat",
            &format!("part {p}"),
            part.len(),
            product("concat", &[outer, size, inner])?,
        )?;
    }
    check_len(
        "concat",
        "output",
        out.len(),
        product("concat", &[outer, total, inner])?,
    )?;
    if out.is_empty() {
        return Ok(());
    }
    out.par_chunks_mut(total * inner)
        .enumerate()
        .for_each(|(o, dst)| {
            let mut at = 0;
            for (part, &size) in parts.iter().zip(sizes) {
                let run = size * inner;
                dst[at..at + run].copy_from_slice(&part[o * run..(o + 1) * run]);
                at += run;
            }
        });
    Ok(())
}

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

/// `out[o, j, i] = src[o, indices[j], i]`: src is `[outer, dim, inner]`, out is `[outer, indices.len(), inner]`.
pub fn index_select(
    src: &[f32],
    outer: usize,
    dim: usize,
    inner: usize,
    indices: &[usize],
    out: &mut [f32],
) -> Result<()> {
    check_len(
        "index_select",
        "source",
        src.len(),
        product("index_select", &[outer, dim, inner])?,
    )?;
    check_len(
        "index_select",
        "output",
        out.len(),
        product("index_select", &[outer, indices.len(), inner])?,
    )?;
    check_indices("index_select", indices, dim)?;
    if out.is_empty() {
        return Ok(());
    }
    out.par_chunks_mut(indices.len() * inner)
        .enumerate()
        .for_each(|(o, dst)| {
            for (j, &idx) in indices.iter().enumerate() {
                let from = (o * dim + idx) * inner;
                dst[j * inner..(j + 1) * inner].copy_from_slice(&src[from..from + inner]);
            }
        });
    Ok(())
}

/// The gradient of [`index_select`]: `grad_src[o, indices[j], i] += grad_out[o, j, i]` (grad_src is overwritten first,
/// so repeated indices accumulate).
pub fn index_select_backward(
    grad_out: &[f32],
    outer: usize,
    dim: usize,
    inner: usize,
    indices: &[usize],
    grad_src: &mut [f32],
) -> Result<()> {
    check_len(
        "index_select_backward",
        "gradient",
        grad_out.len(),
        product("index_select_backward", &[outer, indices.len(), inner])?,
    )?;
    check_len(
        "index_select_backward",
        "source gradient",
        grad_src.len(),
        product("index_select_backward", &[outer, dim, inner])?,
    )?;
    check_indices("index_select_backward", indices, dim)?;
    grad_src.fill(0.0);
    if grad_src.is_empty() {
        return Ok(());
    }
    grad_src
        .par_chunks_mut(dim * inner)
        .enumerate()
        .for_each(|(o, dst)| {
            for (j, &idx) in indices.iter().enumerate() {
                let from = (o * indices.len() + j) * inner;
                for (d, &g) in dst[idx * inner..(idx + 1) * inner]
                    .iter_mut()
                    .zip(&grad_out[from..from + inner])
                {
                    *d += g;
                }
            }
        });
    Ok(())
}

/// `out[o, j, i] = src[o, index[o, j, i], i]`: src is `[outer, dim, inner]`, index and out are `[outer, k, inner]`.
pub fn gather(
    src: &[f32],
    outer: usize,
    dim: usize,
    inner: usize,
    index: &[usize],
    k: usize,
    out: &mut [f32],
) -> Result<()> {
    check_len(
        "gather",
        "source",
        src.len(),
        product("gather", &[outer, dim, inner])?,
    )?;
    let n = product("gather", &[outer, k, inner])?;
    check_len("gather", "index", index.len(), n)?;
    check_len("gather", "output", out.len(), n)?;
    check_indices("gather", index, dim)?;
    if out.is_empty() {
        return Ok(());
    }
    out.par_chunks_mut(k * inner)
        .zip(index.par_chunks(k * inner))
        .enumerate()
        .for_each(|(o, (dst, idx))| {
            for (p, (d, &ix)) in dst.iter_mut().zip(idx).enumerate() {
                *d = src[(o * dim + ix) * inner + p % inner];
            }
        });
    Ok(())
}

/// The gradient of [`gather`]: `grad_src[o, index[o, j, i], i] += grad_out[o, j, i]` (grad_src overwritten first).
pub fn gather_backward(
    grad_out: &[f32],
    outer: usize,
    dim: usize,
    inner: usize,
    index: &[usize],
    k: usize,
    grad_src: &mut [f32],
) -> Result<()> {
    let n = product("gather_backward", &[outer, k, inner])?;
    check_len("gather_backward", "gradient", grad_out.len(), n)?;
    check_len("gather_backward", "index", index.len(), n)?;
    check_len(
        "gather_backward",
        "source gradient",
        grad_src.len(),
        product("gather_backward", &[outer, dim, inner])?,
    )?;
    check_indices("gather_backward", index, dim)?;
    grad_src.fill(0.0);
    if grad_src.is_empty() || n == 0 {
        return Ok(());
    }
    grad_src
        .par_chunks_mut(dim * inner)
        .enumerate()
        .for_each(|(o, dst)| {
            let base = o * k * inner;
            for p in 0..k * inner {
                dst[index[base + p] * inner + p % inner] += grad_out[base + p];
            }
        });
    Ok(())
}

/// Nearest-neighbour 2× upsampling of `planes` images of `h × w`: `out[p, y, x] = src[p, y/2, x/2]`.
pub fn upsample_nearest2x(
    src: &[f32],
    planes: usize,
    h: usize,
    w: usize,
    out: &mut [f32],
) -> Result<()> {
    check_len(
        "upsample_nearest2x",
        "source",
        src.len(),
        product("upsample_nearest2x", &[planes, h, w])?,
    )?;
    check_len(
        "upsample_nearest2x",
        "output",
        out.len(),
        product("upsample_nearest2x", &[planes, 4, h, w])?,
    )?;
    if out.is_empty() {
        return Ok(());
    }
    out.par_chunks_mut(2 * w)
        .enumerate()
        .for_each(|(row, dst)| {
            let (p, y) = (row / (2 * h), row % (2 * h));
            let s = &src[(p * h + y / 2) * w..][..w];
            for (x, d) in dst.iter_mut().enumerate() {
                *d = s[x / 2];
            }
        });
    Ok(())
}

/// The gradient of [`upsample_nearest2x`]: each source pixel receives the sum of its 2×2 block.
pub fn upsample_nearest2x_backward(
    grad_out: &[f32],
    planes: usize,
    h: usize,
    w: usize,
    grad_src: &mut [f32],
) -> Result<()> {
    check_len(
        "upsample_nearest2x_backward",
        "gradient",
        grad_out.len(),
        product("upsample_nearest2x_backward", &[planes, 4, h, w])?,
    )?;
    check_len(
        "upsample_nearest2x_backward",
        "source gradient",
        grad_src.len(),
        product("upsample_nearest2x_backward", &[planes, h, w])?,
    )?;
    if grad_src.is_empty() {
        return Ok(());
    }
    grad_src
        .par_chunks_mut(w)
        .enumerate()
        .for_each(|(row, dst)| {
            let (p, y) = (row / h, row % h);
            let top = &grad_out[(p * 2 * h + 2 * y) * 2 * w..][..2 * w];
            let bottom = &grad_out[(p * 2 * h + 2 * y + 1) * 2 * w..][..2 * w];
            for (x, d) in dst.iter_mut().enumerate() {
                *d = top[2 * x] + top[2 * x + 1] + bottom[2 * x] + bottom[2 * x + 1];
            }
        });
    Ok(())
}
