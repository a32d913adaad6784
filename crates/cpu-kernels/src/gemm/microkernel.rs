//! The micro-kernel: one MR×NR tile of C from one packed A panel (MR×kc) and one packed B panel (kc×NR),
//!
//! ```text
//! acc[r][c] = Σ_{p<kc} Ã[p·MR + r] · B̃[p·NR + c]        (p ascending: the sum order never depends on threads)
//! C[r, c]   = alpha·acc[r][c] + beta·C[r, c]            (beta == 0: C is overwritten, never read)
//! ```
//!
//! Each step `p` is a rank-1 update of the MR×NR accumulator tile. With MR×NR = 6×16 the AVX2 version keeps the tile in
//! 12 ymm registers (6 rows × 2 vectors of 8 lanes), loads two vectors of B̃ and broadcasts six scalars of Ã per step:
//! 12 FMAs per 8 loads, which keeps both FMA ports of a modern x86 core busy. The portable version is the same loop in
//! plain Rust (separate multiply and add, so its roundings differ from the fused AVX2 ones by at most one ulp per step).

use std::fmt;

/// Rows of the register tile (and of a packed A panel).
pub(super) const MR: usize = 6;
/// Columns of the register tile (and of a packed B panel).
pub(super) const NR: usize = 16;

/// Which micro-kernel computes the register tiles. [`MicroKernel::detect`] picks the fastest the CPU supports; the
/// others exist so tests can hold every kernel against the same reference.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MicroKernel {
    /// Plain Rust, any target.
    Portable,
    /// x86-64 AVX2 + FMA intrinsics; needs a CPU with both.
    Avx2Fma,
}

impl MicroKernel {
    /// The fastest micro-kernel this CPU can run.
    pub fn detect() -> Self {
        if Self::Avx2Fma.is_supported() {
            Self::Avx2Fma
        } else {
            Self::Portable
        }
    }

    /// Whether this CPU can run the kernel.
    pub fn is_supported(self) -> bool {
        match self {
            Self::Portable => true,
            #[cfg(target_arch = "x86_64")]
            Self::Avx2Fma => is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"),
            #[cfg(not(target_arch = "x86_64"))]
            Self::Avx2Fma => false,
        }
    }
}

impl fmt::Display for MicroKernel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Portable => "portable",
            Self::Avx2Fma => "avx2+fma",
        })
    }
}

/// The part of C one micro-kernel call updates: element `(r, c)`, `r < rows ≤ MR`, `c < cols ≤ NR`, lives at
/// `ptr + r·row_stride + c·col_stride`.
#[derive(Clone, Copy)]
pub(super) struct CTile {
    pub ptr: *mut f32,
    pub row_stride: usize,
    pub col_stride: usize,
    pub rows: usize,
    pub cols: usize,
}

/// Runs `kernel` on one tile: `C ← alpha·Ã·B̃ + beta·C` over `kc` steps.
///
/// # Safety
/// `kernel.is_supported()` must hold; every element of `c` must be in bounds of one live allocation and written by no
/// other thread during the call; `a` and `b` must hold at least `kc·MR` and `kc·NR` floats.
pub(super) unsafe fn run(
    kernel: MicroKernel,
    kc: usize,
    a: &[f32],
    b: &[f32],
    alpha: f32,
    beta: f32,
    c: CTile,
) {
    debug_assert!(a.len() >= kc * MR && b.len() >= kc * NR);
    match kernel {
        // SAFETY: forwarded from this function's contract.
        MicroKernel::Portable => unsafe { store(&portable(kc, a, b), alpha, beta, c) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the caller checked AVX2 and FMA are available; the panel lengths and `c` are forwarded contracts.
        MicroKernel::Avx2Fma => unsafe { avx2::tile(kc, a.as_ptr(), b.as_ptr(), alpha, beta, c) },
        #[cfg(not(target_arch = "x86_64"))]
        MicroKernel::Avx2Fma => unreachable!("AVX2 is never reported as supported off x86-64"),
    }
}

/// The accumulator tile `Σ_p Ã[p]ᵀ·B̃[p]` in plain Rust.
fn portable(kc: usize, a: &[f32], b: &[f32]) -> [[f32; NR]; MR] {
    let mut acc = [[0.0f32; NR]; MR];
    for (a_p, b_p) in a.chunks_exact(MR).zip(b.chunks_exact(NR)).take(kc) {
        for (acc_row, &a_rp) in acc.iter_mut().zip(a_p) {
            for (acc_rc, &b_pc) in acc_row.iter_mut().zip(b_p) {
                *acc_rc += a_rp * b_pc;
            }
        }
    }
    acc
}

/// Writes `C ← alpha·acc + beta·C` for the valid part of the tile, one element at a time.
///
/// # Safety
/// As for [`run`]: every element of `c` is in bounds and exclusively ours.
unsafe fn store(acc: &[[f32; NR]; MR], alpha: f32, beta: f32, c: CTile) {
    for (r, acc_row) in acc.iter().enumerate().take(c.rows) {
        for (j, &v) in acc_row.iter().enumerate().take(c.cols) {
            // SAFETY: r < rows and j < cols, so the caller guarantees this element is in bounds and ours alone.
            let dst = unsafe { &mut *c.ptr.add(r * c.row_stride + j * c.col_stride) };
            *dst = if beta == 0.0 {
                alpha * v
            } else {
                alpha * v + beta * *dst
            };
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::{store, CTile, MR, NR};

    /// The 6×16 AVX2 + FMA micro-kernel.
    ///
    /// # Safety
    /// The CPU supports AVX2 and FMA; `a` and `b` point to `kc·MR` and `kc·NR` readable floats; `c` as for
    /// [`super::run`].
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn tile(
        kc: usize,
        a: *const f32,
        b: *const f32,
        alpha: f32,
        beta: f32,
        c: CTile,
    ) {
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
        let mut acc = [[_mm256_setzero_ps(); 2]; MR];
        for p in 0..kc {
            // SAFETY: p < kc, so the NR floats of B̃ row p and the MR floats of Ã column p are inside the panels.
            unsafe {
                let b_lo = _mm256_loadu_ps(b.add(p * NR));
                let b_hi = _mm256_loadu_ps(b.add(p * NR + 8));
                let a_p = a.add(p * MR);
                for (r, acc_r) in acc.iter_mut().enumerate() {
                    let a_rp = _mm256_broadcast_ss(&*a_p.add(r));
                    acc_r[0] = _mm256_fmadd_ps(a_rp, b_lo, acc_r[0]);
                    acc_r[1] = _mm256_fmadd_ps(a_rp, b_hi, acc_r[1]);
                }
            }
        }

        let alpha_v = _mm256_set1_ps(alpha);
        let beta_v = _mm256_set1_ps(beta);
        if c.rows == MR && c.cols == NR && c.col_stride == 1 {
            // Full tile with contiguous rows: update C sixteen floats per row, with the same separate multiplies and
            // add as `store`, so full and edge tiles round alike.
            for (r, acc_r) in acc.iter().enumerate() {
                // SAFETY: the tile is full and rows are contiguous, so floats r·row_stride .. +16 are the tile's row r.
                unsafe {
                    let row = c.ptr.add(r * c.row_stride);
                    for (half, &acc_rh) in acc_r.iter().enumerate() {
                        let dst = row.add(8 * half);
                        let mut v = _mm256_mul_ps(alpha_v, acc_rh);
                        if beta != 0.0 {
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
}
