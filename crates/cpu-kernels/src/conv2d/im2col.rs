//! im2col and its adjoint col2im for one (image, group) slab `x[c, h, w]`, `c < in_channels / groups`.
//!
//! ```text
//! col[(c·KH + kh)·KW + kw, oh·OW + ow] = x[c, oh·sh − ph + kh·dh, ow·sw − pw + kw·dw]     (0 where that is padding)
//! ```
//!
//! so a convolution becomes the GEMM `out[co, ·] = Σ_row W[co, row] · col[row, ·]`. col2im scatters a column matrix
//! back with `+=` (several kernel offsets read the same input pixel), which is exactly the transpose of im2col.
//! Each col row is one kernel tap `(c, kh, kw)`; along each axis the output positions that land inside the image form
//! one contiguous range, computed once per convolution call for every row ([`Taps`]: the divisions by the stride cost
//! more than a row's copy of a small image) so the inner loop is a plain (strided) copy.

use std::ops::Range;

use rayon::prelude::*;

use super::Conv2dShape;

/// Output positions `o < out` whose input coordinate `o·stride + offset − padding` lies in `[0, input)`.
fn inside(out: usize, input: usize, stride: usize, padding: usize, offset: usize) -> Range<usize> {
    let first = padding.saturating_sub(offset).div_ceil(stride);
    let end = (input + padding).saturating_sub(offset).div_ceil(stride);
    let end = end.min(out);
    first.min(end)..end
}

/// One kernel tap: which input channel it reads, and for each output row/column which input row/column.
struct Tap {
    channel: usize,
    rows: Range<usize>,
    cols: Range<usize>,
    /// Input coordinate of output row `rows.start` (and then every `stride.0` further).
    first_in_row: usize,
    /// Input coordinate of output column `cols.start` (and then every `stride.1` further).
    first_in_col: usize,
}

/// Every row's [`Tap`] of one convolution shape, with the output row length.
pub(super) struct Taps {
    taps: Vec<Tap>,
    out_w: usize,
}

impl Taps {
    pub(super) fn new(s: &Conv2dShape) -> Self {
        let (out_h, out_w) = (s.out_h(), s.out_w());
        let taps = (0..s.patch_len())
            .map(|row| {
                let kw = row % s.kernel_w;
                let kh = (row / s.kernel_w) % s.kernel_h;
                let channel = row / (s.kernel_w * s.kernel_h);
                let (offset_h, offset_w) = (kh * s.dilation.0, kw * s.dilation.1);
                let rows = inside(out_h, s.in_h, s.stride.0, s.padding.0, offset_h);
                let cols = inside(out_w, s.in_w, s.stride.1, s.padding.1, offset_w);
                // For a non-empty range the coordinate is ≥ 0 by construction; for an empty one it is never used.
                let first_in_row = (rows.start * s.stride.0 + offset_h).saturating_sub(s.padding.0);
                let first_in_col = (cols.start * s.stride.1 + offset_w).saturating_sub(s.padding.1);
                Tap {
                    channel,
                    rows,
                    cols,
                    first_in_row,
                    first_in_col,
                }
            })
            .collect();
        Self { taps, out_w }
    }
}

/// Fills row `row` of the column matrix (`out_h·out_w` floats) from the slab `x`.
fn im2col_row(s: &Conv2dShape, taps: &Taps, x: &[f32], row: usize, dst: &mut [f32]) {
    let tap = &taps.taps[row];
    let plane = &x[tap.channel * s.in_h * s.in_w..][..s.in_h * s.in_w];
    for (oh, dst_row) in dst.chunks_exact_mut(taps.out_w).enumerate() {
        if !tap.rows.contains(&oh) || tap.cols.is_empty() {
            dst_row.fill(0.0);
            continue;
        }
        let ih = tap.first_in_row + (oh - tap.rows.start) * s.stride.0;
        let src = &plane[ih * s.in_w + tap.first_in_col..(ih + 1) * s.in_w];
        dst_row[..tap.cols.start].fill(0.0);
        dst_row[tap.cols.end..].fill(0.0);
        let dst_inside = &mut dst_row[tap.cols.clone()];
        if s.stride.1 == 1 {
            dst_inside.copy_from_slice(&src[..dst_inside.len()]);
        } else {
            for (d, &v) in dst_inside.iter_mut().zip(src.iter().step_by(s.stride.1)) {
                *d = v;
            }
        }
    }
}

/// Adds row `row` of a column matrix back into the slab gradient `dx` (the transpose of [`im2col_row`]).
fn col2im_row(s: &Conv2dShape, taps: &Taps, src: &[f32], row: usize, dx: &mut [f32]) {
    let tap = &taps.taps[row];
    if tap.cols.is_empty() {
        return;
    }
    let plane = &mut dx[tap.channel * s.in_h * s.in_w..][..s.in_h * s.in_w];
    for (oh, src_row) in src
        .chunks_exact(taps.out_w)
        .enumerate()
        .take(tap.rows.end)
        .skip(tap.rows.start)
    {
        let ih = tap.first_in_row + (oh - tap.rows.start) * s.stride.0;
        let dst = &mut plane[ih * s.in_w + tap.first_in_col..(ih + 1) * s.in_w];
        let src_inside = &src_row[tap.cols.clone()];
        if s.stride.1 == 1 {
            for (d, &g) in dst.iter_mut().zip(src_inside) {
                *d += g;
            }
        } else {
            for (d, &g) in dst.iter_mut().step_by(s.stride.1).zip(src_inside) {
                *d += g;
            }
        }
    }
}

/// Floats of the column matrix one task of a parallel [`im2col`] fills at least: a row of a small image is a few
/// hundred, far less than a rayon task costs.
const FLOATS_PER_TASK: usize = 8192;

/// Writes the column matrix `[patch_len × out_h·out_w]` of slab `x` into `col`, whose rows lie `ld ≥ out_h·out_w`
/// floats apart (so the matrices of several images can sit side by side), rows in parallel when `parallel` is set.
pub(super) fn im2col(
    s: &Conv2dShape,
    taps: &Taps,
    x: &[f32],
    col: &mut [f32],
    ld: usize,
    parallel: bool,
) {
    let plane = s.out_plane();
    let fill_row = |(row, dst): (usize, &mut [f32])| im2col_row(s, taps, x, row, &mut dst[..plane]);
    if parallel {
        col.par_chunks_mut(ld)
            .take(s.patch_len())
            .enumerate()
            .with_min_len(FLOATS_PER_TASK.div_ceil(plane))
            .for_each(fill_row);
    } else {
        col.chunks_mut(ld)
            .take(s.patch_len())
            .enumerate()
            .for_each(fill_row);
    }
}

/// `dx += col2im(col)`: scatters a column matrix with rows `ld` floats apart back onto slab gradient `dx`, rows in
/// ascending order.
pub(super) fn col2im_add(s: &Conv2dShape, taps: &Taps, col: &[f32], ld: usize, dx: &mut [f32]) {
    let plane = s.out_plane();
    for (row, src) in col.chunks(ld).take(s.patch_len()).enumerate() {
        col2im_row(s, taps, &src[..plane], row, dx);
    }
}
