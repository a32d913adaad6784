//! The three transforms of Winograd's minimal filtering algorithm F(2×2, 3×3):
//!
//! ```text
//!       ⎡ 1   0   0 ⎤          ⎡ 1   0  −1   0 ⎤
//!   G = ⎢ ½   ½   ½ ⎥     Bᵀ = ⎢ 0   1   1   0 ⎥     Aᵀ = ⎡ 1   1   1   0 ⎤
//!       ⎢ ½  −½   ½ ⎥          ⎢ 0  −1   1   0 ⎥          ⎣ 0   1  −1  −1 ⎦
//!       ⎣ 0   0   1 ⎦          ⎣ 0   1   0  −1 ⎦
//!
//!   U = G·g·Gᵀ (4×4, from a 3×3 kernel g)     V = Bᵀ·d·B (4×4, from a 4×4 input tile d)     Y = Aᵀ·M·A (2×2)
//! ```
//!
//! so that `Y = Aᵀ·(U ⊙ V)·A` is the 2×2 block of the (cross-)correlation of `d` with `g`. Each 2-D transform is the
//! 1-D one along rows and then along columns. In 1-D (`y0 = Σ g_k d_k`, `y1 = Σ g_k d_{k+1}`):
//! `m0 = g0·(d0 − d2)`, `m1 = ½(g0 + g1 + g2)·(d1 + d2)`, `m2 = ½(g0 − g1 + g2)·(d2 − d1)`, `m3 = g2·(d1 − d3)`,
//! `y0 = m0 + m1 + m2`, `y1 = m1 − m2 − m3`.
//!
//! Layouts: the transformed values of one channel (an input channel of V, an output channel of M) are
//! `[16][stride]`, element ξ of tile t at `ξ·stride + t`, ξ = 4·a + b for row a, column b of the 4×4 matrix; the tiles
//! of a chunk are numbered image by image, row by row. The arithmetic runs on `LANES` consecutive tiles of a tile row
//! at once (`[f32; LANES]` per matrix entry, which compiles to one vector register each).
//!
//! The weight gradient's transforms are channel-last instead (V `[16][tiles][C']`, E `[16][tiles][O']`, see
//! [`TileRange`]): its rows are first staged channel-last, `LANES` channels at a time ([`stage_input`],
//! [`stage_gradient`]), and the same arithmetic then runs on `LANES` channels of one tile at once ([`input_tiles`],
//! [`gradient_tiles`]).

use super::super::bias_gradient::{accumulate, Partials};
use super::super::Conv2dAddends;
use super::weights::Value;
use super::Geometry;
use crate::gemm::transpose_into;
use crate::short_copy::copy_short;

/// `G·g` of one column (or row) of a kernel: the 3 taps to the 4 points.
#[inline(always)]
fn kernel_along<L: Value>(g0: L, g1: L, g2: L) -> [L; 4] {
    [
        g0,
        g0.add(g1).add(g2).scale(0.5),
        g0.sub(g1).add(g2).scale(0.5),
        g2,
    ]
}

/// `G·g·Gᵀ` of one 3×3 kernel `g` (row-major; or one per lane) as 16 values, ξ = 4·a + b.
#[inline(always)]
pub(super) fn kernel<L: Value>(g: &[L; 9]) -> [L; 16] {
    // Columns of g first (t = G·g, 4×3), then the rows of t (t·Gᵀ, 4×4).
    let cols = [
        kernel_along(g[0], g[3], g[6]),
        kernel_along(g[1], g[4], g[7]),
        kernel_along(g[2], g[5], g[8]),
    ];
    let mut u = [g[0]; 16];
    for a in 0..4 {
        u[4 * a..4 * a + 4].copy_from_slice(&kernel_along(cols[0][a], cols[1][a], cols[2][a]));
    }
    u
}

/// `Gᵀ·m·G` (3×3, row-major) of one 4×4 matrix `m` (ξ = 4·a + b): the weight gradient's output transform.
pub(super) fn kernel_gradient(m: &[f32; 16]) -> [f32; 9] {
    let along = |m0: f32, m1: f32, m2: f32, m3: f32| {
        [m0 + 0.5 * (m1 + m2), 0.5 * (m1 - m2), 0.5 * (m1 + m2) + m3]
    };
    let rows: [[f32; 3]; 4] =
        std::array::from_fn(|a| along(m[4 * a], m[4 * a + 1], m[4 * a + 2], m[4 * a + 3]));
    let mut w = [0.0; 9];
    for l in 0..3 {
        let col = along(rows[0][l], rows[1][l], rows[2][l], rows[3][l]);
        for k in 0..3 {
            w[3 * k + l] = col[k];
        }
    }
    w
}

/// Tiles transformed together: one AVX2 register of f32.
pub(super) const LANES: usize = 8;

/// One value of the transforms for `N` tiles at once.
pub(super) type Lanes<const N: usize> = [f32; N];

#[inline(always)]
pub(super) fn add<const N: usize>(mut a: Lanes<N>, b: Lanes<N>) -> Lanes<N> {
    for (a, b) in a.iter_mut().zip(b) {
        *a += b;
    }
    a
}

#[inline(always)]
pub(super) fn sub<const N: usize>(mut a: Lanes<N>, b: Lanes<N>) -> Lanes<N> {
    for (a, b) in a.iter_mut().zip(b) {
        *a -= b;
    }
    a
}

/// `Bᵀ·d·B` of `N` tiles, `d[4k + l]` = entry (k, l): along each row first, then down each column. (Array literals
/// throughout: zeroed arrays filled entry by entry are zeroed first, with vector stores the compiler keeps.)
#[inline(always)]
pub(super) fn input_lanes<const N: usize>(d: &[Lanes<N>; 16]) -> [Lanes<N>; 16] {
    // Bᵀ·a of one row or column a.
    let along = |a: [Lanes<N>; 4]| {
        [
            sub(a[0], a[2]),
            add(a[1], a[2]),
            sub(a[2], a[1]),
            sub(a[1], a[3]),
        ]
    };
    let row = |k: usize| along([d[4 * k], d[4 * k + 1], d[4 * k + 2], d[4 * k + 3]]);
    let h = [row(0), row(1), row(2), row(3)];
    let column = |b: usize| along([h[0][b], h[1][b], h[2][b], h[3][b]]);
    let c = [column(0), column(1), column(2), column(3)];
    [
        c[0][0], c[1][0], c[2][0], c[3][0], c[0][1], c[1][1], c[2][1], c[3][1], c[0][2], c[1][2],
        c[2][2], c[3][2], c[0][3], c[1][3], c[2][3], c[3][3],
    ]
}

/// `A·e·Aᵀ` of `N` 2×2 output-gradient blocks, `e[2r + q]` = entry (r, q): along each row first, then down each
/// column (the transposed output transform; the weight gradient's "kernel" side).
#[inline(always)]
fn gradient_lanes<const N: usize>(e: &[Lanes<N>; 4]) -> [Lanes<N>; 16] {
    let along = |a0: Lanes<N>, a1: Lanes<N>| [a0, add(a0, a1), sub(a0, a1), sub([0.0; N], a1)];
    let rows = [along(e[0], e[1]), along(e[2], e[3])];
    let column = |b: usize| along(rows[0][b], rows[1][b]);
    let c = [column(0), column(1), column(2), column(3)];
    // Entry (a, b) is c[b][a] (an array literal, as in `input_lanes`).
    [
        c[0][0], c[1][0], c[2][0], c[3][0], c[0][1], c[1][1], c[2][1], c[3][1], c[0][2], c[1][2],
        c[2][2], c[3][2], c[0][3], c[1][3], c[2][3], c[3][3],
    ]
}

/// `Aᵀ·m·A + bias` of `N` tiles (`bias` per lane), `m[4a + b]` = entry (a, b); returns `y[2r + q]` = entry (r, q).
#[inline(always)]
pub(super) fn output_lanes<const N: usize>(m: &[Lanes<N>; 16], bias: Lanes<N>) -> [Lanes<N>; 4] {
    let mut s = [[0.0; N]; 8];
    for b in 0..4 {
        s[b] = add(add(m[b], m[4 + b]), m[8 + b]);
        s[4 + b] = sub(sub(m[4 + b], m[8 + b]), m[12 + b]);
    }
    let mut y = [[0.0; N]; 4];
    for r in 0..2 {
        let s = |b: usize| s[4 * r + b];
        y[2 * r] = add(add(add(s(0), s(1)), s(2)), bias);
        y[2 * r + 1] = add(sub(sub(s(1), s(2)), s(3)), bias);
    }
    y
}

/// `even[j] = row[2j]`, `odd[j] = row[2j + 1]` for the `len` floats of a row at the start of `row` (`even` needs
/// `⌈len/2⌉` floats, `odd` `⌊len/2⌋`). Blocks of 16 go through fixed-size arrays, which compile to two vector
/// shuffles, and so does the last, shorter piece (often the whole row of a small image): read as a full block when
/// `row` holds 16 floats from its start (the floats after the row, whatever they are, then land in `even` and `odd`
/// past the row's values: `LANES` floats are written from the piece's start, so both need that room), else copied
/// into a zero-padded block first. The copy is the slow way: its short stores followed by the block's wide loads
/// defeat store-to-load forwarding, so it is kept for a row at the very end of its slice.
#[inline(always)]
fn deinterleave(row: &[f32], len: usize, even: &mut [f32], odd: &mut [f32]) {
    let blocks = len / (2 * LANES);
    let (even_blocks, even_rest) = even.split_at_mut(blocks * LANES);
    let (odd_blocks, odd_rest) = odd.split_at_mut(blocks * LANES);
    let mut pairs = row[..len].chunks_exact(2 * LANES);
    let split = even_blocks
        .chunks_exact_mut(LANES)
        .zip(odd_blocks.chunks_exact_mut(LANES));
    for (block, (e, o)) in (&mut pairs).zip(split) {
        let block: &[f32; 2 * LANES] = block.try_into().unwrap();
        e.copy_from_slice(&std::array::from_fn::<f32, LANES, _>(|j| block[2 * j]));
        o.copy_from_slice(&std::array::from_fn::<f32, LANES, _>(|j| block[2 * j + 1]));
    }
    let rest = pairs.remainder();
    if rest.is_empty() {
        return;
    }
    let start = blocks * 2 * LANES;
    if let Some(block) = row.get(start..start + 2 * LANES) {
        let block: &[f32; 2 * LANES] = block.try_into().unwrap();
        even_rest[..LANES].copy_from_slice(&std::array::from_fn::<f32, LANES, _>(|j| block[2 * j]));
        odd_rest[..LANES]
            .copy_from_slice(&std::array::from_fn::<f32, LANES, _>(|j| block[2 * j + 1]));
        return;
    }
    let mut block = [0.0; 2 * LANES];
    copy_short(&mut block[..rest.len()], rest);
    let (even_len, odd_len) = (rest.len().div_ceil(2), rest.len() / 2);
    let even = std::array::from_fn::<f32, LANES, _>(|j| block[2 * j]);
    let odd = std::array::from_fn::<f32, LANES, _>(|j| block[2 * j + 1]);
    copy_short(&mut even_rest[..even_len], &even[..even_len]);
    copy_short(&mut odd_rest[..odd_len], &odd[..odd_len]);
}

/// Zeros a slice of at most 2 floats by plain stores (a `fill` of unknown length becomes a call to memset).
#[inline(always)]
fn zero_few(few: &mut [f32]) {
    debug_assert!(few.len() <= 2, "{} floats", few.len());
    for slot in few.iter_mut().take(2) {
        *slot = 0.0;
    }
}

/// `[left[0], right[0], left[1], right[1], …]`: the two output columns of `LANES` tiles in row order (one vector
/// shuffle per half).
#[inline(always)]
fn interleave(left: &Lanes<LANES>, right: &Lanes<LANES>) -> [f32; 2 * LANES] {
    std::array::from_fn(|i| {
        if i % 2 == 0 {
            left[i / 2]
        } else {
            right[i / 2]
        }
    })
}

/// Floats between the transformed planes of one channel for a chunk of `ld` tiles: `LANES` more than the tiles, so
/// the vector stores of a tile row's last lanes (which run past the row) stay inside the plane.
pub(super) fn plane_stride(ld: usize) -> usize {
    ld + LANES
}

/// Work floats the input transform needs for one band of `bands` tile rows: its padded rows split by parity.
pub(super) fn work_len(geo: &Geometry, bands: usize) -> usize {
    2 * (2 * bands + 2) * (geo.tiles_w + 1 + LANES)
}

/// `V = Bᵀ·d·B` for every tile of tile rows `first..first + bands` of every image of `x` (whole NCHW images), for
/// input channel `c`, into `v` (`[16][stride]`, tile t at `ξ·stride + t`, `stride = plane_stride(tiles)`).
///
/// Each padded input row is split into its even and odd columns, so tile `j` of a row reads `even[j], odd[j],
/// even[j + 1], odd[j + 1]` and `LANES` consecutive tiles read contiguous lanes. A row's last lanes run past it:
/// they read the zeros after the split rows and store into the next tile row (or the plane's spare `LANES` floats),
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
    let (tw, width) = (geo.tiles_w, geo.tiles_w + 1 + LANES);
    let rows = 2 * bands + 2;
    let (even, odd) = work[..2 * rows * width].split_at_mut(rows * width);
    let plane_len = geo.in_h * geo.in_w;
    let image_len = geo.in_channels * plane_len;
    for n in 0..x.len() / image_len {
        let plane_start = n * image_len + c * plane_len;
        // Padded rows 2·first − pad_h .., columns −pad_w .. 2·tw + 2 − pad_w (then zeros), split by parity. Every
        // padded row holds all in_w input columns, since 2·tw ≥ out_w = in_w + 2·pad_w − 2.
        let split = even
            .chunks_exact_mut(width)
            .zip(odd.chunks_exact_mut(width));
        for (r, (e, o)) in split.enumerate() {
            let Some(ih) = (2 * first + r)
                .checked_sub(geo.pad_h)
                .filter(|&ih| ih < geo.in_h)
            else {
                e.fill(0.0);
                o.fill(0.0);
                continue;
            };
            // The row and the rest of the chunk after it, for the last piece's full-block read.
            let row = &x[plane_start + ih * geo.in_w..];
            // Input column k is padded column k + pad_w, which goes to column (k + pad_w) / 2 of its parity: with an
            // even pad the even input columns land in `e` from pad_w / 2 on, with an odd pad in `o` from
            // (pad_w − 1) / 2 on, and the odd input columns in the other one, one column later for an odd pad.
            let pad = geo.pad_w;
            let (to_even, to_odd, even_at, odd_at) = if pad.is_multiple_of(2) {
                (e, o, pad / 2, pad / 2)
            } else {
                (o, e, pad / 2, pad / 2 + 1)
            };
            // The tiles read split columns 0..=tw; past them only lanes beyond the row, whose values are dropped.
            // Of those columns, at most one before the input (pad_w ≤ 2) and two after it are padding.
            let (even_len, odd_len) = (geo.in_w.div_ceil(2), geo.in_w / 2);
            deinterleave(
                row,
                geo.in_w,
                &mut to_even[even_at..],
                &mut to_odd[odd_at..],
            );
            zero_few(&mut to_even[..even_at]);
            zero_few(&mut to_odd[..odd_at]);
            zero_few(&mut to_even[even_at + even_len..=tw]);
            zero_few(&mut to_odd[odd_at + odd_len..=tw]);
        }
        for i in 0..bands {
            let base = (n * bands + i) * tw;
            for j in (0..tw).step_by(LANES) {
                let mut d = [[0.0; LANES]; 16];
                for k in 0..4 {
                    let (e, o) = (
                        &even[(2 * i + k) * width + j..],
                        &odd[(2 * i + k) * width + j..],
                    );
                    d[4 * k].copy_from_slice(&e[..LANES]);
                    d[4 * k + 1].copy_from_slice(&o[..LANES]);
                    d[4 * k + 2].copy_from_slice(&e[1..=LANES]);
                    d[4 * k + 3].copy_from_slice(&o[1..=LANES]);
                }
                for (q, value) in input_lanes(&d).iter().enumerate() {
                    v[q * stride + base + j..][..LANES].copy_from_slice(value);
                }
            }
        }
    }
}

/// `Y = Aᵀ·M·A + (bias + channel) + residual` (the addends of image `first_image + n` for the n-th image of `y`)
/// for every tile of tile rows `first..first + bands` of every image of `y` (whole NCHW images), from `m`
/// (`[16][stride]`, as `v` above) into output channel `o`; tiles at the bottom and right edges keep only their rows
/// and columns inside. A row's last lanes read past it (into the next row or the plane's spare floats) and are
/// dropped.
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
            // Lane blocks right to left (see `OutputPlane::store`).
            for j in (0..tw).step_by(LANES).rev() {
                let tile = (n * bands + i) * tw + j;
                let mut lanes = [[0.0; LANES]; 16];
                for (q, lane) in lanes.iter_mut().enumerate() {
                    lane.copy_from_slice(&m[q * stride + tile..][..LANES]);
                }
                let values = output_lanes(&lanes, [plane.bias; LANES]);
                for r in 0..2 {
                    let oh = 2 * (first + i) + r;
                    if oh >= geo.out_h {
                        break;
                    }
                    // Output columns 2j .. 2j + 2·LANES of this row (fewer at its end), interleaving the tiles'
                    // two columns; an odd last column takes only the left one.
                    let at = oh * geo.out_w + 2 * j;
                    let len = (2 * LANES).min(geo.out_w - 2 * j);
                    plane.store(at, len, &interleave(&values[2 * r], &values[2 * r + 1]));
                }
            }
        }
    }
}

/// One output plane (channel `o` of one image) as an output transform (either tiling) writes it: the floats a whole
/// row block may run into, the plane's constant addend and its residual plane.
pub(super) struct OutputPlane<'a> {
    room: &'a mut [f32],
    pub(super) bias: f32,
    residual: Option<&'a [f32]>,
}

impl OutputPlane<'_> {
    /// Writes `block[..len]` at `at` in the plane, plus the residual: the whole block (one vector store; a short copy
    /// of the piece's exact length splits into several stores and branches) where it stays inside the room, else the
    /// piece alone.
    ///
    /// The room is what this call or a later one writes afterwards: the floats after the piece in the same plane
    /// (bands run top to bottom, a tile's output rows top to bottom, and the lane blocks of a tile row right to left,
    /// so the rightmost, the only one that runs past its row's end, is stored before the next row, which it spills
    /// into, is written) or, when the call covers whole planes and `o` is not the last channel, the image's later
    /// channels too (the caller runs the channels in ascending order).
    #[inline(always)]
    pub(super) fn store(&mut self, at: usize, len: usize, block: &[f32]) {
        match self.room.get_mut(at..at + block.len()) {
            Some(whole) => whole.copy_from_slice(block),
            None => copy_short(&mut self.room[at..at + len], &block[..len]),
        }
        if let Some(residual) = self.residual {
            let row = &mut self.room[at..at + len];
            for (y, &s) in row.iter_mut().zip(&residual[at..at + len]) {
                *y += s;
            }
        }
    }
}

/// Output channel `o`'s plane of every image `n` of `y` (whole NCHW images), with the addends of image
/// `first_image + n`, for an output transform of the band `first..first + bands` (see [`OutputPlane::store`]).
#[inline(always)]
pub(super) fn output_planes<'a>(
    geo: &Geometry,
    (first, bands): (usize, usize),
    addends: &'a Conv2dAddends,
    first_image: usize,
    y: &'a mut [f32],
    o: usize,
) -> impl Iterator<Item = (usize, OutputPlane<'a>)> {
    let (plane_len, out_channels) = (geo.out_h * geo.out_w, geo.out_channels);
    let spill_to_next_channel = first == 0 && bands == geo.tiles_h && o + 1 < out_channels;
    y.chunks_exact_mut(out_channels * plane_len)
        .enumerate()
        .map(move |(n, y_n)| {
            let room = if spill_to_next_channel {
                &mut y_n[o * plane_len..]
            } else {
                &mut y_n[o * plane_len..][..plane_len]
            };
            let image = first_image + n;
            let plane = OutputPlane {
                room,
                bias: addends.constant(image, o, out_channels),
                residual: addends.residual_plane(image, o, out_channels, plane_len),
            };
            (n, plane)
        })
}

/// Floats per tile in the weight gradient's channel-last planes: the channels, rounded up to whole blocks of `LANES`
/// (a block's lanes past the last channel hold zeros and are never read).
pub(super) fn channel_row(channels: usize) -> usize {
    channels.next_multiple_of(LANES)
}

/// Floats between the weight gradient's channel-last planes (one per ξ) for `tiles` tiles of `row` floats: one cache
/// line more than the tiles take, so the 16 stores of a tile do not all map to one cache set when the tiles' floats
/// are a multiple of 4 KiB.
pub(super) fn channel_plane_stride(tiles: usize, row: usize) -> usize {
    tiles * row + 16
}

/// A range of tile rows of the weight gradient's transformed values, which are channel-last: `[16][tiles][row]`,
/// value ξ of tile t and channel c at `ξ·plane + t·row + c` (`row = channel_row(channels)`, `plane =
/// channel_plane_stride(tiles, row)`). Each matrix ξ is then a row-major `tiles × channels` matrix, which the GEMM
/// packs by plain copies. The transforms run a range of tiles per task, writing each tile's whole row in every plane
/// (so each cache line is filled at once); the ranges of one buffer ([`tile_ranges`]) hold disjoint rows of the same
/// 16 planes, so each holds a pointer to the buffer and writes only its own rows.
pub(super) struct TileRange<'a> {
    ptr: *mut f32,
    len: usize,
    plane: usize,
    row: usize,
    tiles: std::ops::Range<usize>,
    _planes: std::marker::PhantomData<&'a mut [f32]>,
}

// SAFETY: a range writes only its own rows (`store`), which no other range of the buffer addresses, and the buffer
// is mutably borrowed for the ranges' lives.
unsafe impl Send for TileRange<'_> {}

/// `planes` (at least `16·plane` floats, rows of `row` floats) cut into ranges of `per_range` tiles (the last one
/// shorter) covering `tiles` tiles, each borrowing `planes` for its life.
pub(super) fn tile_ranges(
    planes: &mut [f32],
    (plane, row): (usize, usize),
    tiles: usize,
    per_range: usize,
) -> Vec<TileRange<'_>> {
    assert!(planes.len() >= 16 * plane && tiles * row <= plane && per_range > 0);
    let (ptr, len) = (planes.as_mut_ptr(), planes.len());
    (0..tiles)
        .step_by(per_range)
        .map(|start| TileRange {
            ptr,
            len,
            plane,
            row,
            tiles: start..(start + per_range).min(tiles),
            _planes: std::marker::PhantomData,
        })
        .collect()
}

impl TileRange<'_> {
    /// Writes the 16 values of tile `t` (inside the range) for channels `c0 .. c0 + LANES`.
    #[inline(always)]
    fn store(&mut self, t: usize, c0: usize, values: &[Lanes<LANES>; 16]) {
        let at = t * self.row + c0;
        assert!(
            self.tiles.contains(&t)
                && c0 + LANES <= self.row
                && 15 * self.plane + at + LANES <= self.len
        );
        for (xi, value) in values.iter().enumerate() {
            // SAFETY: the assert puts the LANES floats inside the borrowed buffer, in row t of plane ξ (row t ends
            // before the plane does, `tile_ranges` checked that), which is this range's alone.
            unsafe {
                self.ptr
                    .add(xi * self.plane + at)
                    .cast::<Lanes<LANES>>()
                    .write_unaligned(*value)
            };
        }
    }
}

/// `out[p·LANES + l] = lines[l][p]` (`p < len`, zeros in the lanes past `lines.len()`): `LANES` channel rows into one
/// channel-last row. `avx`: the CPU supports AVX, so the copy may use its register transposes (inlined where the
/// caller is compiled with AVX, called otherwise).
#[inline(always)]
fn channels_last(lines: &[&[f32]], len: usize, out: &mut [f32], avx: bool) {
    if avx {
        transpose_into::<LANES, true>(lines, len, out);
    } else {
        transpose_into::<LANES, false>(lines, len, out);
    }
}

/// Zeros the at most 3 channel-last padding columns (`LANES` floats each) at either end of a staged row, by
/// whole-vector stores (a `fill` of unknown length becomes a call to memset).
#[inline(always)]
fn zero_columns(columns: &mut [f32]) {
    debug_assert!(columns.len() <= 3 * LANES, "{} floats", columns.len());
    for column in columns.chunks_exact_mut(LANES).take(3) {
        column.copy_from_slice(&[0.0; LANES]);
    }
}

/// Rows and columns of one image's staged input band of `bands` tile rows (padded rows and columns).
fn input_staged_size(geo: &Geometry, bands: usize) -> (usize, usize) {
    (2 * bands + 2, 2 * geo.tiles_w + 2)
}

/// Rows and columns of one image's staged output-gradient band of `bands` tile rows.
fn gradient_staged_size(geo: &Geometry, bands: usize) -> (usize, usize) {
    (2 * bands, 2 * geo.tiles_w)
}

/// Floats of one block of `LANES` channels of the staged input band for `images` images (see [`stage_input`]).
pub(super) fn input_staged_len(geo: &Geometry, images: usize, bands: usize) -> usize {
    let (rows, width) = input_staged_size(geo, bands);
    images * rows * width * LANES
}

/// Floats of one block of `LANES` channels of the staged output-gradient band (see [`stage_gradient`]).
pub(super) fn gradient_staged_len(geo: &Geometry, images: usize, bands: usize) -> usize {
    let (rows, width) = gradient_staged_size(geo, bands);
    images * rows * width * LANES
}

/// Input channels `c0 .. c0 + LANES` (fewer at the end) of the padded rows of tile rows `first..first + bands` of
/// every image of `x` (whole NCHW images), channel-last, into `staged` (`[image][row][column][LANES]`: padded rows
/// `2·first − pad_h ..`, columns `−pad_w .. 2·tw + 2 − pad_w`, zeros for padding and for the lanes past the last
/// channel): `LANES` input rows through one register transpose per `LANES` columns. Every padded row holds all
/// in_w input columns, since 2·tw ≥ out_w = in_w + 2·pad_w − 2.
#[inline(always)]
pub(super) fn stage_input(
    geo: &Geometry,
    x: &[f32],
    c0: usize,
    (first, bands): (usize, usize),
    avx: bool,
    staged: &mut [f32],
) {
    let channels = LANES.min(geo.in_channels - c0);
    let (_, width) = input_staged_size(geo, bands);
    let plane_len = geo.in_h * geo.in_w;
    let image_len = geo.in_channels * plane_len;
    for (n, image) in staged
        .chunks_exact_mut(input_staged_len(geo, 1, bands))
        .enumerate()
    {
        for (r, row) in image.chunks_exact_mut(width * LANES).enumerate() {
            let Some(ih) = (2 * first + r)
                .checked_sub(geo.pad_h)
                .filter(|&ih| ih < geo.in_h)
            else {
                row.fill(0.0);
                continue;
            };
            let start = |l: usize| n * image_len + (c0 + l) * plane_len + ih * geo.in_w;
            let lines: [&[f32]; LANES] = std::array::from_fn(|l| {
                if l < channels {
                    &x[start(l)..][..geo.in_w]
                } else {
                    &[]
                }
            });
            let (before, rest) = row.split_at_mut(geo.pad_w * LANES);
            let (inside, after) = rest.split_at_mut(geo.in_w * LANES);
            zero_columns(before);
            channels_last(&lines[..channels], geo.in_w, inside, avx);
            zero_columns(after);
        }
    }
}

/// Output channels `o0 .. o0 + LANES` (fewer at the end) of the rows of tile rows `first..first + bands` of every
/// image of the output gradient `dy` (whole NCHW images), channel-last, into `staged` (`[image][row][column]
/// [LANES]`, zeros past the bottom and right edges and in the lanes past the last channel), as [`stage_input`].
/// With `bias_partials` (one per channel of the block), each output row read is also added to its channel's partial
/// sums (the bias gradient, `bias_gradient.rs`), image by image, top to bottom.
#[inline(always)]
pub(super) fn stage_gradient(
    geo: &Geometry,
    dy: &[f32],
    o0: usize,
    (first, bands): (usize, usize),
    avx: bool,
    staged: &mut [f32],
    mut bias_partials: Option<&mut [Partials]>,
) {
    let channels = LANES.min(geo.out_channels - o0);
    let (_, width) = gradient_staged_size(geo, bands);
    let plane_len = geo.out_h * geo.out_w;
    let image_len = geo.out_channels * plane_len;
    for (n, image) in staged
        .chunks_exact_mut(gradient_staged_len(geo, 1, bands))
        .enumerate()
    {
        for (r, row) in image.chunks_exact_mut(width * LANES).enumerate() {
            let oh = 2 * first + r;
            if oh >= geo.out_h {
                row.fill(0.0);
                continue;
            }
            let start = |l: usize| n * image_len + (o0 + l) * plane_len + oh * geo.out_w;
            let lines: [&[f32]; LANES] = std::array::from_fn(|l| {
                if l < channels {
                    &dy[start(l)..][..geo.out_w]
                } else {
                    &[]
                }
            });
            if let Some(partials) = &mut bias_partials {
                for (line, partials) in lines[..channels].iter().zip(partials.iter_mut()) {
                    accumulate(line, partials);
                }
            }
            let (inside, after) = row.split_at_mut(geo.out_w * LANES);
            channels_last(&lines[..channels], geo.out_w, inside, avx);
            zero_columns(after);
        }
    }
}

/// `V = Bᵀ·d·B` of the tiles of range `v` (tiles numbered image by image, row by row, `bands` tile rows per image)
/// from the staged input band (`staged`: the blocks of [`stage_input`] one after another), every block of channels
/// of a tile before the next tile: 16 vector loads, the same additions as [`input_channel`], 16 vector stores.
#[inline(always)]
pub(super) fn input_tiles(geo: &Geometry, staged: &[f32], bands: usize, v: &mut TileRange) {
    let (rows, width) = input_staged_size(geo, bands);
    let tw = geo.tiles_w;
    let block_len = staged.len() / geo.in_channels.div_ceil(LANES);
    for t in v.tiles.clone() {
        let (n, i, j) = (t / (bands * tw), t / tw % bands, t % tw);
        for (b, block) in staged.chunks_exact(block_len).enumerate() {
            let image = &block[n * rows * width * LANES..];
            let mut d = [[0.0; LANES]; 16];
            for (q, lane) in d.iter_mut().enumerate() {
                let (k, l) = (q / 4, q % 4);
                lane.copy_from_slice(&image[((2 * i + k) * width + 2 * j + l) * LANES..][..LANES]);
            }
            v.store(t, b * LANES, &input_lanes(&d));
        }
    }
}

/// `A·e·Aᵀ` of the 2×2 output-gradient blocks of the tiles of range `e` from the staged band (the blocks of
/// [`stage_gradient`] one after another), as [`input_tiles`]; outside the output (odd edges) the blocks hold zeros.
#[inline(always)]
pub(super) fn gradient_tiles(geo: &Geometry, staged: &[f32], bands: usize, e: &mut TileRange) {
    let (rows, width) = gradient_staged_size(geo, bands);
    let tw = geo.tiles_w;
    let block_len = staged.len() / geo.out_channels.div_ceil(LANES);
    for t in e.tiles.clone() {
        let (n, i, j) = (t / (bands * tw), t / tw % bands, t % tw);
        for (b, block) in staged.chunks_exact(block_len).enumerate() {
            let image = &block[n * rows * width * LANES..];
            let mut values = [[0.0; LANES]; 4];
            for (q, lane) in values.iter_mut().enumerate() {
                let (r, col) = (q / 2, q % 2);
                lane.copy_from_slice(
                    &image[((2 * i + r) * width + 2 * j + col) * LANES..][..LANES],
                );
            }
            e.store(t, b * LANES, &gradient_lanes(&values));
        }
    }
}

#[cfg(test)]
mod tests {
    //! The transforms are compiled three times (`dispatch!`: baseline, AVX2, AVX-512); every build this CPU runs must
    //! give the baseline's bits, on sizes off every vector block (widths 1–35, odd and even, every padding, bands).
    //! The tile-row transforms are checked for both tilings, F(4×4, 3×3)'s (`transform4.rs`) too.

    use super::super::{input_transform, input_work_len, output_transform, Geometry, Tiling};
    use super::*;

    /// `$f(args)` (an `#[inline(always)]` function returning `Vec<f32>`) run by its baseline build and by each
    /// `#[target_feature]` build (the function inlined into a wrapper, as `dispatch!` does) the CPU supports.
    macro_rules! every_build {
        ($f:ident($($arg:ident: $ty:ty),*)) => {{
            let mut builds = vec![("baseline", $f($($arg),*))];
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                fn with_avx2($($arg: $ty),*) -> Vec<f32> {
                    $f($($arg),*)
                }
                #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")]
                fn with_avx512($($arg: $ty),*) -> Vec<f32> {
                    $f($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                    // SAFETY: the CPU supports AVX2 and FMA (checked just above).
                    builds.push(("avx2", unsafe { with_avx2($($arg),*) }));
                }
                if crate::dispatch::has_avx512() {
                    // SAFETY: the CPU supports every feature `with_avx512` enables (checked just above).
                    builds.push(("avx512", unsafe { with_avx512($($arg),*) }));
                }
            }
            builds
        }};
    }

    /// The input transform of `geo`'s tiling, every channel, into fresh planes.
    #[inline(always)]
    fn input(geo: &Geometry, x: &[f32], first: usize, bands: usize, stride: usize) -> Vec<f32> {
        let mut work = vec![0.0; input_work_len(geo, bands)];
        let mut v = vec![0.0; geo.in_channels * geo.tiling.points() * stride];
        input_transform(geo, x, first, bands, &mut work, &mut v, stride);
        v
    }

    /// The weight gradient's input transform (staging, then the tiles in ranges of 5) into fresh channel-last planes.
    #[inline(always)]
    fn input_last(geo: &Geometry, x: &[f32], first: usize, bands: usize, avx: bool) -> Vec<f32> {
        let (row, ld) = (
            channel_row(geo.in_channels),
            geo.batch * bands * geo.tiles_w,
        );
        let plane = channel_plane_stride(ld, row);
        let block_len = input_staged_len(geo, geo.batch, bands);
        let mut staged = vec![f32::NAN; geo.in_channels.div_ceil(LANES) * block_len];
        for (b, block) in staged.chunks_exact_mut(block_len).enumerate() {
            stage_input(geo, x, b * LANES, (first, bands), avx, block);
        }
        let mut v = vec![f32::NAN; 16 * plane];
        for mut range in tile_ranges(&mut v, (plane, row), ld, 5) {
            input_tiles(geo, &staged, bands, &mut range);
        }
        v
    }

    /// The weight gradient's output-gradient transform, as [`input_last`], with the bias partial sums appended.
    #[inline(always)]
    fn gradient(geo: &Geometry, dy: &[f32], first: usize, bands: usize, avx: bool) -> Vec<f32> {
        let (row, ld) = (
            channel_row(geo.out_channels),
            geo.batch * bands * geo.tiles_w,
        );
        let plane = channel_plane_stride(ld, row);
        let block_len = gradient_staged_len(geo, geo.batch, bands);
        let mut staged = vec![f32::NAN; geo.out_channels.div_ceil(LANES) * block_len];
        let mut partials = vec![Partials::default(); geo.out_channels];
        let blocks = staged
            .chunks_exact_mut(block_len)
            .zip(partials.chunks_mut(LANES));
        for (b, (block, partials)) in blocks.enumerate() {
            stage_gradient(
                geo,
                dy,
                b * LANES,
                (first, bands),
                avx,
                block,
                Some(partials),
            );
        }
        let mut e = vec![f32::NAN; 16 * plane];
        for mut range in tile_ranges(&mut e, (plane, row), ld, 5) {
            gradient_tiles(geo, &staged, bands, &mut range);
        }
        e.extend(partials.iter().flatten().map(|&p| p as f32));
        e
    }

    #[inline(always)]
    fn output(
        geo: &Geometry,
        m: &[f32],
        first: usize,
        bands: usize,
        stride: usize,
        addends: &Conv2dAddends,
    ) -> Vec<f32> {
        let mut y = vec![f32::NAN; geo.batch * geo.out_channels * geo.out_h * geo.out_w];
        output_transform(
            geo,
            &mut m.to_vec(),
            stride,
            first,
            bands,
            addends,
            0,
            &mut y,
        );
        y
    }

    fn geometries() -> Vec<Geometry> {
        geometries_of(Tiling::F2)
    }

    /// F(2×2, 3×3)'s and F(4×4, 3×3)'s geometries.
    fn both_tilings() -> Vec<Geometry> {
        let mut all = geometries_of(Tiling::F2);
        all.extend(geometries_of(Tiling::F4));
        all
    }

    fn geometries_of(tiling: Tiling) -> Vec<Geometry> {
        let mut all = Vec::new();
        for (in_h, in_w) in [(1, 1), (3, 5), (4, 16), (7, 7), (9, 17), (5, 33), (6, 35)] {
            for (pad_h, pad_w) in [(0, 0), (1, 1), (2, 2), (0, 1), (2, 1)] {
                let (out_h, out_w) = (in_h + 2 * pad_h, in_w + 2 * pad_w);
                if out_h >= 3 && out_w >= 3 {
                    all.push(Geometry::new(
                        tiling,
                        2,
                        (2, in_h, in_w),
                        (3, out_h - 2, out_w - 2),
                        (pad_h, pad_w),
                    ));
                    // One channel, and channels past a whole block of LANES (the channel-last transforms).
                    all.push(Geometry::new(
                        tiling,
                        1,
                        (1, in_h, in_w),
                        (LANES + 3, out_h - 2, out_w - 2),
                        (pad_h, pad_w),
                    ));
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

    fn assert_builds_agree(what: &str, builds: Vec<(&'static str, Vec<f32>)>) {
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        for (name, out) in &builds[1..] {
            assert_eq!(
                bits(out),
                bits(&builds[0].1),
                "{what}: the {name} build differs from the baseline"
            );
        }
    }

    /// The last piece of a row is read as a whole block when the slice goes on after the row (the floats after it
    /// land only in lanes past the row) and through a zero-padded copy at the slice's end: the tiles get the same
    /// bits either way, here with NaNs after the last image so that any leak would show.
    #[test]
    fn floats_after_a_row_never_reach_the_transformed_tiles() {
        for geo in both_tilings() {
            let x = values(geo.batch * geo.in_channels * geo.in_h * geo.in_w, 6);
            // Fewer NaNs than an image, so the images transformed stay the same.
            let image_len = geo.in_channels * geo.in_h * geo.in_w;
            let mut padded = x.clone();
            padded.extend(vec![f32::NAN; (image_len - 1).min(4 * LANES)]);
            let (first, bands) = (0, geo.tiles_h);
            let ld = geo.batch * bands * geo.tiles_w;
            let stride = plane_stride(ld);
            let tiles = |v: Vec<f32>| {
                v.chunks_exact(stride)
                    .flat_map(|plane| plane[..ld].iter().map(|x| x.to_bits()))
                    .collect::<Vec<_>>()
            };
            assert_eq!(
                tiles(input(&geo, &padded, first, bands, stride)),
                tiles(input(&geo, &x, first, bands, stride)),
                "{}×{} pad ({}, {})",
                geo.in_h,
                geo.in_w,
                geo.pad_h,
                geo.pad_w
            );
        }
    }

    #[test]
    fn every_build_of_the_transforms_gives_the_baseline_bits() {
        for geo in both_tilings() {
            let shape = format!(
                "{:?} {}×{} pad ({}, {})",
                geo.tiling, geo.in_h, geo.in_w, geo.pad_h, geo.pad_w
            );
            let x = values(geo.batch * geo.in_channels * geo.in_h * geo.in_w, 1);
            let dy = values(geo.batch * geo.out_channels * geo.out_h * geo.out_w, 2);
            let (bias, residual) = (values(geo.out_channels, 4), values(dy.len(), 5));
            let addends = Conv2dAddends {
                bias: Some(&bias),
                channel: None,
                residual: Some(&residual),
            };
            for (first, bands) in [
                (0, geo.tiles_h),
                (geo.tiles_h / 2, geo.tiles_h - geo.tiles_h / 2),
            ] {
                let stride = plane_stride(geo.batch * bands * geo.tiles_w);
                let (geo, x, dy) = (&geo, &x[..], &dy[..]);
                let part = format!("{shape}, tile rows {first}..{}", first + bands);
                assert_builds_agree(
                    &format!("input, {part}"),
                    every_build!(input(geo: &Geometry, x: &[f32], first: usize, bands: usize, stride: usize)),
                );
                // The channel-last transforms (the weight gradient's) are F(2×2, 3×3)'s only.
                let avx = if geo.tiling == Tiling::F2 {
                    avx_choices()
                } else {
                    vec![]
                };
                for avx in avx {
                    assert_builds_agree(
                        &format!("channel-last input, {part}, avx {avx}"),
                        every_build!(input_last(geo: &Geometry, x: &[f32], first: usize, bands: usize, avx: bool)),
                    );
                    assert_builds_agree(
                        &format!("gradient, {part}, avx {avx}"),
                        every_build!(gradient(geo: &Geometry, dy: &[f32], first: usize, bands: usize, avx: bool)),
                    );
                }
                let m = values(geo.out_channels * geo.tiling.points() * stride, 3);
                let (m, addends) = (&m[..], &addends);
                assert_builds_agree(
                    &format!("output, {part}"),
                    every_build!(output(
                        geo: &Geometry,
                        m: &[f32],
                        first: usize,
                        bands: usize,
                        stride: usize,
                        addends: &Conv2dAddends
                    )),
                );
            }
        }
    }

    /// The transposes with AVX where the CPU has it, and always without.
    fn avx_choices() -> Vec<bool> {
        let mut choices = vec![false];
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx") {
            choices.push(true);
        }
        choices
    }

    /// The channel-last transforms against their definition, tile by tile: the 4×4 input window (2×2 output-gradient
    /// block) gathered with zeros outside, through the same one-lane arithmetic, at `ξ·plane + t·row + c`; the bias
    /// partial sums against `accumulate` over each channel's rows in image, then row order. Batch 1 and 2, one to
    /// eleven channels, widths 1–35, every padding, whole and partial bands.
    #[test]
    fn channel_last_transforms_match_their_definition() {
        for geo in geometries() {
            let x = values(geo.batch * geo.in_channels * geo.in_h * geo.in_w, 7);
            let dy = values(geo.batch * geo.out_channels * geo.out_h * geo.out_w, 8);
            for (first, bands) in [
                (0, geo.tiles_h),
                (geo.tiles_h / 2, geo.tiles_h - geo.tiles_h / 2),
            ] {
                let ld = geo.batch * bands * geo.tiles_w;
                let shape = format!(
                    "{}×{} pad ({}, {}), tile rows {first}..{}",
                    geo.in_h,
                    geo.in_w,
                    geo.pad_h,
                    geo.pad_w,
                    first + bands
                );
                for avx in avx_choices() {
                    let v = input_last(&geo, &x, first, bands, avx);
                    let (row, plane) = (
                        channel_row(geo.in_channels),
                        channel_plane_stride(ld, channel_row(geo.in_channels)),
                    );
                    for (n, i, j) in tiles(&geo, bands) {
                        let t = (n * bands + i) * geo.tiles_w + j;
                        for c in 0..geo.in_channels {
                            let d: [Lanes<1>; 16] = std::array::from_fn(|q| {
                                let ih = (2 * (first + i) + q / 4).checked_sub(geo.pad_h);
                                let iw = (2 * j + q % 4).checked_sub(geo.pad_w);
                                match (ih, iw) {
                                    (Some(ih), Some(iw)) if ih < geo.in_h && iw < geo.in_w => {
                                        [x[((n * geo.in_channels + c) * geo.in_h + ih) * geo.in_w
                                            + iw]]
                                    }
                                    _ => [0.0],
                                }
                            });
                            for (xi, want) in input_lanes(&d).iter().enumerate() {
                                let got = v[xi * plane + t * row + c];
                                assert_eq!(
                                    got.to_bits(),
                                    want[0].to_bits(),
                                    "input, {shape}, tile {t}, channel {c}, ξ {xi}"
                                );
                            }
                        }
                    }
                    let e = gradient(&geo, &dy, first, bands, avx);
                    let (row, plane) = (
                        channel_row(geo.out_channels),
                        channel_plane_stride(ld, channel_row(geo.out_channels)),
                    );
                    for (n, i, j) in tiles(&geo, bands) {
                        let t = (n * bands + i) * geo.tiles_w + j;
                        for o in 0..geo.out_channels {
                            let block: [Lanes<1>; 4] = std::array::from_fn(|q| {
                                let (oh, ow) = (2 * (first + i) + q / 2, 2 * j + q % 2);
                                if oh < geo.out_h && ow < geo.out_w {
                                    [dy[((n * geo.out_channels + o) * geo.out_h + oh) * geo.out_w
                                        + ow]]
                                } else {
                                    [0.0]
                                }
                            });
                            for (xi, want) in gradient_lanes(&block).iter().enumerate() {
                                let got = e[xi * plane + t * row + o];
                                assert_eq!(
                                    got.to_bits(),
                                    want[0].to_bits(),
                                    "gradient, {shape}, tile {t}, channel {o}, ξ {xi}"
                                );
                            }
                        }
                    }
                    let partials = &e[16 * plane..];
                    for o in 0..geo.out_channels {
                        let mut want = Partials::default();
                        for n in 0..geo.batch {
                            for oh in 2 * first..(2 * (first + bands)).min(geo.out_h) {
                                let start =
                                    ((n * geo.out_channels + o) * geo.out_h + oh) * geo.out_w;
                                accumulate(&dy[start..start + geo.out_w], &mut want);
                            }
                        }
                        let want: Vec<f32> = want.iter().map(|&p| p as f32).collect();
                        assert_eq!(
                            &partials[o * want.len()..][..want.len()],
                            &want[..],
                            "bias partials, {shape}, channel {o}"
                        );
                    }
                }
            }
        }
    }

    /// Every (image, tile row of the band, tile column) of a band of `bands` tile rows.
    fn tiles(geo: &Geometry, bands: usize) -> Vec<(usize, usize, usize)> {
        let mut all = Vec::new();
        for n in 0..geo.batch {
            for i in 0..bands {
                for j in 0..geo.tiles_w {
                    all.push((n, i, j));
                }
            }
        }
        all
    }
}
