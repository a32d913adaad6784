//! The weight transform `U[ξ] = (G·g·Gᵀ)[ξ]` of the forward pass and the input gradient, written straight into the
//! GEMMs' packed A panels (`gemm::PanelLayout`, one product per point ξ) instead of stored and packed afterwards.
//!
//! Loop structure: one task per panel of MR rows (the micro-kernel's register-tile height). A task walks the columns
//! in groups of `COLUMN_GROUP`; for each column it transforms the panel's kernels, all at once in the lanes of one
//! AVX-512 register per value where the CPU has them (each tap of every row by one masked gather), else one at a time
//! in scalar registers; the values land in a small block `[ξ][column][panel row]`, and each product's run of the group
//! is then copied to its panel in one piece. Stored one by one instead, the values of one kernel would be `m̄·k` floats
//! apart, one per product: a multiple of 4 KiB for most channel counts, so all 16 (or 36) stores of a kernel would
//! fall into one L1 set and evict each other (the N32 C256 7² forward, one thread, took 12.7–12.9 ms that way against
//! 10.0–10.2 ms through the block). The lanes run exactly the scalar operations, in the same order, through
//! [`Value`], so the bits do not depend on the path.

use rayon::prelude::*;

use super::super::scratch::Buffer;
use super::{transform, transform4, Tiling};
use crate::error::Result;
use crate::gemm::{MicroKernel, PackedA, PanelLayout};

/// Columns of a panel transformed into the block before it is copied out: divides the GEMM's k-block (256), so a
/// group never straddles two.
const COLUMN_GROUP: usize = 16;

/// One number of the kernel transforms, or one per lane: the three operations `G·g·Gᵀ` needs. The lanes' versions
/// round exactly as `f32`'s do.
pub(super) trait Value: Copy {
    fn add(self, other: Self) -> Self;
    fn sub(self, other: Self) -> Self;
    /// `by · self`.
    fn scale(self, by: f32) -> Self;
}

impl Value for f32 {
    #[inline(always)]
    fn add(self, other: Self) -> Self {
        self + other
    }

    #[inline(always)]
    fn sub(self, other: Self) -> Self {
        self - other
    }

    #[inline(always)]
    fn scale(self, by: f32) -> Self {
        by * self
    }
}

/// The transformed weights `U`, in `out`, as the GEMMs' packed A panels for this CPU's micro-kernel (see the module
/// header): element `(row, col)` of product ξ is value ξ of `G·g·Gᵀ` for the kernel `g` at `weight[row·row_stride +
/// col·col_stride ..][..9]`, rotated by 180° if `flip`; the panels' padding rows are zero (±0).
pub(super) fn transform_weights<'a>(
    tiling: Tiling,
    weight: &[f32],
    (row_stride, col_stride): (usize, usize),
    flip: bool,
    (rows, cols): (usize, usize),
    out: &'a mut Buffer,
) -> Result<PackedA<'a>> {
    let kernel = MicroKernel::detect();
    let points = tiling.points();
    let layout = PanelLayout::new(kernel, rows, cols);
    let (panel_rows, product_len) = (layout.panel_rows(), layout.product_len());
    let lanes = lanes_fit(panel_rows, row_stride);
    let panels = out.floats(points * product_len);
    let shared = SharedPanels(panels.as_mut_ptr());
    (0..rows.div_ceil(panel_rows))
        .into_par_iter()
        .for_each(|panel| {
            let first = panel * panel_rows;
            let mut block = vec![0.0; points * COLUMN_GROUP * panel_rows];
            for group_start in (0..cols).step_by(COLUMN_GROUP) {
                let group = COLUMN_GROUP.min(cols - group_start);
                let run = group * panel_rows;
                for col in group_start..group_start + group {
                    let column = PanelColumn {
                        tiling,
                        taps: &weight[col * col_stride..],
                        row_stride,
                        flip,
                        rows: (first, rows.min(first + panel_rows)),
                        panel_rows,
                        lanes,
                    };
                    column.transform(&mut block[(col - group_start) * panel_rows..], run);
                }
                let start = layout.index(first, group_start);
                for (xi, values) in block.chunks_exact(run).take(points).enumerate() {
                    // SAFETY: the group lies in one k-block (COLUMN_GROUP divides its width), so its columns of this
                    // panel are the `run` consecutive elements from `start`, inside product ξ's `product_len`; only
                    // this task writes this panel's elements.
                    unsafe {
                        std::ptr::copy_nonoverlapping(
                            values.as_ptr(),
                            shared.at(xi * product_len + start),
                            run,
                        )
                    };
                }
            }
        });
    PackedA::from_panels(kernel, (points, rows, cols), panels)
}

/// Whether a panel's columns run in AVX-512 lanes ([`PanelColumn::transform_lanes`]): the CPU has them, a panel's
/// rows fit the 16 lanes, and every tap's offset from its panel's first row fits in an i32.
fn lanes_fit(panel_rows: usize, row_stride: usize) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        panel_rows <= 16
            && row_stride
                .checked_mul(15)
                .is_some_and(|last| last + 9 <= i32::MAX as usize)
            && crate::dispatch::has_avx512()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (panel_rows, row_stride);
        false
    }
}

/// The kernels of one column of a panel: rows `rows.0 .. rows.1` (the panel's rows inside the matrix) of the
/// `panel_rows`, row `r`'s taps from `taps[r·row_stride]`, rotated by 180° if `flip`; in AVX-512 lanes if `lanes`
/// (decided once per call by [`lanes_fit`]).
struct PanelColumn<'a> {
    tiling: Tiling,
    taps: &'a [f32],
    row_stride: usize,
    flip: bool,
    rows: (usize, usize),
    panel_rows: usize,
    lanes: bool,
}

impl PanelColumn<'_> {
    /// Writes value ξ of panel row `r` to `out[ξ·run + r]` for every `r < panel_rows`; rows past the matrix get the
    /// transform of a zero kernel (zeros, some of them −0).
    fn transform(&self, out: &mut [f32], run: usize) {
        #[cfg(target_arch = "x86_64")]
        if self.lanes {
            // SAFETY: `lanes_fit` checked that the CPU supports AVX-512F, that the panel fits the lanes and that
            // every tap's offset from the panel's first row fits in an i32.
            return unsafe { self.transform_lanes(out, run) };
        }
        self.transform_scalar(out, run);
    }

    /// [`PanelColumn::transform`] one kernel at a time.
    fn transform_scalar(&self, out: &mut [f32], run: usize) {
        let (first, end) = self.rows;
        for r in 0..self.panel_rows {
            let values = &mut out[r..];
            // Rows past the matrix transform a zero kernel, as the lanes do.
            let g = if first + r < end {
                let taps = &self.taps[(first + r) * self.row_stride..][..9];
                std::array::from_fn(|t| taps[if self.flip { 8 - t } else { t }])
            } else {
                [0.0; 9]
            };
            match self.tiling {
                Tiling::F2 => scatter(&transform::kernel(&g), values, run),
                Tiling::F4 => scatter(&transform4::kernel(&g), values, run),
            }
        }
    }

    /// [`PanelColumn::transform`] with panel row `r` in lane `r` of AVX-512 registers.
    ///
    /// # Safety
    /// The CPU supports AVX-512F, `panel_rows ≤ 16`, and `15·row_stride + 9` fits in an i32.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn transform_lanes(&self, out: &mut [f32], run: usize) {
        use std::arch::x86_64::*;
        let (first, end) = self.rows;
        let live = end.saturating_sub(first);
        let mut g = [Zmm(_mm512_setzero_ps()); 9];
        if live > 0 {
            // Lane r reads taps[(first + r)·row_stride + tap]; the last live row's taps end inside `taps`.
            let taps = &self.taps[first * self.row_stride..(end - 1) * self.row_stride + 9];
            let live_lanes = ((1u32 << live) - 1) as __mmask16;
            let row_offsets = _mm512_mullo_epi32(
                _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                _mm512_set1_epi32(self.row_stride as i32),
            );
            for (t, g_t) in g.iter_mut().enumerate() {
                let tap = if self.flip { 8 - t } else { t };
                let offsets = _mm512_add_epi32(row_offsets, _mm512_set1_epi32(tap as i32));
                // SAFETY: the enabled lanes r < live read taps[r·row_stride + tap], inside `taps`; the others read
                // nothing and stay zero, so the padding rows transform a zero kernel.
                *g_t = Zmm(unsafe {
                    _mm512_mask_i32gather_ps::<4>(
                        _mm512_setzero_ps(),
                        live_lanes,
                        offsets,
                        taps.as_ptr(),
                    )
                });
            }
        }
        let panel_lanes = ((1u32 << self.panel_rows) - 1) as __mmask16;
        let store = |values: &[Zmm], out: &mut [f32]| {
            for (xi, value) in values.iter().enumerate() {
                let dst = &mut out[xi * run..][..self.panel_rows];
                // SAFETY: the enabled lanes are the `panel_rows` floats of `dst`; AVX-512F as this function's.
                unsafe { _mm512_mask_storeu_ps(dst.as_mut_ptr(), panel_lanes, value.0) };
            }
        };
        match self.tiling {
            Tiling::F2 => store(&transform::kernel(&g), out),
            Tiling::F4 => store(&transform4::kernel(&g), out),
        }
    }
}

/// Sixteen values in the lanes of an AVX-512 register. Made only by [`PanelColumn::transform_lanes`], which runs on
/// AVX-512F CPUs alone, so its operations' instructions always exist.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
struct Zmm(std::arch::x86_64::__m512);

#[cfg(target_arch = "x86_64")]
impl Value for Zmm {
    #[inline(always)]
    fn add(self, other: Self) -> Self {
        // SAFETY: a `Zmm` exists only on an AVX-512F CPU (see the type).
        Self(unsafe { std::arch::x86_64::_mm512_add_ps(self.0, other.0) })
    }

    #[inline(always)]
    fn sub(self, other: Self) -> Self {
        // SAFETY: as for `add`.
        Self(unsafe { std::arch::x86_64::_mm512_sub_ps(self.0, other.0) })
    }

    #[inline(always)]
    fn scale(self, by: f32) -> Self {
        use std::arch::x86_64::{_mm512_mul_ps, _mm512_set1_ps};
        // SAFETY: as for `add`.
        Self(unsafe { _mm512_mul_ps(_mm512_set1_ps(by), self.0) })
    }
}

/// Writes `values[ξ]` to `out[ξ·stride]`.
#[inline(always)]
fn scatter(values: &[f32], out: &mut [f32], stride: usize) {
    for (xi, &value) in values.iter().enumerate() {
        out[xi * stride] = value;
    }
}

/// The panels [`transform_weights`]' tasks write, each only the elements of its own panel's rows.
#[derive(Clone, Copy)]
struct SharedPanels(*mut f32);

impl SharedPanels {
    /// The element at `index` (a method, so that closures capture the whole wrapper rather than its raw pointer).
    fn at(self, index: usize) -> *mut f32 {
        self.0.wrapping_add(index)
    }
}

// SAFETY: the tasks sharing the pointer write disjoint elements, and the buffer outlives them (`transform_weights`).
unsafe impl Send for SharedPanels {}
// SAFETY: as for `Send`.
unsafe impl Sync for SharedPanels {}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    //! The AVX-512 lanes against the scalar loop: the same operations in the same order, so the same bits, on panels
    //! of every height up to 16 with rows past the matrix (zeros), both tilings, flipped or not.

    use super::*;

    #[test]
    fn the_lanes_give_the_scalar_loops_bits() {
        if !crate::dispatch::has_avx512() {
            eprintln!("skipped: this CPU lacks AVX-512, so only the scalar loop runs");
            return;
        }
        let weight: Vec<f32> = (0..32 * 18 + 9)
            .map(|i| ((i * 7919 % 1013) as f32 - 506.0) / 97.0)
            .collect();
        for tiling in [Tiling::F2, Tiling::F4] {
            for panel_rows in [1, 6, 12, 16] {
                for (first, end) in [
                    (0, panel_rows),
                    (0, 1),
                    (panel_rows, 2 * panel_rows - 1),
                    (3, 3),
                ] {
                    for flip in [false, true] {
                        let column = PanelColumn {
                            tiling,
                            taps: &weight[9..],
                            row_stride: 18,
                            flip,
                            rows: (first, end.min(first + panel_rows)),
                            panel_rows,
                            lanes: true,
                        };
                        let run = 3 * panel_rows;
                        let len = (tiling.points() - 1) * run + panel_rows;
                        let (mut scalar, mut lanes) = (vec![f32::NAN; len], vec![f32::NAN; len]);
                        column.transform_scalar(&mut scalar, run);
                        // SAFETY: AVX-512F was detected above; the panel fits the lanes and the offsets an i32.
                        unsafe { column.transform_lanes(&mut lanes, run) };
                        for (i, (s, l)) in scalar.iter().zip(&lanes).enumerate() {
                            assert_eq!(
                                s.to_bits(),
                                l.to_bits(),
                                "{tiling:?}, {panel_rows} panel rows, rows {first}..{end}, flip {flip}: element {i}"
                            );
                        }
                    }
                }
            }
        }
    }
}
