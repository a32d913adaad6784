//! Direct convolution for stride-1, one-group convolutions with few output channels (a network's last layers:
//! 32 → 1 channels, 64 → 8), where im2col + GEMM spends its time copying: the column matrix has `Cin·KH·KW` rows
//! for `Cout` GEMM rows, so with `Cout ≤ 8` each copied float serves at most 8 multiply-adds and the 12-row register
//! tile is mostly empty. No column matrix is built here.
//!
//! Each image is copied once into a zero-padded buffer `xp[c]` of `Hp × Wp` floats (`Hp = H + 2·ph`,
//! `Wp = W + 2·pw`), and the output is computed at every position `q = oh·Wp + ow` of the padded width, `ow < Wp`:
//!
//! ```text
//! y'[o, q] = Σ_{c, kh, kw} W[o, c, kh, kw] · xp[c, q + kh·Wp + kw]        y[o, oh, ow] = y'[o, oh·Wp + ow] + addends,  ow < OW
//! ```
//!
//! The window of a kept position (`ow < OW`) never leaves its rows of `xp`; the `Wp − OW` positions at the end of
//! each row are computed and dropped. Every tap is thus a unit-stride run of one padded plane.
//!
//! Gradients. The input gradient is the same computation on `dy` padded by `(KH − 1 − ph, KW − 1 − pw)` (so the
//! padding must be below the kernel size) with the kernel rotated by 180° and its channel axes swapped,
//! `W'[c, o, kh, kw] = W[o, c, KH−1−kh, KW−1−kw]`. The weight gradient is one dot product per `(o, c, kh, kw)`,
//! `dW[o, c, kh, kw] = Σ_n Σ_q dy'[n, o, q] · xp[n, c, q + kh·Wp + kw]`, with `dy'` laid out at the padded width and
//! zero at the dropped positions (where `xp` is read across a row end: a non-finite input there meets a zero and
//! makes a NaN, where the exact gradient might be ±∞).
//!
//! Loop structure. Forward and input gradient: images in parallel (rayon); per image, output channels in blocks of
//! `OB ∈ {8, 4, 2, 1}` and positions in blocks of `P` (32 for `OB = 8`, 64 for 4 and 2, 128 for 1: 16, 16, 8 and 8
//! AVX-512 registers of sums); a block's `OB × P` sums stay in registers while the loop runs over input channels and
//! taps, each step one unit-stride load of `P` floats of `xp` and `OB` broadcast weights (packed per block in
//! `[c][tap][o]` order). Weight gradient: input channels in parallel; per channel, taps and output-channel blocks,
//! then images in order and positions, each of the block's `OB` sums kept in `P` lanes across all images and reduced
//! by a fixed pairwise tree at the end. Every sum's order depends on the shape alone, so results are bit-identical
//! for any number of threads.

use rayon::prelude::*;

use super::addends::Conv2dAddends;
use super::scratch::{Buffer, Role};
use super::shape::Conv2dShape;
use crate::dispatch::dispatch;

/// Most output channels for which [`super::Conv2dAlgorithm::Auto`] picks the direct convolution. (With few input
/// channels and many outputs, 1 → 32 at 28×28, im2col + GEMM measured faster for both gradients: its column matrix
/// is then short.)
pub const DIRECT_MAX_CHANNELS: usize = 8;

/// The widest position block: every plane buffer has this many floats (and a row's worth of taps) to spare at its
/// end, so a block that runs past the last position reads and writes inside its own plane.
const MAX_BLOCK: usize = 128;

/// Why the direct algorithm cannot compute `s`, if it cannot.
pub(super) fn unsupported(s: &Conv2dShape) -> Option<&'static str> {
    if s.stride != (1, 1) {
        Some("the direct algorithm needs stride 1")
    } else if s.dilation != (1, 1) {
        Some("the direct algorithm needs dilation 1")
    } else if s.groups != 1 {
        Some("the direct algorithm needs one group")
    } else if s.padding.0 >= s.kernel_h || s.padding.1 >= s.kernel_w {
        Some("the direct algorithm needs padding below the kernel size")
    } else {
        None
    }
}

/// Sizes of one stride-1 convolution at the padded width.
struct Geometry {
    in_channels: usize,
    out_channels: usize,
    in_h: usize,
    in_w: usize,
    out_h: usize,
    out_w: usize,
    padding: (usize, usize),
    /// Padded row length `Wp`.
    padded_w: usize,
    /// Floats per padded input plane: `Hp·Wp` and the spare end.
    plane_stride: usize,
    /// Output positions at the padded width, `OH·Wp`.
    positions: usize,
    /// Floats per output row of `y'` (and of `dy'`): `positions` rounded up to [`MAX_BLOCK`].
    row_len: usize,
    /// `kh·Wp + kw` for every tap, in weight order.
    offsets: Vec<usize>,
    /// Output-channel blocks `(first channel, channels)`.
    blocks: Vec<(usize, usize)>,
}

impl Geometry {
    fn new(s: &Conv2dShape) -> Self {
        let padded_w = s.in_w + 2 * s.padding.1;
        let padded_h = s.in_h + 2 * s.padding.0;
        let positions = s.out_h() * padded_w;
        let offsets = (0..s.kernel_h)
            .flat_map(|kh| (0..s.kernel_w).map(move |kw| kh * padded_w + kw))
            .collect();
        let mut blocks = Vec::new();
        let mut first = 0;
        while first < s.out_channels {
            let left = s.out_channels - first;
            let size = [8, 4, 2, 1].into_iter().find(|&b| b <= left).unwrap_or(1);
            blocks.push((first, size));
            first += size;
        }
        Self {
            in_channels: s.in_channels,
            out_channels: s.out_channels,
            in_h: s.in_h,
            in_w: s.in_w,
            out_h: s.out_h(),
            out_w: s.out_w(),
            padding: s.padding,
            padded_w,
            plane_stride: padded_h * padded_w + MAX_BLOCK + s.kernel_w,
            positions,
            row_len: positions.next_multiple_of(MAX_BLOCK),
            offsets,
            blocks,
        }
    }

    fn taps(&self) -> usize {
        self.offsets.len()
    }

    /// Copies one image (`in_channels` planes of `H × W`) into `xp` with its zero padding, every float written.
    fn pad(&self, x: &[f32], xp: &mut [f32]) {
        xp.fill(0.0);
        let (ph, pw) = self.padding;
        for (plane, xp) in x
            .chunks_exact(self.in_h * self.in_w)
            .zip(xp.chunks_exact_mut(self.plane_stride))
        {
            for (r, row) in plane.chunks_exact(self.in_w).enumerate() {
                xp[(r + ph) * self.padded_w + pw..][..self.in_w].copy_from_slice(row);
            }
        }
    }

    /// The weight `[Cout][Cin][taps]` repacked block by block, each block `[Cin][taps][OB]`.
    fn pack(&self, weight: &[f32]) -> Vec<f32> {
        let (cin, taps) = (self.in_channels, self.taps());
        let mut packed = vec![0.0; weight.len()];
        for &(first, size) in &self.blocks {
            let block = &mut packed[first * cin * taps..][..size * cin * taps];
            for o in 0..size {
                for c in 0..cin {
                    for t in 0..taps {
                        block[(c * taps + t) * size + o] =
                            weight[((first + o) * cin + c) * taps + t];
                    }
                }
            }
        }
        packed
    }
}

/// Forward convolution of the stride-1, one-group shape `s` with its addends: `output` overwritten.
pub(super) fn forward(
    s: &Conv2dShape,
    input: &[f32],
    weight: &[f32],
    addends: &Conv2dAddends,
    output: &mut [f32],
) {
    let g = Geometry::new(s);
    let packed = g.pack(weight);
    let (in_image, out_image) = (s.input_len() / s.batch, s.output_len() / s.batch);
    let plane = g.out_h * g.out_w;
    output
        .par_chunks_mut(out_image)
        .zip(input.par_chunks(in_image))
        .enumerate()
        .for_each_init(
            || (Buffer::take(Role::Columns), Buffer::take(Role::Block)),
            |(xp, sums), (n, (y, x))| {
                let xp = xp.floats(g.in_channels * g.plane_stride);
                g.pad(x, xp);
                let sums = sums.floats(g.out_channels * g.row_len);
                let (g, xp, packed) = (&g, &*xp, &packed[..]);
                correlate_image(g, xp, packed, sums);
                for (o, (y, sums)) in y
                    .chunks_exact_mut(plane)
                    .zip(sums.chunks_exact(g.row_len))
                    .enumerate()
                {
                    let constant = addends.constant(n, o, g.out_channels);
                    let residual = addends.residual_plane(n, o, g.out_channels, plane);
                    for (r, y) in y.chunks_exact_mut(g.out_w).enumerate() {
                        let sums = &sums[r * g.padded_w..][..g.out_w];
                        match residual {
                            Some(residual) => {
                                for ((y, &sum), &res) in
                                    y.iter_mut().zip(sums).zip(&residual[r * g.out_w..])
                                {
                                    *y = sum + (res + constant);
                                }
                            }
                            None => {
                                for (y, &sum) in y.iter_mut().zip(sums) {
                                    *y = sum + constant;
                                }
                            }
                        }
                    }
                }
            },
        );
}

/// Gradient with respect to the input of the stride-1, one-group shape `s`: `grad_input` overwritten. The forward
/// pass of the transposed convolution (module header).
pub(super) fn backward_input(
    s: &Conv2dShape,
    grad_output: &[f32],
    weight: &[f32],
    grad_input: &mut [f32],
) {
    let (kh, kw) = (s.kernel_h, s.kernel_w);
    let transposed = Conv2dShape {
        in_channels: s.out_channels,
        in_h: s.out_h(),
        in_w: s.out_w(),
        out_channels: s.in_channels,
        padding: (kh - 1 - s.padding.0, kw - 1 - s.padding.1),
        ..*s
    };
    let taps = kh * kw;
    let mut rotated = vec![0.0; weight.len()];
    for o in 0..s.out_channels {
        for c in 0..s.in_channels {
            let from = &weight[(o * s.in_channels + c) * taps..][..taps];
            let to = &mut rotated[(c * s.out_channels + o) * taps..][..taps];
            for (t, &w) in from.iter().enumerate() {
                to[taps - 1 - t] = w;
            }
        }
    }
    forward(
        &transposed,
        grad_output,
        &rotated,
        &Conv2dAddends::bias(None),
        grad_input,
    );
}

/// Gradient with respect to the weight of the stride-1, one-group shape `s`: `grad_weight` overwritten.
pub(super) fn backward_weight(
    s: &Conv2dShape,
    input: &[f32],
    grad_output: &[f32],
    grad_weight: &mut [f32],
) {
    let g = Geometry::new(s);
    let (in_image, out_image) = (s.input_len() / s.batch, s.output_len() / s.batch);
    let mut xp = vec![0.0; s.batch * g.in_channels * g.plane_stride];
    xp.par_chunks_mut(g.in_channels * g.plane_stride)
        .zip(input.par_chunks(in_image))
        .for_each(|(xp, x)| g.pad(x, xp));
    // dy' at the padded width, zero at the dropped positions and up to the end of each row.
    let mut dy = vec![0.0; s.batch * g.out_channels * g.row_len];
    dy.par_chunks_mut(g.out_channels * g.row_len)
        .zip(grad_output.par_chunks(out_image))
        .for_each(|(to, from)| {
            for (to, from) in to
                .chunks_exact_mut(g.row_len)
                .zip(from.chunks_exact(g.out_h * g.out_w))
            {
                for (r, row) in from.chunks_exact(g.out_w).enumerate() {
                    to[r * g.padded_w..][..g.out_w].copy_from_slice(row);
                }
            }
        });
    // Per input channel `c`: its `[Cout][taps]` gradients, transposed into `[Cout][Cin][taps]` below.
    let taps = g.taps();
    let mut by_channel = vec![0.0; grad_weight.len()];
    by_channel
        .par_chunks_mut(g.out_channels * taps)
        .enumerate()
        .for_each(|(c, sums)| {
            let (g, xp, dy) = (&g, &xp[..], &dy[..]);
            weight_channel(g, xp, dy, c, sums);
        });
    for (c, sums) in by_channel.chunks_exact(g.out_channels * taps).enumerate() {
        for (o, sums) in sums.chunks_exact(taps).enumerate() {
            grad_weight[(o * g.in_channels + c) * taps..][..taps].copy_from_slice(sums);
        }
    }
}

/// `y'` of one padded image `xp` into `sums` (`[Cout][row_len]`), block by block.
fn correlate_image(g: &Geometry, xp: &[f32], packed: &[f32], sums: &mut [f32]) {
    let weights = g.in_channels * g.taps();
    for &(first, size) in &g.blocks {
        let w = &packed[first * weights..][..size * weights];
        let sums = &mut sums[first * g.row_len..][..size * g.row_len];
        match size {
            8 => correlate_block::<8, 2>(g, xp, w, sums),
            4 => correlate_block::<4, 4>(g, xp, w, sums),
            2 => correlate_block::<2, 4>(g, xp, w, sums),
            _ => correlate_block::<1, 8>(g, xp, w, sums),
        }
    }
}

/// The weight gradients of input channel `c` into `sums` (`[Cout][taps]`), block by block.
fn weight_channel(g: &Geometry, xp: &[f32], dy: &[f32], c: usize, sums: &mut [f32]) {
    for &(first, size) in &g.blocks {
        match size {
            8 => weight_block::<8, 2>(g, xp, dy, c, first, sums),
            4 => weight_block::<4, 4>(g, xp, dy, c, first, sums),
            2 => weight_block::<2, 4>(g, xp, dy, c, first, sums),
            _ => weight_block::<1, 8>(g, xp, dy, c, first, sums),
        }
    }
}

/// Floats per vector: one AVX-512 register.
const LANES: usize = 16;

/// `y'` of the `OB` channels of one block (`w` packed `[Cin][taps][OB]`, `sums` `OB` rows of `row_len`), `V`
/// vectors of [`LANES`] positions at a time (`V·LANES ≤ MAX_BLOCK`): AVX-512 where the CPU has it, else the same
/// arithmetic in plain loops (bit-identical: one fused multiply-add per product, in the same order).
fn correlate_block<const OB: usize, const V: usize>(
    g: &Geometry,
    xp: &[f32],
    w: &[f32],
    sums: &mut [f32],
) {
    let last = g.positions.next_multiple_of(V * LANES) - V * LANES;
    let max_offset = g.offsets.iter().copied().max().unwrap_or(0);
    assert!(
        w.len() == g.in_channels * g.taps() * OB
            && xp.len() >= (g.in_channels - 1) * g.plane_stride + last + max_offset + V * LANES
            && sums.len() >= (OB - 1) * g.row_len + last + V * LANES,
        "direct convolution block out of bounds"
    );
    #[cfg(target_arch = "x86_64")]
    if crate::dispatch::has_avx512() {
        // SAFETY: AVX-512F was just detected; the assertion above covers every address the kernel touches.
        unsafe { avx512::correlate_block::<OB, V>(g, xp, w, sums) };
        return;
    }
    dispatch!(correlate_block_portable(g: &Geometry, xp: &[f32], w: &[f32], sums: &mut [f32]));
}

/// [`correlate_block`] in plain loops, for a dispatched build.
#[inline(always)]
fn correlate_block_portable(g: &Geometry, xp: &[f32], w: &[f32], sums: &mut [f32]) {
    let (taps, ob) = (g.taps(), w.len() / (g.in_channels * g.taps()));
    let width = match ob {
        8 => 2 * LANES,
        1 => 8 * LANES,
        _ => 4 * LANES,
    };
    let mut acc = vec![0.0f32; ob * width];
    for first in (0..g.positions).step_by(width) {
        acc.fill(0.0);
        for (c, w_c) in w.chunks_exact(taps * ob).enumerate() {
            let x_c = &xp[c * g.plane_stride + first..];
            for (&offset, w_t) in g.offsets.iter().zip(w_c.chunks_exact(ob)) {
                let x = &x_c[offset..][..width];
                for (acc, &w) in acc.chunks_exact_mut(width).zip(w_t) {
                    for (acc, &x) in acc.iter_mut().zip(x) {
                        *acc = w.mul_add(x, *acc);
                    }
                }
            }
        }
        for (o, acc) in acc.chunks_exact(width).enumerate() {
            sums[o * g.row_len + first..][..width].copy_from_slice(acc);
        }
    }
}

/// `dW[first + o, c, t]` for the `OB` channels of one block: per tap, `V·LANES` lanes of sums over every image,
/// reduced by [`pairwise_sum`]. AVX-512 where the CPU has it, else the same arithmetic in plain loops.
fn weight_block<const OB: usize, const V: usize>(
    g: &Geometry,
    xp: &[f32],
    dy: &[f32],
    c: usize,
    first: usize,
    sums: &mut [f32],
) {
    let images = dy.len() / (g.out_channels * g.row_len);
    let last = g.positions.next_multiple_of(V * LANES) - V * LANES;
    let max_offset = g.offsets.iter().copied().max().unwrap_or(0);
    assert!(
        images > 0
            && xp.len()
                >= ((images - 1) * g.in_channels + c) * g.plane_stride
                    + max_offset
                    + last
                    + V * LANES
            && first + OB <= g.out_channels
            && last + V * LANES <= g.row_len
            && sums.len() == g.out_channels * g.taps(),
        "direct weight gradient block out of bounds"
    );
    for (t, &offset) in g.offsets.iter().enumerate() {
        let mut lanes = [[[0.0f32; LANES]; V]; OB];
        #[cfg(target_arch = "x86_64")]
        if crate::dispatch::has_avx512() {
            // SAFETY: AVX-512F was just detected; the assertion above covers every address the kernel reads.
            unsafe { avx512::weight_lanes::<OB, V>(g, xp, dy, c, first, offset, &mut lanes) };
        } else {
            weight_lanes_portable(g, xp, dy, c, first, offset, &mut lanes);
        }
        #[cfg(not(target_arch = "x86_64"))]
        weight_lanes_portable(g, xp, dy, c, first, offset, &mut lanes);
        for (o, lanes) in lanes.iter().enumerate() {
            sums[(first + o) * g.taps() + t] = pairwise_sum(lanes);
        }
    }
}

/// The lanes of [`weight_block`] for one tap at `offset`, in plain loops.
fn weight_lanes_portable<const OB: usize, const V: usize>(
    g: &Geometry,
    xp: &[f32],
    dy: &[f32],
    c: usize,
    first: usize,
    offset: usize,
    lanes: &mut [[[f32; LANES]; V]; OB],
) {
    let images = dy.len() / (g.out_channels * g.row_len);
    for n in 0..images {
        let x_c = &xp[(n * g.in_channels + c) * g.plane_stride + offset..];
        let dy_n = &dy[(n * g.out_channels + first) * g.row_len..][..OB * g.row_len];
        for start in (0..g.positions).step_by(V * LANES) {
            for (lanes, dy_o) in lanes.iter_mut().zip(dy_n.chunks_exact(g.row_len)) {
                for (v, lanes) in lanes.iter_mut().enumerate() {
                    let at = start + v * LANES;
                    for ((acc, &x), &d) in lanes
                        .iter_mut()
                        .zip(&x_c[at..][..LANES])
                        .zip(&dy_o[at..][..LANES])
                    {
                        *acc = d.mul_add(x, *acc);
                    }
                }
            }
        }
    }
}

/// The sum of `V·LANES` lanes (`V` a power of two) by halving: vectors `v` and `v + V/2` are added lane by lane
/// until one is left, then its lanes the same way.
fn pairwise_sum<const V: usize>(acc: &[[f32; LANES]; V]) -> f32 {
    let mut vectors = *acc;
    let mut len = V;
    while len > 1 {
        len /= 2;
        let (low, high) = vectors.split_at_mut(len);
        for (low, high) in low.iter_mut().zip(&high[..len]) {
            for (a, &b) in low.iter_mut().zip(high) {
                *a += b;
            }
        }
    }
    let mut lanes = vectors[0];
    let mut len = LANES;
    while len > 1 {
        len /= 2;
        for i in 0..len {
            lanes[i] += lanes[i + len];
        }
    }
    lanes[0]
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::{Geometry, LANES};

    /// [`super::correlate_block`] with the `OB × V` sums in zmm registers.
    ///
    /// # Safety
    /// The CPU supports AVX-512F; the operands are as long as [`super::correlate_block`] asserts.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn correlate_block<const OB: usize, const V: usize>(
        g: &Geometry,
        xp: &[f32],
        w: &[f32],
        sums: &mut [f32],
    ) {
        let taps = g.taps();
        let (xp, w, sums) = (xp.as_ptr(), w.as_ptr(), sums.as_mut_ptr());
        for first in (0..g.positions).step_by(V * LANES) {
            let mut acc = [[_mm512_setzero_ps(); V]; OB];
            for c in 0..g.in_channels {
                for (t, &offset) in g.offsets.iter().enumerate() {
                    // SAFETY: inside `xp` and `w` by the caller's bounds.
                    unsafe {
                        let x_t = xp.add(c * g.plane_stride + first + offset);
                        let x: [__m512; V] =
                            std::array::from_fn(|v| _mm512_loadu_ps(x_t.add(v * LANES)));
                        let w_t = w.add((c * taps + t) * OB);
                        for (o, acc) in acc.iter_mut().enumerate() {
                            let w = _mm512_set1_ps(*w_t.add(o));
                            for (acc, &x) in acc.iter_mut().zip(&x) {
                                *acc = _mm512_fmadd_ps(w, x, *acc);
                            }
                        }
                    }
                }
            }
            for (o, acc) in acc.iter().enumerate() {
                for (v, &acc) in acc.iter().enumerate() {
                    // SAFETY: inside `sums` by the caller's bounds.
                    unsafe { _mm512_storeu_ps(sums.add(o * g.row_len + first + v * LANES), acc) };
                }
            }
        }
    }

    /// [`super::weight_lanes_portable`] with the `OB × V` sums in zmm registers.
    ///
    /// # Safety
    /// The CPU supports AVX-512F; the operands are as long as [`super::weight_block`] asserts.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn weight_lanes<const OB: usize, const V: usize>(
        g: &Geometry,
        xp: &[f32],
        dy: &[f32],
        c: usize,
        first: usize,
        offset: usize,
        lanes: &mut [[[f32; LANES]; V]; OB],
    ) {
        let images = dy.len() / (g.out_channels * g.row_len);
        let (xp, dy) = (xp.as_ptr(), dy.as_ptr());
        let mut acc = [[_mm512_setzero_ps(); V]; OB];
        for n in 0..images {
            // SAFETY: inside `xp` and `dy` by the caller's bounds.
            unsafe {
                let x_c = xp.add((n * g.in_channels + c) * g.plane_stride + offset);
                let dy_n = dy.add((n * g.out_channels + first) * g.row_len);
                for start in (0..g.positions).step_by(V * LANES) {
                    let x: [__m512; V] =
                        std::array::from_fn(|v| _mm512_loadu_ps(x_c.add(start + v * LANES)));
                    for (o, acc) in acc.iter_mut().enumerate() {
                        for (v, acc) in acc.iter_mut().enumerate() {
                            let d = _mm512_loadu_ps(dy_n.add(o * g.row_len + start + v * LANES));
                            *acc = _mm512_fmadd_ps(d, x[v], *acc);
                        }
                    }
                }
            }
        }
        for (lanes, acc) in lanes.iter_mut().zip(&acc) {
            for (lanes, &acc) in lanes.iter_mut().zip(acc) {
                // SAFETY: a 16-float array is a valid destination for one unaligned store.
                unsafe { _mm512_storeu_ps(lanes.as_mut_ptr(), acc) };
            }
        }
    }
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;

    /// Floats in [−1, 1) from a fixed linear congruential sequence.
    fn floats(len: usize, seed: u64) -> Vec<f32> {
        let mut state = seed;
        (0..len)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (state >> 40) as f32 / (1u64 << 23) as f32 - 1.0
            })
            .collect()
    }

    /// The AVX-512 blocks and their plain-loop twins give the same bits, for every block size and for position counts
    /// off every block width.
    #[test]
    fn avx512_blocks_match_the_plain_loops_bit_for_bit() {
        if !crate::dispatch::has_avx512() {
            return;
        }
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        for (in_channels, side, out_channels, kernel, padding) in [
            (3, 7, 15, 3, 1),
            (2, 11, 8, 3, 0),
            (5, 4, 3, 2, 1),
            (1, 13, 1, 1, 0),
        ] {
            let s = Conv2dShape {
                batch: 2,
                in_channels,
                in_h: side,
                in_w: side,
                out_channels,
                kernel_h: kernel,
                kernel_w: kernel,
                stride: (1, 1),
                padding: (padding, padding),
                dilation: (1, 1),
                groups: 1,
            };
            let g = Geometry::new(&s);
            let xp = floats(s.batch * g.in_channels * g.plane_stride, 1);
            let packed = g.pack(&floats(s.weight_len(), 2));
            let dy = floats(s.batch * g.out_channels * g.row_len, 3);
            let weights = g.in_channels * g.taps();
            for &(first, size) in &g.blocks {
                let w = &packed[first * weights..][..size * weights];
                let mut plain = vec![0.0; size * g.row_len];
                correlate_block_portable(&g, &xp, w, &mut plain);
                let mut wide = vec![0.0; size * g.row_len];
                let mut plain_dw = vec![0.0; g.out_channels * g.taps()];
                let mut wide_dw = plain_dw.clone();
                for c in 0..g.in_channels {
                    macro_rules! both {
                        ($ob:literal, $v:literal) => {{
                            // SAFETY: AVX-512F was detected above; the lengths are the ones the callers assert.
                            unsafe { avx512::correlate_block::<$ob, $v>(&g, &xp, w, &mut wide) };
                            for (t, &offset) in g.offsets.iter().enumerate() {
                                let mut a = [[[0.0f32; LANES]; $v]; $ob];
                                let mut b = a;
                                weight_lanes_portable(&g, &xp, &dy, c, first, offset, &mut a);
                                // SAFETY: as above.
                                unsafe { avx512::weight_lanes::<$ob, $v>(&g, &xp, &dy, c, first, offset, &mut b) };
                                for o in 0..$ob {
                                    plain_dw[(first + o) * g.taps() + t] = pairwise_sum(&a[o]);
                                    wide_dw[(first + o) * g.taps() + t] = pairwise_sum(&b[o]);
                                }
                            }
                        }};
                    }
                    match size {
                        8 => both!(8, 2),
                        4 => both!(4, 4),
                        2 => both!(2, 4),
                        _ => both!(1, 8),
                    }
                    assert_eq!(bits(&plain_dw), bits(&wide_dw), "weight gradient, {s:?}");
                }
                let kept = |v: &[f32]| -> Vec<u32> {
                    (0..size)
                        .flat_map(|o| bits(&v[o * g.row_len..][..g.positions]))
                        .collect()
                };
                assert_eq!(kept(&plain), kept(&wide), "forward, {s:?}");
            }
        }
    }
}
