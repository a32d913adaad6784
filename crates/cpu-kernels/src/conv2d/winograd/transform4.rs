//! The transforms of Winograd's minimal filtering algorithm F(4×4, 3×3) (Lavin & Gray 2015; interpolation points
//! 0, ±1, ±2 and ∞): 36 multiplications per 4×4 output block, where four 2×2 tiles of F(2×2, 3×3) take 64 and a
//! direct convolution 144.
//!
//! ```text
//!       ⎡  ¼     0     0 ⎤        ⎡ 4   0  −5   0   1   0 ⎤
//!       ⎢ −⅙    −⅙    −⅙ ⎥        ⎢ 0  −4  −4   1   1   0 ⎥         ⎡ 1   1   1   1   1   0 ⎤
//!   G = ⎢ −⅙     ⅙    −⅙ ⎥   Bᵀ = ⎢ 0   4  −4  −1   1   0 ⎥    Aᵀ = ⎢ 0   1  −1   2  −2   0 ⎥
//!       ⎢ 1/24  1/12   ⅙ ⎥        ⎢ 0  −2  −1   2   1   0 ⎥         ⎢ 0   1   1   4   4   0 ⎥
//!       ⎢ 1/24 −1/12   ⅙ ⎥        ⎢ 0   2  −1  −2   1   0 ⎥         ⎣ 0   1  −1   8  −8   1 ⎦
//!       ⎣  0     0     1 ⎦        ⎣ 0   4   0  −5   0   1 ⎦
//!
//!   U = G·g·Gᵀ (6×6, from a 3×3 kernel g)     V = Bᵀ·d·B (6×6, from a 6×6 input tile d)     Y = Aᵀ·M·A (4×4)
//! ```
//!
//! Why these matrices (Toom–Cook). The full linear convolution of 3 taps with 4 values has 6 coefficients, those of
//! the product of a degree-2 and a degree-3 polynomial, and a polynomial of degree 5 is fixed by its values at six
//! points: evaluate both factors there (here 0, 1, −1, 2, −2 and the leading coefficient, the point ∞), multiply
//! pointwise (6 multiplications) and interpolate back. The correlation `y_i = Σ_k g_k·d_{i+k}` that a convolution
//! layer computes is the transpose of that linear map in the data, so the roles swap: `Bᵀ` is the transposed
//! interpolation applied to the 6 inputs, `Aᵀ` the transposed evaluation giving the 4 outputs, and `G` evaluates
//! the kernel (scaled so that `Aᵀ` and `Bᵀ` are integer matrices). In 2-D each transform acts on rows and then on
//! columns.
//!
//! Rounding: unlike F(2×2, 3×3), whose transforms multiply by 0, ±1 and ±½ only, these scale by up to 8 (`Aᵀ`),
//! 5 (`Bᵀ`) and ⅙ (`G`, rounded), so the error grows by a larger constant: the tests bound it in `tests/conv2d.rs`.
//!
//! Layouts are those of F(2×2, 3×3) (`transform.rs`) with 36 values per tile: one channel's transformed values are
//! `[36][stride]`, element ξ = 6·a + b of tile t at `ξ·stride + t`. The arithmetic runs on `LANES` consecutive tiles
//! of a tile row at once. Each padded input row is split into its four column phases (column `4j + q` to entry j of
//! phase q), so tile j reads `phase0[j], phase1[j], phase2[j], phase3[j], phase0[j + 1], phase1[j + 1]` and `LANES`
//! consecutive tiles read contiguous lanes.

use super::super::Conv2dAddends;
use super::transform::{add, output_planes, sub, Lanes, LANES};
use super::weights::Value;
use super::Geometry;
use crate::short_copy::copy_short;

/// Transformed values per tile: the 6×6 matrices U, V and M.
pub(super) const POINTS: usize = 36;

/// `G·g` of one column (or row) of a kernel (or one per lane): the 3 taps to the 6 points (multiplications by the
/// rounded reciprocals, not divisions, which cost several multiplications each).
#[inline(always)]
fn kernel_along<L: Value>(g0: L, g1: L, g2: L) -> [L; 6] {
    const SIXTH: f32 = 1.0 / 6.0;
    let (outer, middle) = (g0.add(g2), g1);
    let (quarter_outer, half_middle) = (g0.scale(0.25).add(g2), g1.scale(0.5));
    [
        g0.scale(0.25),
        outer.add(middle).scale(-SIXTH),
        outer.sub(middle).scale(-SIXTH),
        quarter_outer.add(half_middle).scale(SIXTH),
        quarter_outer.sub(half_middle).scale(SIXTH),
        g2,
    ]
}

/// `G·g·Gᵀ` of one 3×3 kernel `g` (row-major; or one per lane) as 36 values, ξ = 6·a + b.
#[inline(always)]
pub(super) fn kernel<L: Value>(g: &[L; 9]) -> [L; POINTS] {
    // Columns of g first (t = G·g, 6×3), then the rows of t (t·Gᵀ, 6×6).
    let cols = [
        kernel_along(g[0], g[3], g[6]),
        kernel_along(g[1], g[4], g[7]),
        kernel_along(g[2], g[5], g[8]),
    ];
    let mut u = [g[0]; POINTS];
    for a in 0..6 {
        u[6 * a..6 * a + 6].copy_from_slice(&kernel_along(cols[0][a], cols[1][a], cols[2][a]));
    }
    u
}

/// `a·s + b` lane by lane, one rounding each (`f32::mul_add`: an FMA instruction in `dispatch!`'s builds).
#[inline(always)]
fn scale_add<const N: usize>(a: Lanes<N>, s: f32, mut b: Lanes<N>) -> Lanes<N> {
    for (b, a) in b.iter_mut().zip(a) {
        *b = a.mul_add(s, *b);
    }
    b
}

/// `Bᵀ·d` of one row (or column) of `N` tiles: 12 additions or fused multiply-adds for 6 values.
#[inline(always)]
pub(super) fn input_along<const N: usize>(d: [Lanes<N>; 6]) -> [Lanes<N>; 6] {
    let [d0, d1, d2, d3, d4, d5] = d;
    // Rows 1 and 2 of Bᵀ are (d4 − 4·d2) ± (d3 − 4·d1); rows 3 and 4 are (d4 − d2) ± 2·(d3 − d1).
    let (even4, odd4) = (scale_add(d2, -4.0, d4), scale_add(d1, -4.0, d3));
    let (even1, odd1) = (sub(d4, d2), sub(d3, d1));
    [
        scale_add(d0, 4.0, scale_add(d2, -5.0, d4)),
        add(even4, odd4),
        sub(even4, odd4),
        scale_add(odd1, 2.0, even1),
        scale_add(odd1, -2.0, even1),
        scale_add(d1, 4.0, scale_add(d3, -5.0, d5)),
    ]
}

/// `Aᵀ·m` of one column (or row) of `N` tiles: the 6 points back to 4 outputs, 10 additions or fused multiply-adds.
#[inline(always)]
pub(super) fn output_along<const N: usize>(m: [Lanes<N>; 6]) -> [Lanes<N>; 4] {
    let [m0, m1, m2, m3, m4, m5] = m;
    let (sum12, diff12) = (add(m1, m2), sub(m1, m2));
    let (sum34, diff34) = (add(m3, m4), sub(m3, m4));
    [
        add(add(m0, sum12), sum34),
        scale_add(diff34, 2.0, diff12),
        scale_add(sum34, 4.0, sum12),
        add(scale_add(diff34, 8.0, diff12), m5),
    ]
}

/// Entries per column phase of a split padded row: the `tiles_w + 1` the tiles read, plus the `LANES` a lane block
/// reads past them, rounded to whole blocks of `LANES` (so the row splits in whole blocks of `4·LANES` floats).
fn phase_width(geo: &Geometry) -> usize {
    geo.tiles_w.next_multiple_of(LANES) + LANES
}

/// Work floats the input transform needs for one band of `bands` tile rows: its `4·bands + 2` padded rows, and the
/// same rows split into phases.
pub(super) fn work_len(geo: &Geometry, bands: usize) -> usize {
    2 * (4 * bands + 2) * 4 * phase_width(geo)
}

/// `phases[q·width + j] = line[4j + q]`: a padded row into its four column phases, a block of `4·LANES` floats at a
/// time (fixed-size arrays, which compile to vector shuffles).
#[inline(always)]
fn split_phases(line: &[f32], phases: &mut [f32], width: usize) {
    for (block_index, block) in line.chunks_exact(4 * LANES).enumerate() {
        let block: &[f32; 4 * LANES] = block.try_into().unwrap();
        for q in 0..4 {
            phases[q * width + block_index * LANES..][..LANES]
                .copy_from_slice(&std::array::from_fn::<f32, LANES, _>(|j| block[4 * j + q]));
        }
    }
}

/// `V = Bᵀ·d·B` for every tile of tile rows `first..first + bands` of every image of `x` (whole NCHW images), for
/// input channel `c`, into `v` (`[36][stride]`, tile t at `ξ·stride + t`, `stride = plane_stride(tiles)`).
///
/// Each padded row (rows `4·first − pad_h ..`, columns `−pad_w ..`) is copied into a line that is zero outside the
/// input columns, then split into its column phases. A tile row's last lanes run past it: they read the zeros and
/// leftovers after the tiles' phase entries and store into the next tile row (or the plane's spare `LANES` floats),
/// which is written afterwards.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(super) fn input_channel(
    geo: &Geometry,
    x: &[f32],
    c: usize,
    first: usize,
    bands: usize,
    work: &mut [f32],
    v: &mut [f32],
    stride: usize,
) {
    let (tw, width) = (geo.tiles_w, phase_width(geo));
    let row_len = 4 * width;
    let (phases, lines) = work[..work_len(geo, bands)].split_at_mut((4 * bands + 2) * row_len);
    // Only the input columns pad_w .. pad_w + in_w of rows inside the image are ever written, the same ones for every
    // image: the rest stays zero (padding). Every padded row's columns fit: 4·tw + 2 ≥ out_w + 2 = in_w + 2·pad_w.
    lines.fill(0.0);
    let plane_len = geo.in_h * geo.in_w;
    let image_len = geo.in_channels * plane_len;
    for n in 0..x.len() / image_len {
        let plane_start = n * image_len + c * plane_len;
        // Every row is copied before any is split: a split right after its row's copy would read the row while the
        // copy's stores are still in flight, and a store cannot be forwarded to a wider load that spans it and
        // others, so every row would stall until its stores had reached the cache.
        for (r, line) in lines.chunks_exact_mut(row_len).enumerate() {
            if let Some(ih) = (4 * first + r)
                .checked_sub(geo.pad_h)
                .filter(|&ih| ih < geo.in_h)
            {
                let row = &x[plane_start + ih * geo.in_w..][..geo.in_w];
                copy_short(&mut line[geo.pad_w..][..geo.in_w], row);
            }
        }
        for (split, line) in phases
            .chunks_exact_mut(row_len)
            .zip(lines.chunks_exact(row_len))
        {
            split_phases(line, split, width);
        }
        for i in 0..bands {
            let base = (n * bands + i) * tw;
            for j in (0..tw).step_by(LANES) {
                // Bᵀ·d along each of the tile's 6 rows, then down each column of the result, whose 6 values go
                // straight to their planes. (Plain loops and an array literal, not `array::from_fn`, whose closures
                // are not inlined into `dispatch!`'s builds, so their `mul_add`s would become calls to libm; nor a
                // zeroed array filled row by row, which is zeroed by a call to memset first.)
                let row = |k: usize| &phases[(4 * i + k) * row_len..][..row_len];
                let rows = [
                    input_row(row(0), width, j),
                    input_row(row(1), width, j),
                    input_row(row(2), width, j),
                    input_row(row(3), width, j),
                    input_row(row(4), width, j),
                    input_row(row(5), width, j),
                ];
                for b in 0..6 {
                    let column = input_along([
                        rows[0][b], rows[1][b], rows[2][b], rows[3][b], rows[4][b], rows[5][b],
                    ]);
                    for (a, value) in column.iter().enumerate() {
                        v[(6 * a + b) * stride + base + j..][..LANES].copy_from_slice(value);
                    }
                }
            }
        }
    }
}

/// `Bᵀ·d` along one input row of the `LANES` tiles from tile `j` on, from the row split into its column phases
/// (`width` entries each): tile j's 6 columns are `phase0[j], phase1[j], phase2[j], phase3[j], phase0[j + 1],
/// phase1[j + 1]`.
#[inline(always)]
fn input_row(split: &[f32], width: usize, j: usize) -> [Lanes<LANES>; 6] {
    let phase = |q: usize, from: usize| -> Lanes<LANES> {
        split[q * width + j + from..][..LANES].try_into().unwrap()
    };
    input_along([
        phase(0, 0),
        phase(1, 0),
        phase(2, 0),
        phase(3, 0),
        phase(0, 1),
        phase(1, 1),
    ])
}

/// `Aᵀ·m` (4×6) of the `LANES` tiles from `tile` on, entry (a, b) of M in plane `6a + b` of `m` (planes `stride`
/// floats apart): down each of the 6 columns, returned as the 4 rows of the result, `[r][b]` = entry (r, b). (Array
/// literals: a zeroed array filled column by column is zeroed first, 12 vector stores per call.)
#[inline(always)]
pub(super) fn output_rows(m: &[f32], stride: usize, tile: usize) -> [[Lanes<LANES>; 6]; 4] {
    let c = [
        output_column(m, stride, tile, 0),
        output_column(m, stride, tile, 1),
        output_column(m, stride, tile, 2),
        output_column(m, stride, tile, 3),
        output_column(m, stride, tile, 4),
        output_column(m, stride, tile, 5),
    ];
    let row = |r: usize| [c[0][r], c[1][r], c[2][r], c[3][r], c[4][r], c[5][r]];
    [row(0), row(1), row(2), row(3)]
}

/// `Aᵀ·m` down column `b` of M (see [`output_rows`]).
#[inline(always)]
fn output_column(m: &[f32], stride: usize, tile: usize, b: usize) -> [Lanes<LANES>; 4] {
    let entry = |a: usize| -> Lanes<LANES> {
        m[(6 * a + b) * stride + tile..][..LANES]
            .try_into()
            .unwrap()
    };
    output_along([entry(0), entry(1), entry(2), entry(3), entry(4), entry(5)])
}

/// `[y[0][0], y[1][0], y[2][0], y[3][0], y[0][1], …]`: the four output columns of `LANES` tiles in row order, by two
/// rounds of pairwise interleaving (columns 0 with 2 and 1 with 3, then the two results), which compile to vector
/// unpacks and permutes.
#[inline(always)]
fn interleave(y: &[Lanes<LANES>; 4]) -> [f32; 4 * LANES] {
    let pairs = |left: &Lanes<LANES>, right: &Lanes<LANES>| -> [f32; 2 * LANES] {
        std::array::from_fn(|i| {
            if i % 2 == 0 {
                left[i / 2]
            } else {
                right[i / 2]
            }
        })
    };
    let (even, odd) = (pairs(&y[0], &y[2]), pairs(&y[1], &y[3]));
    std::array::from_fn(|i| if i % 2 == 0 { even[i / 2] } else { odd[i / 2] })
}

/// `Y = Aᵀ·M·A + (bias + channel) + residual` for every tile of tile rows `first..first + bands` of every image of
/// `y` (whole NCHW images; image n takes the addends of image `first_image + n`), from `m` (`[36][stride]`) into
/// output channel `o`; tiles at the bottom and right edges keep only their rows and columns inside. The walk and the
/// stores are F(2×2, 3×3)'s (`transform::output_blocks`), with `4·LANES`-float row pieces.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(super) fn output_channel(
    geo: &Geometry,
    m: &[f32],
    stride: usize,
    (first, bands): (usize, usize),
    addends: &Conv2dAddends,
    first_image: usize,
    y: &mut [f32],
    o: usize,
) {
    let tw = geo.tiles_w;
    for (n, mut plane) in output_planes(geo, (first, bands), addends, first_image, y, o) {
        for i in 0..bands {
            // Lane blocks right to left (see `transform::OutputPlane::store`).
            for j in (0..tw).step_by(LANES).rev() {
                let tile = (n * bands + i) * tw + j;
                // Aᵀ·m down each of the 6 columns, then along each row of the result.
                for (r, row) in output_rows(m, stride, tile).iter().enumerate() {
                    let oh = 4 * (first + i) + r;
                    if oh >= geo.out_h {
                        break;
                    }
                    let mut values = output_along(*row);
                    for value in &mut values {
                        *value = add(*value, [plane.bias; LANES]);
                    }
                    let at = oh * geo.out_w + 4 * j;
                    plane.store(at, (4 * LANES).min(geo.out_w - 4 * j), &interleave(&values));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The 1-D algorithm `y = Aᵀ·[(G·g) ⊙ (Bᵀ·d)]` against the direct correlation `y_i = Σ_k g_k·d_{i+k}`, on
    /// small integers (every intermediate is a multiple of 1/24 below 2^10, exact in f32 but for G's rounding of ⅙
    /// and 1/24, hence the tolerance of a few units in the last place of the largest term).
    #[test]
    fn one_dimensional_f4_equals_direct_correlation() {
        for seed in 0..50u32 {
            let value = |i: u32| ((seed * 7 + i * 13) % 11) as f32 - 5.0;
            let g = [value(0), value(1), value(2)];
            let d: [f32; 6] = std::array::from_fn(|i| value(3 + i as u32));
            let u = kernel_along(g[0], g[1], g[2]);
            let v = input_along(d.map(|d| [d]));
            let m = std::array::from_fn(|xi| [u[xi] * v[xi][0]]);
            let y = output_along(m);
            for (i, y) in y.iter().enumerate() {
                let want: f32 = (0..3).map(|k| g[k] * d[i + k]).sum();
                assert!(
                    (y[0] - want).abs() <= 1e-4,
                    "output {i}: {} against {want}",
                    y[0]
                );
            }
        }
    }
}
