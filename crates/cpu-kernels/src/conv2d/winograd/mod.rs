//! 3×3, stride-1 convolutions by Winograd's minimal filtering algorithms (Lavin & Gray, "Fast Algorithms for
//! Convolutional Neural Networks", 2015): F(2×2, 3×3), 16 multiplications per 2×2 output block instead of 36, and
//! F(4×4, 3×3), 36 per 4×4 block instead of 144 ([`Tiling`]; the text below says F(2×2, 3×3), whose sizes F(4×4,
//! 3×3) replaces by 4×4 tiles of 6×6 input blocks and 36 transformed values, `transform4.rs`).
//!
//! The output is cut into 2×2 tiles (`tiles_h = ⌈OH/2⌉`, `tiles_w = ⌈OW/2⌉`); tile `(i, j)` reads the 4×4 input
//! block at rows `2i − ph ..`, columns `2j − pw ..` (tiles overlap by 2; zero outside the image). With the transforms
//! of `transform.rs`, for every image tile t, output channel o and position ξ of the 4×4 transformed tile
//!
//! ```text
//! U[ξ][o][c] = (G·w[o, c]·Gᵀ)[ξ]            weight transform, once per call
//! V[ξ][c][t] = (Bᵀ·x[c, tile t]·B)[ξ]       input transform
//! M[ξ][o][t] = Σ_c U[ξ][o][c] · V[ξ][c][t]   16 GEMMs  (O × C) · (C × tiles)
//! y[o, tile t] = Aᵀ·M[·][o][t]·A + b[o]     output transform (2×2; cropped at odd edges), + the other addends
//! ```
//!
//! F(4×4, 3×3) does 0.56 times the GEMM work of F(2×2, 3×3) on an image whose sides are multiples of 4, but its
//! transforms are longer and its U is 36/16 times larger; [`Conv2dAlgorithm::Auto`](super::Conv2dAlgorithm::Auto)
//! picks it. The weight gradient always runs F(2×2, 3×3).
//!
//! The input and output transforms run on `LANES` tiles at once: consecutive tiles of one tile row, or, on narrow
//! images (at most 4 tiles per row), consecutive tiles of the chunk across rows and images (`narrow.rs`), which
//! would otherwise leave half of the lanes or more idle.
//!
//! Backward-input of a stride-1 3×3 convolution with padding p is itself one: `dx = conv(dy, w')` with
//! `w'[c, o, kh, kw] = w[o, c, 2 − kh, 2 − kw]` and padding `2 − p`, so both kernels run the same loop. The weight
//! gradient runs the transposed algorithm (see [`backward_weight`]): `dw[o, c] = Gᵀ·[Σ_t (A·dy_t·Aᵀ) ⊙ V_t]·G`.
//!
//! Loop structure and memory. Tiles are processed in chunks that depend only on the shape. With
//! `target = clamp(2^18 / (16·(C + O)), 128, 256)` tiles (so that V and M, `16·(C + O)` floats per tile, stay near
//! 1 MiB, half of a 2 MiB L2, where the channels allow: a chunk whose V and M spill out of L2 pays for the round trip
//! in both transforms), a chunk is `⌈target / tiles per image⌉` whole images or, for images of at least `target`
//! tiles, one image cut into bands of `⌊target / tiles_w⌋` tile rows; the forward pass and the input gradient cut
//! the batch into at least `RUN_MIN_CHUNKS` chunks where it has that many images. Rayon runs chunks of images in
//! parallel; for each band of a chunk a task transforms the input into V, runs the 16 GEMMs (`sgemm_batched`, which
//! parallelises inside too), and transforms M into the output. A task's scratch is `16·(C + O)·(T + 8)` floats for V and M with
//! `T < 2·target` tiles (1.6 MiB for 32 → 32 channels at 28×28, T = 392; 1.2 MiB for
//! 64 → 64 at 14×14, T = 147; 2.5 MiB for 128 → 128 at 14×14, T = 147; 4.3 MiB for 256 → 256 at 7×7, T = 128) plus
//! a few padded rows; U is `16·O·C` floats (16/9 of the weight) per call, written straight into the GEMMs' packed
//! panels (`weights.rs`). The weight gradient walks the same chunks in order, in two halves at once (see
//! [`backward_weight`]), each with one V, one transformed output gradient (`16·O·T`), the staged rows of a band and M
//! (`16·O·C`). Scratch is recycled per thread (`scratch.rs`). Layouts are row-major `[row][16][stride]` (V
//! `[C][16][T + 8]`, M `[O][16][T + 8]`) so each transform touches one contiguous block per channel; the GEMM reads
//! the ξ-th matrix through strides. The weight gradient's V and E are
//! channel-last instead (`[16][T][C]`, `[16][T][O]`, see [`backward_weight`]). Every output element is computed by the same operations in the same order
//! whatever the number of threads, so results are bit-identical for any thread count.
//!
//! Rounding: the transforms multiply only by 0, ±1 and ±½, so each transformed value is a short sum (≤ 9 terms)
//! rounded a few times; the error is a small constant factor over direct summation (see `tests/conv2d.rs`).

mod narrow;
mod transform;
mod transform4;
mod weights;

use rayon::prelude::*;

use super::bias_gradient::{total, Partials};
use super::scratch::{Buffer, Role};
use super::{second_half, Conv2dAddends, Conv2dShape};
use crate::dispatch::dispatch;
use crate::elementwise::add_assign;
use crate::error::Result;
use crate::gemm::{sgemm_batched, sgemm_batched_packed, MatMut, MatRef, PackedA};
use weights::transform_weights;

/// Floats of V and M together a chunk aims at (1 MiB): the tile target is this over `16·(C + O)`.
const CHUNK_FLOATS: usize = 1 << 18;
/// Fewest chunks the forward pass and the input gradient cut a batch of at least this many images into: their
/// transforms run in parallel across chunks only, so one chunk would leave a second thread idle through them (F(4×4,
/// 3×3) on N32 C256 7², 4 tiles per image, fits the whole batch in one: two threads took 8.1–8.3 ms, against
/// 5.3–5.7 ms in two chunks; one thread pays 0–4 % for reading U twice). Their results do not depend on the chunking
/// (every output sums over channels alone), so this leaves every bit as it was; the weight gradient, whose sums run
/// across chunks, keeps its own.
const RUN_MIN_CHUNKS: usize = 2;
/// Tiles per task of the weight gradient's channel-last transforms: a few microseconds of work, against about one
/// for a rayon task.
const TILES_PER_TASK: usize = 64;
/// Bounds on the tiles per GEMM: wide enough that packing the 16 weight matrices costs little against the
/// products (and that wide channels keep their earlier, measured chunking), and no wider than needed for that.
const TILE_TARGET: (usize, usize) = (128, 256);

/// The output tile of a Winograd algorithm: F(2×2, 3×3) (`transform.rs`) or F(4×4, 3×3) (`transform4.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Tiling {
    F2,
    F4,
}

impl Tiling {
    /// Output rows (and columns) per tile.
    fn size(self) -> usize {
        match self {
            Self::F2 => 2,
            Self::F4 => 4,
        }
    }

    /// Transformed values per tile (the number of GEMMs): `(size + 2)²`.
    fn points(self) -> usize {
        (self.size() + 2) * (self.size() + 2)
    }
}

/// Why Winograd (either tiling; both have the same conditions) cannot compute `s`, or `None` if it can.
pub(super) fn unsupported(s: &Conv2dShape) -> Option<String> {
    let why = if (s.kernel_h, s.kernel_w) != (3, 3) {
        format!("a {}×{} kernel", s.kernel_h, s.kernel_w)
    } else if s.stride != (1, 1) {
        format!("stride {:?}", s.stride)
    } else if s.dilation != (1, 1) {
        format!("dilation {:?}", s.dilation)
    } else if s.padding.0 > 2 || s.padding.1 > 2 {
        format!("padding {:?}", s.padding)
    } else if s.groups != 1 {
        format!("groups = {}", s.groups)
    } else {
        return None;
    };
    Some(format!(
        "Winograd needs a 3×3 kernel, stride 1, dilation 1, padding ≤ 2 and groups = 1; got {why}"
    ))
}

/// The stride-1 3×3 convolution a Winograd call computes, from a `[batch, in_channels, in_h, in_w]` input.
pub(super) struct Geometry {
    tiling: Tiling,
    batch: usize,
    in_channels: usize,
    in_h: usize,
    in_w: usize,
    out_channels: usize,
    pad_h: usize,
    pad_w: usize,
    out_h: usize,
    out_w: usize,
    tiles_w: usize,
    tiles_h: usize,
}

impl Geometry {
    fn new(
        tiling: Tiling,
        batch: usize,
        (in_channels, in_h, in_w): (usize, usize, usize),
        (out_channels, out_h, out_w): (usize, usize, usize),
        (pad_h, pad_w): (usize, usize),
    ) -> Self {
        Self {
            tiling,
            batch,
            in_channels,
            in_h,
            in_w,
            out_channels,
            pad_h,
            pad_w,
            out_h,
            out_w,
            tiles_w: out_w.div_ceil(tiling.size()),
            tiles_h: out_h.div_ceil(tiling.size()),
        }
    }

    /// Images per chunk and tile rows per band (see the module header).
    fn chunking(&self) -> (usize, usize) {
        let per_tile = self.tiling.points() * (self.in_channels + self.out_channels);
        let target = (CHUNK_FLOATS / per_tile).clamp(TILE_TARGET.0, TILE_TARGET.1);
        let per_image = self.tiles_h * self.tiles_w;
        if per_image >= target {
            (1, (target / self.tiles_w).clamp(1, self.tiles_h))
        } else {
            (
                target.div_ceil(per_image).min(self.batch).max(1),
                self.tiles_h,
            )
        }
    }
}

/// Forward convolution of a shape for which [`unsupported`] is `None`; lengths already checked.
pub(super) fn forward(
    tiling: Tiling,
    s: &Conv2dShape,
    input: &[f32],
    weight: &[f32],
    addends: &Conv2dAddends,
    output: &mut [f32],
) -> Result<()> {
    let geo = Geometry::new(
        tiling,
        s.batch,
        (s.in_channels, s.in_h, s.in_w),
        (s.out_channels, s.out_h(), s.out_w()),
        s.padding,
    );
    let (c_n, o_n) = (s.in_channels, s.out_channels);
    let mut u = Buffer::take(Role::PackedWeights);
    // The GEMM's rows are output channels and its depth input channels: kernel w[o, c] is element (o, c).
    let u = transform_weights(tiling, weight, (9 * c_n, 9), false, (o_n, c_n), &mut u)?;
    run(&geo, input, &u, addends, output)
}

/// Backward-input of a shape for which [`unsupported`] is `None`, as the forward convolution of `grad_output` with
/// the flipped, transposed kernel and padding `2 − p`; lengths already checked.
pub(super) fn backward_input(
    tiling: Tiling,
    s: &Conv2dShape,
    grad_output: &[f32],
    weight: &[f32],
    grad_input: &mut [f32],
) -> Result<()> {
    let geo = Geometry::new(
        tiling,
        s.batch,
        (s.out_channels, s.out_h(), s.out_w()),
        (s.in_channels, s.in_h, s.in_w),
        (2 - s.padding.0, 2 - s.padding.1),
    );
    let (c_n, o_n) = (s.in_channels, s.out_channels);
    let mut u = Buffer::take(Role::PackedWeights);
    // Here the GEMM's rows are input channels and its depth output channels: kernel w[o, c] rotated by 180° is
    // element (c, o).
    let u = transform_weights(tiling, weight, (9, 9 * c_n), true, (c_n, o_n), &mut u)?;
    run(&geo, grad_output, &u, &Conv2dAddends::default(), grad_input)
}

/// Weight gradient of a shape for which [`unsupported`] is `None`, batch > 0, and with `grad_bias` the bias gradient,
/// summed from the output-gradient rows the transform reads anyway (`bias_gradient.rs`: each channel's rows in the
/// order of the chunks, their bands and images, so one pass over the output gradient serves both); lengths already
/// checked.
///
/// By the transposition principle (`⟨dy, Aᵀ[(G·g) ⊙ (Bᵀ·d)]⟩ = ⟨g, Gᵀ[(A·dy) ⊙ (Bᵀ·d)]⟩`), the gradient of one tile's
/// output with respect to its kernel is `Gᵀ·[(A·dy_t·Aᵀ) ⊙ (Bᵀ·d_t·B)]·G`, so summed over tiles:
/// `M[ξ][o][c] = Σ_t E[ξ][o][t] · V[ξ][c][t]` (16 GEMMs (O × T)·(T × C), accumulated chunk after chunk) and
/// `dw[o, c] = Gᵀ·M[·][o][c]·G`. The chunks fall into two fixed halves of the batch, summed at once by two tasks
/// ([`accumulate_chunks`], chunk after chunk, each into its own M) and then added, so the sum order depends on the
/// shape alone, never on the threads, and one half's work fills the gaps between the other's short parallel
/// phases (in a two-thread profile of the `fashion-small` training step the second thread idled through a third of
/// these phases when one task walked every chunk). Inside a chunk the
/// transforms write E and V channel-last (`[16][T][O]`, `[16][T][C]`, see `transform::TileRange`), so that the GEMMs,
/// which parallelise themselves, pack both by plain copies: the rows of a band are first staged channel-last by
/// blocks of 8 channels in parallel (`transform::stage_input`, `stage_gradient`), then transformed by ranges of
/// `TILES_PER_TASK` tiles in parallel, every channel of a tile at once.
pub(super) fn backward_weight(
    s: &Conv2dShape,
    input: &[f32],
    grad_output: &[f32],
    grad_weight: &mut [f32],
    grad_bias: Option<&mut [f32]>,
) -> Result<()> {
    let geo = Geometry::new(
        Tiling::F2,
        s.batch,
        (s.in_channels, s.in_h, s.in_w),
        (s.out_channels, s.out_h(), s.out_w()),
        s.padding,
    );
    let (c_n, o_n) = (s.in_channels, s.out_channels);
    let (in_image, out_image) = (c_n * s.in_h * s.in_w, o_n * geo.out_h * geo.out_w);
    let (images, _) = geo.chunking();
    let sum_bias = grad_bias.is_some();
    // Two fixed halves of the batch (`second_half`), each summed into its own M and bias partials, then added.
    let half = |range: std::ops::Range<usize>| {
        accumulate_chunks(
            &geo,
            &input[range.start * in_image..range.end * in_image],
            &grad_output[range.start * out_image..range.end * out_image],
            sum_bias,
        )
    };
    let (mut m_buf, bias_partials) = if let Some(split) = second_half(s.batch, images) {
        let (first, second) = rayon::join(|| half(0..split), || half(split..s.batch));
        let ((mut m_buf, mut bias_partials), (mut second_m, second_partials)) = (first?, second?);
        add_assign(
            m_buf.floats(o_n * 16 * c_n),
            second_m.floats(o_n * 16 * c_n),
        )?;
        for (partials, second) in bias_partials.iter_mut().zip(second_partials) {
            for (p, q) in partials.iter_mut().zip(second) {
                *p += q;
            }
        }
        (m_buf, bias_partials)
    } else {
        half(0..s.batch)?
    };
    let m: &[f32] = m_buf.floats(o_n * 16 * c_n);
    grad_weight
        .par_chunks_mut(9 * c_n)
        .zip(m.par_chunks(16 * c_n))
        .for_each(|(dw_o, m_o)| {
            for (c, dw) in dw_o.chunks_exact_mut(9).enumerate() {
                let m_oc = std::array::from_fn(|xi| m_o[xi * c_n + c]);
                dw.copy_from_slice(&transform::kernel_gradient(&m_oc));
            }
        });
    if let Some(grad_bias) = grad_bias {
        for (db, partials) in grad_bias.iter_mut().zip(bias_partials) {
            *db = total(partials);
        }
    }
    Ok(())
}

/// The weight gradient's sums over the chunks of `input` and `grad_output` (whole images), in order: `M` (`[O][16][C]`,
/// the first `O·16·C` floats of the returned buffer) and, if `sum_bias`, each output channel's bias partial sums.
fn accumulate_chunks(
    geo: &Geometry,
    input: &[f32],
    grad_output: &[f32],
    sum_bias: bool,
) -> Result<(Buffer, Vec<Partials>)> {
    use transform::{gradient_tiles, input_tiles, stage_gradient, stage_input, tile_ranges, LANES};
    let (c_n, o_n, tw) = (geo.in_channels, geo.out_channels, geo.tiles_w);
    let (c_row, o_row) = (transform::channel_row(c_n), transform::channel_row(o_n));
    let (in_image, out_image) = (c_n * geo.in_h * geo.in_w, o_n * geo.out_h * geo.out_w);
    let (images, band_rows) = geo.chunking();
    let (mut v_buf, mut e_buf) = (Buffer::take(Role::Tiles), Buffer::take(Role::GradientTiles));
    let (mut m_buf, mut staged_buf) = (Buffer::take(Role::Products), Buffer::take(Role::Rows));
    let m = m_buf.floats(o_n * 16 * c_n);
    let avx = has_avx();
    let mut bias_partials: Vec<Partials> = vec![Partials::default(); o_n];
    let mut beta = 0.0;
    let chunks = input
        .chunks(images * in_image)
        .zip(grad_output.chunks(images * out_image));
    for (x, dy) in chunks {
        let images = x.len() / in_image;
        for first in (0..geo.tiles_h).step_by(band_rows) {
            let bands = band_rows.min(geo.tiles_h - first);
            let (geo, band) = (&geo, (first, bands));
            let ld = images * bands * tw;
            let block_len = transform::input_staged_len(geo, images, bands);
            let staged = staged_buf.floats(c_n.div_ceil(LANES) * block_len);
            staged
                .par_chunks_mut(block_len)
                .enumerate()
                .for_each(|(block, staged)| {
                    let c0 = block * LANES;
                    dispatch!(stage_input(
                        geo: &Geometry,
                        x: &[f32],
                        c0: usize,
                        band: (usize, usize),
                        avx: bool,
                        staged: &mut [f32],
                    ));
                });
            let v_plane = transform::channel_plane_stride(ld, c_row);
            let v = v_buf.floats(16 * v_plane);
            let staged: &[f32] = staged;
            tile_ranges(v, (v_plane, c_row), ld, TILES_PER_TASK)
                .into_par_iter()
                .for_each(|mut range| {
                    let range = &mut range;
                    dispatch!(input_tiles(
                        geo: &Geometry,
                        staged: &[f32],
                        bands: usize,
                        range: &mut transform::TileRange,
                    ));
                });
            let block_len = transform::gradient_staged_len(geo, images, bands);
            let staged = staged_buf.floats(o_n.div_ceil(LANES) * block_len);
            staged
                .par_chunks_mut(block_len)
                .zip(bias_partials.par_chunks_mut(LANES))
                .enumerate()
                .for_each(|(block, (staged, partials))| {
                    let (o0, bias_partials) = (block * LANES, sum_bias.then_some(partials));
                    dispatch!(stage_gradient(
                        geo: &Geometry,
                        dy: &[f32],
                        o0: usize,
                        band: (usize, usize),
                        avx: bool,
                        staged: &mut [f32],
                        bias_partials: Option<&mut [Partials]>,
                    ));
                });
            let e_plane = transform::channel_plane_stride(ld, o_row);
            let e = e_buf.floats(16 * e_plane);
            let staged: &[f32] = staged;
            tile_ranges(e, (e_plane, o_row), ld, TILES_PER_TASK)
                .into_par_iter()
                .for_each(|mut range| {
                    let range = &mut range;
                    dispatch!(gradient_tiles(
                        geo: &Geometry,
                        staged: &[f32],
                        bands: usize,
                        range: &mut transform::TileRange,
                    ));
                });
            sgemm_batched(
                16,
                o_n,
                c_n,
                ld,
                1.0,
                MatRef {
                    data: e,
                    row_stride: 1,
                    col_stride: o_row,
                },
                e_plane,
                MatRef {
                    data: v,
                    row_stride: c_row,
                    col_stride: 1,
                },
                v_plane,
                beta,
                MatMut {
                    data: &mut *m,
                    row_stride: 16 * c_n,
                    col_stride: 1,
                },
                c_n,
            )?;
            beta = 1.0;
        }
    }
    Ok((m_buf, bias_partials))
}

/// The chunked tile loop of the module header: `y = conv(x) + addends` with the transformed weights `u`, packed once
/// per call into the GEMMs' panels ([`transform_weights`]), which every chunk multiplies.
fn run(
    geo: &Geometry,
    x: &[f32],
    u: &PackedA,
    addends: &Conv2dAddends,
    y: &mut [f32],
) -> Result<()> {
    let (c_n, o_n, tw) = (geo.in_channels, geo.out_channels, geo.tiles_w);
    let points = geo.tiling.points();
    let (in_plane, out_plane) = (geo.in_h * geo.in_w, geo.out_h * geo.out_w);
    let (in_image, out_image) = (c_n * in_plane, o_n * out_plane);
    let (images, band_rows) = geo.chunking();
    let images = images.min(geo.batch.div_ceil(RUN_MIN_CHUNKS));
    let scratch = || {
        (
            Buffer::take(Role::Tiles),
            Buffer::take(Role::Products),
            Buffer::take(Role::Rows),
        )
    };
    y.par_chunks_mut(images * out_image)
        .zip(x.par_chunks(images * in_image))
        .enumerate()
        .try_for_each_init(scratch, |(v_buf, m_buf, work_buf), (chunk, (y, x))| {
            let first_image = chunk * images;
            let images = y.len() / out_image;
            for first in (0..geo.tiles_h).step_by(band_rows) {
                let bands = band_rows.min(geo.tiles_h - first);
                let ld = images * bands * tw;
                let stride = transform::plane_stride(ld);
                let work = work_buf.floats(input_work_len(geo, bands));
                let v = v_buf.floats(c_n * points * stride);
                dispatch!(input_transform(
                    geo: &Geometry,
                    x: &[f32],
                    first: usize,
                    bands: usize,
                    work: &mut [f32],
                    v: &mut [f32],
                    stride: usize,
                ));
                let m = m_buf.floats(o_n * points * stride);
                sgemm_batched_packed(
                    u,
                    ld,
                    1.0,
                    MatRef {
                        data: v,
                        row_stride: points * stride,
                        col_stride: 1,
                    },
                    stride,
                    0.0,
                    MatMut {
                        data: m,
                        row_stride: points * stride,
                        col_stride: 1,
                    },
                    stride,
                )?;
                dispatch!(output_transform(
                    geo: &Geometry,
                    m: &mut [f32],
                    stride: usize,
                    first: usize,
                    bands: usize,
                    addends: &Conv2dAddends,
                    first_image: usize,
                    y: &mut [f32],
                ));
            }
            Ok(())
        })
}

/// Work floats [`input_transform`] needs for one band of `bands` tile rows.
fn input_work_len(geo: &Geometry, bands: usize) -> usize {
    if narrow::is_narrow(geo) {
        return narrow::work_len(geo.tiling.size(), bands);
    }
    match geo.tiling {
        Tiling::F2 => transform::work_len(geo, bands),
        Tiling::F4 => transform4::work_len(geo, bands),
    }
}

/// The input transform of every channel of a chunk's images `x`, for one band of tile rows, into V
/// (`[C][16][stride]`).
#[inline(always)]
fn input_transform(
    geo: &Geometry,
    x: &[f32],
    first: usize,
    bands: usize,
    work: &mut [f32],
    v: &mut [f32],
    stride: usize,
) {
    let narrow = narrow::is_narrow(geo);
    for (c, v_c) in v.chunks_exact_mut(geo.tiling.points() * stride).enumerate() {
        match (geo.tiling, narrow) {
            (Tiling::F2, false) => {
                transform::input_channel(geo, x, c, first, bands, work, v_c, stride)
            }
            (Tiling::F4, false) => {
                transform4::input_channel(geo, x, c, first, bands, work, v_c, stride)
            }
            (Tiling::F2, true) => {
                narrow::input_channel::<narrow::F2>(geo, x, c, first, bands, work, v_c, stride)
            }
            (Tiling::F4, true) => {
                narrow::input_channel::<narrow::F4>(geo, x, c, first, bands, work, v_c, stride)
            }
        }
    }
}

/// The output transform of every channel of a chunk's images `y` (image `first_image` onwards), for one band of
/// tile rows, from M (`[O][16][stride]`, overwritten by the narrow transforms), with the addends.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn output_transform(
    geo: &Geometry,
    m: &mut [f32],
    stride: usize,
    first: usize,
    bands: usize,
    addends: &Conv2dAddends,
    first_image: usize,
    y: &mut [f32],
) {
    let (band, narrow) = ((first, bands), narrow::is_narrow(geo));
    for (o, m_o) in m.chunks_exact_mut(geo.tiling.points() * stride).enumerate() {
        match (geo.tiling, narrow) {
            (Tiling::F2, false) => {
                transform::output_channel(geo, m_o, stride, band, addends, first_image, y, o)
            }
            (Tiling::F4, false) => {
                transform4::output_channel(geo, m_o, stride, band, addends, first_image, y, o)
            }
            (Tiling::F2, true) => narrow::output_channel::<narrow::F2>(
                geo,
                m_o,
                stride,
                band,
                addends,
                first_image,
                y,
                o,
            ),
            (Tiling::F4, true) => narrow::output_channel::<narrow::F4>(
                geo,
                m_o,
                stride,
                band,
                addends,
                first_image,
                y,
                o,
            ),
        }
    }
}

/// Whether the CPU supports AVX, for the channel-last transforms' register transposes.
fn has_avx() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}
