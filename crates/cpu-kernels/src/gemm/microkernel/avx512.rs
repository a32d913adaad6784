//! The 12×32 AVX-512F micro-kernel.
//!
//! Register budget (32 zmm registers of 16 floats): the 12×32 accumulator tile takes 24 (12 rows × 2 vectors), the
//! two vectors of B̃ row p take 2, and the broadcast Ã scalar of the current row 1, leaving 5 spare. Each step p
//! issues 24 FMAs against 2 vector loads and 12 broadcast loads (`vbroadcastss` from memory: a load-port µop, no
//! shuffle): at 2 FMA ports that is 12 cycles of FMA work for 14 loads, inside the 2 loads a cycle the core sustains,
//! so the FMA ports stay the bottleneck. The 24 accumulators are independent chains, three times the
//! 2 ports × 4-cycle latency = 8 FMAs that must be in flight to keep both ports busy, which leaves slack for the
//! loads.
//!
//! Why 12×32 rather than the other shapes that fit: 14×32 (28 accumulators) does not divide the A block height
//! `MC = 120`, and 8×48 (24 accumulators) has a 48-float B̃ panel of 48 KiB at `KC = 256`, the whole L1d, against 32
//! KiB for NR = 32. The C write-back masks the columns past the matrix edge (`cols < 32`) instead of going through a
//! scalar spill, so narrow right-edge tiles stay vectorised; that edge write-back is out of line, so the full tiles'
//! write-back keeps the accumulators in registers. Bottom-edge tiles of at most 4 or 8 rows run a 4- or 8-row copy of
//! the loop (`tile_live`), not 12 rows of which the last are A's zero padding: with 32 or 64 rows (the U-Net's
//! channel counts) a full 12-row loop would spend 11 % of the FMAs on padding.

use std::arch::x86_64::*;

use super::{store, CTile, Kernel};

/// Rows of the register tile.
pub(in crate::gemm) const MR: usize = 12;
/// Columns of the register tile: two zmm vectors.
pub(in crate::gemm) const NR: usize = 32;

/// The AVX-512F kernel.
pub(in crate::gemm) struct Avx512F;

impl Kernel<MR, NR> for Avx512F {
    simd_kernel_methods!("avx512f");
}

/// Element `(r, p)` of A is `a[p·MR + r]` (a packed panel) or, with `ROWS`, `a[r·row_stride + p]` (rows of a
/// row-major A in place). The packed build has constant offsets and ignores `row_stride`.
///
/// # Safety
/// The CPU supports AVX-512F; `a` points to the `kc·MR` floats of a packed panel, or with `ROWS` to
/// `(MR − 1)·row_stride + kc` readable floats; `b` to `kc·NR`; `c` as for [`Kernel::tile`].
#[target_feature(enable = "avx512f")]
unsafe fn tile<const ROWS: bool>(
    kc: usize,
    a: *const f32,
    row_stride: usize,
    b: *const f32,
    alpha: f32,
    beta: f32,
    c: CTile,
) {
    // SAFETY: forwarded contracts; each arm's `LIVE` covers the tile's rows.
    unsafe {
        match c.rows {
            ..=4 => tile_live::<ROWS, 4>(kc, a, row_stride, b, alpha, beta, c),
            5..=8 => tile_live::<ROWS, 8>(kc, a, row_stride, b, alpha, beta, c),
            _ => tile_live::<ROWS, MR>(kc, a, row_stride, b, alpha, beta, c),
        }
    }
}

/// [`tile`] on the first `LIVE ≥ c.rows` rows of the tile only: a bottom-edge tile of at most 4 or 8 rows (the last
/// of an A with 64 or 32 rows, say: a convolution's output channels) runs a third or two thirds of a full tile's
/// FMAs instead of spending the rest on A's zero padding. The rows it computes get the same products in the same
/// order, so the same bits.
///
/// # Safety
/// As for [`tile`], and `c.rows ≤ LIVE ≤ MR`.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn tile_live<const ROWS: bool, const LIVE: usize>(
    kc: usize,
    a: *const f32,
    row_stride: usize,
    b: *const f32,
    alpha: f32,
    beta: f32,
    c: CTile,
) {
    debug_assert!(c.rows <= LIVE && LIVE <= MR);
    let (row_step, p_step) = if ROWS { (row_stride, 1) } else { (1, MR) };
    if c.col_stride == 1 {
        for r in 0..c.rows {
            // SAFETY: a prefetch never faults; the addresses are the first and last element of tile row r.
            unsafe {
                let row = c.ptr.add(r * c.row_stride);
                _mm_prefetch::<_MM_HINT_T0>(row.cast());
                _mm_prefetch::<_MM_HINT_T0>(row.add(c.cols - 1).cast());
            }
        }
    }
    let mut acc = [[_mm512_setzero_ps(); 2]; LIVE];
    for p in 0..kc {
        // SAFETY: p < kc, so the NR floats of B̃ row p and the MR floats of A's column p are inside the operands.
        unsafe {
            let b_lo = _mm512_loadu_ps(b.add(p * NR));
            let b_hi = _mm512_loadu_ps(b.add(p * NR + 16));
            let a_p = a.add(p * p_step);
            for (r, acc_r) in acc.iter_mut().enumerate() {
                let a_rp = _mm512_set1_ps(*a_p.add(r * row_step));
                acc_r[0] = _mm512_fmadd_ps(a_rp, b_lo, acc_r[0]);
                acc_r[1] = _mm512_fmadd_ps(a_rp, b_hi, acc_r[1]);
            }
        }
    }

    if LIVE == MR && c.col_stride == 1 && c.rows == MR && c.cols == NR {
        // Full tile with contiguous rows: constant loop bounds, so the accumulators never leave their registers.
        for (r, acc_r) in acc.iter().enumerate() {
            for (half, &acc_rh) in acc_r.iter().enumerate() {
                // SAFETY: the tile is full and rows are contiguous, so floats r·row_stride + 16·half .. +16 are in C.
                unsafe {
                    update(
                        c.ptr.add(r * c.row_stride + 16 * half),
                        acc_rh,
                        !0,
                        alpha,
                        beta,
                        bias_half(c.bias, half),
                    )
                };
            }
        }
    } else {
        // SAFETY: `c` is as our caller guaranteed.
        unsafe { edge(acc, alpha, beta, c) };
    }
}

/// The bias of a tile's 16-column half `half` (null stays null). `wrapping_add`: the pointer past a narrow tile's
/// bias is formed but, its lanes masked off, never read.
#[inline(always)]
fn bias_half(bias: *const f32, half: usize) -> *const f32 {
    if bias.is_null() {
        bias
    } else {
        bias.wrapping_add(16 * half)
    }
}

/// `C ← alpha·acc + beta·C`, or `alpha·acc + bias` when `bias` is not null, for the 16 lanes of `dst` that `mask`
/// enables, with the same separate multiplies and add as `store`, so every element rounds as it would there.
///
/// # Safety
/// The CPU supports AVX-512F; the enabled lanes are in bounds of C and ours, and of the bias when there is one.
/// Masked-off lanes are neither read nor written and cannot fault.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn update(
    dst: *mut f32,
    acc: __m512,
    mask: __mmask16,
    alpha: f32,
    beta: f32,
    bias: *const f32,
) {
    let mut v = _mm512_mul_ps(_mm512_set1_ps(alpha), acc);
    // SAFETY: forwarded from the caller: the enabled lanes are in bounds and ours.
    unsafe {
        if !bias.is_null() {
            v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mask, bias));
        } else if beta != 0.0 {
            let old = _mm512_maskz_loadu_ps(mask, dst);
            v = _mm512_add_ps(v, _mm512_mul_ps(_mm512_set1_ps(beta), old));
        }
        _mm512_mask_storeu_ps(dst, mask, v);
    }
}

/// The write-back of a partial tile or of a C with strided rows. Out of line, so that the full-tile path keeps the
/// accumulators in registers (a loop with a data-dependent bound over them would put them in memory for every tile).
///
/// # Safety
/// The CPU supports AVX-512F; `c` as for [`Kernel::tile`].
#[inline(never)]
#[target_feature(enable = "avx512f")]
unsafe fn edge<const LIVE: usize>(acc: [[__m512; 2]; LIVE], alpha: f32, beta: f32, c: CTile) {
    if c.col_stride == 1 {
        // Contiguous rows: rows past `rows` are skipped, lanes past column `cols` masked off.
        let lanes = |half: usize| -> __mmask16 {
            let valid = c.cols.saturating_sub(16 * half).min(16);
            ((1u32 << valid) - 1) as __mmask16
        };
        let masks = [lanes(0), lanes(1)];
        for (acc_r, r) in acc.iter().zip(0..c.rows) {
            for (half, (&acc_rh, &mask)) in acc_r.iter().zip(&masks).enumerate() {
                if mask != 0 {
                    // SAFETY: r < rows and column 16·half < cols (the mask is not empty), so the vector starts in C
                    // and the mask enables only columns below `cols`, which are ours.
                    unsafe {
                        update(
                            c.ptr.add(r * c.row_stride + 16 * half),
                            acc_rh,
                            mask,
                            alpha,
                            beta,
                            bias_half(c.bias, half),
                        )
                    };
                }
            }
        }
    } else {
        let mut spill = [[0.0f32; NR]; MR];
        for (row, acc_r) in spill.iter_mut().zip(&acc) {
            // SAFETY: each spill row holds NR = 32 floats, two vectors' worth.
            unsafe {
                _mm512_storeu_ps(row.as_mut_ptr(), acc_r[0]);
                _mm512_storeu_ps(row.as_mut_ptr().add(16), acc_r[1]);
            }
        }
        // SAFETY: `c` satisfies `store`'s contract by ours.
        unsafe { store(&spill, alpha, beta, c) };
    }
}
