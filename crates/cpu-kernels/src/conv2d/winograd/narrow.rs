//! The input and output transforms of narrow images, whose tile rows hold at most `LANES / 2` tiles (F(2×2, 3×3) up to
//! 8 output columns, F(4×4, 3×3) up to 16): the lanes run across tile rows and images instead of along one tile row.
//!
//! The transforms of `transform.rs` and `transform4.rs` put `LANES` consecutive tiles of one tile row in the lanes of a
//! vector, so a row of `tw` tiles fills `tw` of them: on a 7×7 image, F(2×2, 3×3)'s rows of 4 tiles leave half of the
//! arithmetic and stores idle, F(4×4, 3×3)'s rows of 2 tiles three quarters. Here a vector holds `LANES` consecutive
//! tiles of the chunk's numbering (image by image, tile row by tile row), wherever their rows begin:
//!
//! - input: each tile's `p × p` input block (`p = size + 2`, `P = p²` values) is first gathered into V's own planes,
//!   value (k, l) of tile t at `(p·k + l)·stride + t`, from zero-padded copies of the band's rows; then each block of
//!   `LANES` tiles is loaded, transformed and stored back in place;
//! - output: each block of `LANES` tiles of M is transformed in place, its `size²` outputs into M's first planes (each
//!   tile's constant addend in its own lane, since a block may span images); then every output row is assembled from
//!   them and stored, with the residual, as the wide path stores it (`transform::OutputPlane::store`).
//!
//! The arithmetic per tile is the wide path's, operation for operation, so both give the same bits. The gathers and
//! scatters are scalar moves, `P` and `size²` per tile; they replace the wide path's column split of every padded row
//! and its idle lanes.

use super::super::Conv2dAddends;
use super::transform::{self, output_planes, Lanes, LANES};
use super::{transform4, Geometry};
use crate::short_copy::copy_short;

/// Most tiles per tile row for which the narrow transforms run: half of `LANES`, so the wide transforms' lanes are then
/// at least half idle.
const MAX_TILES_W: usize = 4;
const _: () = assert!(2 * MAX_TILES_W == LANES);

/// Whether `geo`'s tile rows are narrow enough for this module's transforms.
pub(super) fn is_narrow(geo: &Geometry) -> bool {
    geo.tiles_w <= MAX_TILES_W
}

/// The per-tile arithmetic of one tiling on the `LANES` tiles from `t` on, in place in planes `stride` floats apart.
pub(super) trait TileArithmetic {
    /// Output rows (and columns) per tile.
    const SIZE: usize;
    /// `Bᵀ·d·B`: entry (k, l) of the input blocks in plane `(SIZE + 2)·k + l`, replaced by the transformed values.
    fn input(v: &mut [f32], stride: usize, t: usize);
    /// `Aᵀ·m·A + bias` (one bias per lane): output (r, q) of the tiles into plane `SIZE·r + q`.
    fn output(m: &mut [f32], stride: usize, t: usize, bias: Lanes<LANES>);
}

/// The `LANES` values of plane `xi` from tile `t` on.
#[inline(always)]
fn load(planes: &[f32], stride: usize, t: usize, xi: usize) -> Lanes<LANES> {
    planes[xi * stride + t..][..LANES].try_into().unwrap()
}

#[inline(always)]
fn store(planes: &mut [f32], stride: usize, t: usize, xi: usize, value: &Lanes<LANES>) {
    planes[xi * stride + t..][..LANES].copy_from_slice(value);
}

/// F(2×2, 3×3)'s arithmetic (`transform.rs`).
pub(super) struct F2;

impl TileArithmetic for F2 {
    const SIZE: usize = 2;

    #[inline(always)]
    fn input(v: &mut [f32], stride: usize, t: usize) {
        let mut d = [[0.0; LANES]; 16];
        for (xi, d) in d.iter_mut().enumerate() {
            *d = load(v, stride, t, xi);
        }
        for (xi, value) in transform::input_lanes(&d).iter().enumerate() {
            store(v, stride, t, xi, value);
        }
    }

    #[inline(always)]
    fn output(m: &mut [f32], stride: usize, t: usize, bias: Lanes<LANES>) {
        let mut lanes = [[0.0; LANES]; 16];
        for (xi, lane) in lanes.iter_mut().enumerate() {
            *lane = load(m, stride, t, xi);
        }
        for (xi, value) in transform::output_lanes(&lanes, bias).iter().enumerate() {
            store(m, stride, t, xi, value);
        }
    }
}

/// F(4×4, 3×3)'s arithmetic (`transform4.rs`), in the order of its tile-row transforms: along the rows of the input
/// block and then down the columns, down the columns of M and then along the rows.
pub(super) struct F4;

impl TileArithmetic for F4 {
    const SIZE: usize = 4;

    #[inline(always)]
    fn input(v: &mut [f32], stride: usize, t: usize) {
        // An array literal (a zeroed array filled row by row is zeroed by a call to memset first).
        let row = |k: usize| input_row(v, stride, t, k);
        let rows = [row(0), row(1), row(2), row(3), row(4), row(5)];
        #[allow(clippy::needless_range_loop)]
        // `b` picks a column of `rows` and the planes it goes to
        for b in 0..6 {
            let column = transform4::input_along([
                rows[0][b], rows[1][b], rows[2][b], rows[3][b], rows[4][b], rows[5][b],
            ]);
            for (a, value) in column.iter().enumerate() {
                store(v, stride, t, 6 * a + b, value);
            }
        }
    }

    #[inline(always)]
    fn output(m: &mut [f32], stride: usize, t: usize, bias: Lanes<LANES>) {
        for (r, row) in transform4::output_rows(m, stride, t).iter().enumerate() {
            for (q, value) in transform4::output_along(*row).iter().enumerate() {
                store(m, stride, t, 4 * r + q, &transform::add(*value, bias));
            }
        }
    }
}

/// F(4×4, 3×3)'s `Bᵀ·d` along row k of the input blocks of the `LANES` tiles from `t` on.
#[inline(always)]
fn input_row(v: &[f32], stride: usize, t: usize, k: usize) -> [Lanes<LANES>; 6] {
    let entry = |l: usize| load(v, stride, t, 6 * k + l);
    transform4::input_along([entry(0), entry(1), entry(2), entry(3), entry(4), entry(5)])
}

/// Floats of a zero-padded row as the tiles of tile size `size` read it: the `size·tw + 2` columns of `tw` tiles,
/// padded to those of `MAX_TILES_W` tiles, so that the gathers always read `MAX_TILES_W` tiles' values.
fn line_width(size: usize) -> usize {
    size * MAX_TILES_W + 2
}

/// Work floats [`input_channel`] needs for one band of `bands` tile rows of tile size `size`: the band's
/// `size·bands + 2` padded rows.
pub(super) fn work_len(size: usize, bands: usize) -> usize {
    (size * bands + 2) * line_width(size)
}

/// `V = Bᵀ·d·B` for every tile of tile rows `first..first + bands` of every image of `x` (whole NCHW images), for
/// input channel `c`, into `v` (`[p²][stride]`, tile t at `ξ·stride + t`, `stride = transform::plane_stride(tiles)`).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(super) fn input_channel<T: TileArithmetic>(
    geo: &Geometry,
    x: &[f32],
    c: usize,
    first: usize,
    bands: usize,
    work: &mut [f32],
    v: &mut [f32],
    stride: usize,
) {
    let (size, tw) = (T::SIZE, geo.tiles_w);
    let (side, width) = (size + 2, line_width(size));
    // Padded rows size·first − pad_h .., columns −pad_w .. size·tw + 2 − pad_w, which hold every input column
    // (size·tw ≥ out_w = in_w + 2·pad_w − 2). Only the input columns of rows inside the image are ever written, the
    // same ones for every image, so the rest stays zero: padding.
    let lines = &mut work[..work_len(size, bands)];
    lines.fill(0.0);
    let plane_len = geo.in_h * geo.in_w;
    let image_len = geo.in_channels * plane_len;
    let images = x.len() / image_len;
    for n in 0..images {
        let plane = &x[n * image_len + c * plane_len..][..plane_len];
        for (r, line) in lines.chunks_exact_mut(width).enumerate() {
            if let Some(ih) = (size * first + r)
                .checked_sub(geo.pad_h)
                .filter(|&ih| ih < geo.in_h)
            {
                copy_short(
                    &mut line[geo.pad_w..][..geo.in_w],
                    &plane[ih * geo.in_w..][..geo.in_w],
                );
            }
        }
        // Entry (k, l) of tile (i, j) is column size·j + l of padded row size·i + k. Each gather writes the entries
        // of `MAX_TILES_W` tiles, those past the row's `tw` into the next tile row's (written afterwards) or, after
        // the last one, into the plane's spare floats.
        for i in 0..bands {
            let base = (n * bands + i) * tw;
            for k in 0..side {
                let line = &lines[(size * i + k) * width..][..width];
                for l in 0..side {
                    let tiles: [f32; MAX_TILES_W] = [
                        line[l],
                        line[size + l],
                        line[2 * size + l],
                        line[3 * size + l],
                    ];
                    v[(side * k + l) * stride + base..][..MAX_TILES_W].copy_from_slice(&tiles);
                }
            }
        }
    }
    // The last block's lanes past the tiles read and write the planes' spare `LANES` floats.
    for t in (0..images * bands * tw).step_by(LANES) {
        T::input(v, stride, t);
    }
}

/// Output floats of one row of a narrow tile row: `size·tw` for tile size 4 and `tw ≤ MAX_TILES_W`.
const ROW: usize = 4 * MAX_TILES_W;

/// `Y = Aᵀ·M·A + (bias + channel) + residual` for every tile of tile rows `first..first + bands` of every image of `y`
/// (whole NCHW images; image n takes the addends of image `first_image + n`), from `m` (`[p²][stride]`, overwritten:
/// its first `size²` planes receive the outputs) into output channel `o`; tiles at the bottom and right edges keep only
/// their rows and columns inside.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(super) fn output_channel<T: TileArithmetic>(
    geo: &Geometry,
    m: &mut [f32],
    stride: usize,
    (first, bands): (usize, usize),
    addends: &Conv2dAddends,
    first_image: usize,
    y: &mut [f32],
    o: usize,
) {
    let (size, tw) = (T::SIZE, geo.tiles_w);
    let per_image = bands * tw;
    let images = y.len() / (geo.out_channels * geo.out_h * geo.out_w);
    for t in (0..images * per_image).step_by(LANES) {
        // Lanes past the last tile (their outputs land in the spare floats) take the last image's addend.
        let mut bias = [0.0; LANES];
        for (l, bias) in bias.iter_mut().enumerate() {
            let n = ((t + l) / per_image).min(images - 1);
            *bias = addends.constant(first_image + n, o, geo.out_channels);
        }
        T::output(m, stride, t, bias);
    }
    // Output (r, q) of tile (i, j) is row size·i + r, column size·j + q; rows top to bottom, as `store` needs.
    for (n, mut plane) in output_planes(geo, (first, bands), addends, first_image, y, o) {
        for i in 0..bands {
            let base = (n * bands + i) * tw;
            for r in 0..size {
                let oh = size * (first + i) + r;
                if oh >= geo.out_h {
                    break;
                }
                let mut row = [0.0; ROW];
                for q in 0..size {
                    let from = &m[(size * r + q) * stride + base..][..tw];
                    for (j, &value) in from.iter().enumerate() {
                        row[size * j + q] = value;
                    }
                }
                // The whole array, one vector store where the plane has room for it (see `store`).
                plane.store(oh * geo.out_w, geo.out_w, &row);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! The narrow transforms against the wide ones (`transform.rs`, `transform4.rs`), which compute any width: the
    //! same bits for every tile, both tilings, widths of 1–4 tiles, every padding, whole and partial bands, three
    //! images (so lane blocks span tile rows and images) with a per-image channel addend.

    use super::super::Tiling;
    use super::*;

    fn geometries() -> Vec<Geometry> {
        let mut all = Vec::new();
        for tiling in [Tiling::F2, Tiling::F4] {
            for (in_h, in_w) in [(1, 1), (3, 5), (7, 7), (9, 6), (5, 14), (16, 16)] {
                for (pad_h, pad_w) in [(0, 0), (1, 1), (2, 2), (0, 1), (2, 1)] {
                    let (out_h, out_w) = (in_h + 2 * pad_h - 2, in_w + 2 * pad_w - 2);
                    let geo = Geometry::new(
                        tiling,
                        3,
                        (2, in_h, in_w),
                        (3, out_h, out_w),
                        (pad_h, pad_w),
                    );
                    if in_h + 2 * pad_h >= 3 && in_w + 2 * pad_w >= 3 && is_narrow(&geo) {
                        all.push(geo);
                    }
                }
            }
        }
        all
    }

    fn values(len: usize, seed: usize) -> Vec<f32> {
        (0..len)
            .map(|i| ((i * 7919 + seed * 104729) % 1000) as f32 / 97.0 - 5.0)
            .collect()
    }

    fn bits(v: &[f32]) -> Vec<u32> {
        v.iter().map(|x| x.to_bits()).collect()
    }

    #[test]
    fn narrow_transforms_give_the_wide_ones_bits() {
        let geometries = geometries();
        assert!(geometries.len() > 40, "{} geometries", geometries.len());
        for geo in geometries {
            let x = values(geo.batch * geo.in_channels * geo.in_h * geo.in_w, 1);
            let out_len = geo.batch * geo.out_channels * geo.out_h * geo.out_w;
            let (bias, channel, residual) = (
                values(geo.out_channels, 2),
                values(geo.batch * geo.out_channels, 3),
                values(out_len, 4),
            );
            let addends = Conv2dAddends {
                bias: Some(&bias),
                channel: Some(&channel),
                residual: Some(&residual),
            };
            let points = geo.tiling.points();
            for (first, bands) in [
                (0, geo.tiles_h),
                (geo.tiles_h / 2, geo.tiles_h - geo.tiles_h / 2),
            ] {
                let shape = format!(
                    "{:?} {}×{} pad ({}, {}), tile rows {first}..{}",
                    geo.tiling,
                    geo.in_h,
                    geo.in_w,
                    geo.pad_h,
                    geo.pad_w,
                    first + bands
                );
                let ld = geo.batch * bands * geo.tiles_w;
                let stride = transform::plane_stride(ld);
                let tiles = |v: &[f32]| -> Vec<u32> {
                    v.chunks_exact(stride)
                        .flat_map(|plane| bits(&plane[..ld]))
                        .collect()
                };
                let work_len = work_len(geo.tiling.size(), bands)
                    .max(transform::work_len(&geo, bands))
                    .max(transform4::work_len(&geo, bands));
                let mut work = vec![f32::NAN; work_len];
                let wide_input = |c, work: &mut [f32], v: &mut [f32]| match geo.tiling {
                    Tiling::F2 => {
                        transform::input_channel(&geo, &x, c, first, bands, work, v, stride)
                    }
                    Tiling::F4 => {
                        transform4::input_channel(&geo, &x, c, first, bands, work, v, stride)
                    }
                };
                let narrow_input = |c, work: &mut [f32], v: &mut [f32]| match geo.tiling {
                    Tiling::F2 => input_channel::<F2>(&geo, &x, c, first, bands, work, v, stride),
                    Tiling::F4 => input_channel::<F4>(&geo, &x, c, first, bands, work, v, stride),
                };
                for c in 0..geo.in_channels {
                    let (mut wide, mut narrow) = (
                        vec![f32::NAN; points * stride],
                        vec![f32::NAN; points * stride],
                    );
                    wide_input(c, &mut work, &mut wide);
                    narrow_input(c, &mut work, &mut narrow);
                    assert_eq!(tiles(&narrow), tiles(&wide), "input, {shape}, channel {c}");
                }
                let m = values(points * stride, 5);
                let band = (first, bands);
                let wide_output = |y: &mut [f32], o| match geo.tiling {
                    Tiling::F2 => {
                        transform::output_channel(&geo, &m, stride, band, &addends, 0, y, o)
                    }
                    Tiling::F4 => {
                        transform4::output_channel(&geo, &m, stride, band, &addends, 0, y, o)
                    }
                };
                let narrow_output = |y: &mut [f32], o| {
                    let m = &mut m.clone();
                    match geo.tiling {
                        Tiling::F2 => {
                            output_channel::<F2>(&geo, m, stride, band, &addends, 0, y, o)
                        }
                        Tiling::F4 => {
                            output_channel::<F4>(&geo, m, stride, band, &addends, 0, y, o)
                        }
                    }
                };
                let (mut wide, mut narrow) = (vec![f32::NAN; out_len], vec![f32::NAN; out_len]);
                for o in 0..geo.out_channels {
                    wide_output(&mut wide, o);
                    narrow_output(&mut narrow, o);
                }
                assert_eq!(bits(&narrow), bits(&wide), "output, {shape}");
            }
        }
    }
}
