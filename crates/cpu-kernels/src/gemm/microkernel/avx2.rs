//! The 6×16 AVX2 + FMA micro-kernel.
//!
//! The tile lives in 12 ymm registers (6 rows × 2 vectors of 8 lanes). Each step loads two vectors of B̃ and
//! broadcasts six scalars of Ã: 12 FMAs per 8 loads, and 12 independent accumulators cover the 2 FMA ports × 4-cycle
//! latency = 8 FMAs in flight that keep both ports of a modern x86 core busy. With the two B̃ vectors and a broadcast
//! that is 15 of the 16 ymm registers.

use std::arch::x86_64::*;

use super::{store, CTile, Kernel};

/// Rows of the register tile.
pub(in crate::gemm) const MR: usize = 6;
/// Columns of the register tile: two ymm vectors.
pub(in crate::gemm) const NR: usize = 16;

/// The AVX2 + FMA kernel.
pub(in crate::gemm) struct Avx2Fma;

impl Kernel<MR, NR> for Avx2Fma {
    simd_kernel_methods!("avx2,fma");
}

/// Element `(r, p)` of A is `a[p·MR + r]` (a packed panel) or, with `ROWS`, `a[r·row_stride + p]` (rows of a
/// row-major A in place). The packed build has constant offsets and ignores `row_stride`.
///
/// # Safety
/// The CPU supports AVX2 and FMA; `a` points to the `kc·MR` floats of a packed panel, or with `ROWS` to
/// `(MR − 1)·row_stride + kc` readable floats; `b` to `kc·NR`; `c` as for [`Kernel::tile`].
#[target_feature(enable = "avx2,fma")]
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
            ..=2 => tile_live::<ROWS, 2>(kc, a, row_stride, b, alpha, beta, c),
            3..=4 => tile_live::<ROWS, 4>(kc, a, row_stride, b, alpha, beta, c),
            _ => tile_live::<ROWS, MR>(kc, a, row_stride, b, alpha, beta, c),
        }
    }
}

/// [`tile`] on the first `LIVE ≥ c.rows` rows of the tile only, as in the AVX-512 kernel: a bottom-edge tile of 2 or
/// 4 rows runs a third or two thirds of a full tile's FMAs, and its rows get the same products in the same order.
///
/// # Safety
/// As for [`tile`], and `c.rows ≤ LIVE ≤ MR`.
#[inline]
#[target_feature(enable = "avx2,fma")]
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
            // SAFETY: a prefetch never faults; the address is the first element of tile row r, inside C.
            unsafe {
                let row = c.ptr.add(r * c.row_stride);
                _mm_prefetch::<_MM_HINT_T0>(row.cast());
                _mm_prefetch::<_MM_HINT_T0>(row.add(NR - 1).cast());
            }
        }
    }
    let mut acc = [[_mm256_setzero_ps(); 2]; LIVE];
    for p in 0..kc {
        // SAFETY: p < kc, so the NR floats of B̃ row p and the MR floats of A's column p are inside the operands.
        unsafe {
            let b_lo = _mm256_loadu_ps(b.add(p * NR));
            let b_hi = _mm256_loadu_ps(b.add(p * NR + 8));
            let a_p = a.add(p * p_step);
            for (r, acc_r) in acc.iter_mut().enumerate() {
                let a_rp = _mm256_broadcast_ss(&*a_p.add(r * row_step));
                acc_r[0] = _mm256_fmadd_ps(a_rp, b_lo, acc_r[0]);
                acc_r[1] = _mm256_fmadd_ps(a_rp, b_hi, acc_r[1]);
            }
        }
    }

    let alpha_v = _mm256_set1_ps(alpha);
    let beta_v = _mm256_set1_ps(beta);
    if LIVE == MR && c.rows == MR && c.cols == NR && c.col_stride == 1 {
        // Full tile with contiguous rows: update C sixteen floats per row, with the same separate multiplies and
        // add as `store`, so full and edge tiles round alike (and a bias is added as `store` adds it).
        for (r, acc_r) in acc.iter().enumerate() {
            // SAFETY: the tile is full and rows are contiguous, so floats r·row_stride .. +16 are the tile's row r.
            unsafe {
                let row = c.ptr.add(r * c.row_stride);
                for (half, &acc_rh) in acc_r.iter().enumerate() {
                    let dst = row.add(8 * half);
                    let mut v = _mm256_mul_ps(alpha_v, acc_rh);
                    if !c.bias.is_null() {
                        // A full tile's bias holds NR floats: these eight are in it.
                        v = _mm256_add_ps(v, _mm256_loadu_ps(c.bias.add(8 * half)));
                    } else if beta != 0.0 {
                        v = _mm256_add_ps(v, _mm256_mul_ps(beta_v, _mm256_loadu_ps(dst)));
                    }
                    _mm256_storeu_ps(dst, v);
                }
            }
        }
    } else {
        let mut spill = [[0.0f32; NR]; MR];
        for (row, acc_r) in spill.iter_mut().zip(&acc) {
            // SAFETY: each spill row holds NR = 16 floats, two vectors' worth.
            unsafe {
                _mm256_storeu_ps(row.as_mut_ptr(), acc_r[0]);
                _mm256_storeu_ps(row.as_mut_ptr().add(8), acc_r[1]);
            }
        }
        // SAFETY: `c` satisfies `store`'s contract by ours.
        unsafe { store(&spill, alpha, beta, c) };
    }
}
