//! The micro-kernels: one MR×NR tile of C from one packed A panel (MR×kc) and one packed B panel (kc×NR),
//!
//! ```text
//! acc[r][c] = Σ_{p<kc} Ã[p·MR + r] · B̃[p·NR + c]        (p ascending: the sum order never depends on threads)
//! C[r, c]   = alpha·acc[r][c] + beta·C[r, c]            (beta == 0: C is overwritten, never read)
//! ```
//!
//! Each step `p` is a rank-1 update of the MR×NR accumulator tile, held in vector registers. The tile shape is a
//! property of the kernel ([`Kernel`]'s const parameters), because the register file decides it: 6×16 for AVX2's 16
//! ymm registers (`avx2.rs`), 12×32 for AVX-512's 32 zmm registers (`avx512.rs`); the packing layout and the driver
//! are compiled once per shape, so each kernel's loops see constant panel widths. The portable kernel is the same loop
//! in plain Rust at 6×16 (separate multiply and add, so its roundings differ from the fused ones by at most one ulp
//! per step).
//!
//! Every kernel also reads a row-major A in place ([`Kernel::tile_rows`]: `a[r·row_stride + p]` for `Ã[p·MR + r]`):
//! the step's MR broadcasts then come from MR row streams instead of one packed column, which costs the load ports
//! nothing more, and the transposing copy of A's panel is skipped.

/// Implements [`Kernel`]'s methods inside a SIMD kernel's `impl` block, with the kernel module's `MR`, `NR` and
/// `unsafe fn tile<const ROWS: bool>(kc, a, row_stride, b, alpha, beta, c)` in scope: `tile` and `tile_rows` check
/// the panel lengths and forward to that function (a packed panel, or rows of A in place); the packing methods are
/// wrappers compiled with `$features`, the target features the kernel's `is_supported` check guarantees, so the
/// packing copies run in the kernel's vector registers and may use AVX transposes.
#[cfg(target_arch = "x86_64")]
macro_rules! simd_kernel_methods {
    ($features:literal) => {
        unsafe fn tile(kc: usize, a: &[f32], b: &[f32], alpha: f32, beta: f32, c: CTile) {
            debug_assert!(a.len() >= kc * MR && b.len() >= kc * NR);
            // SAFETY: the caller checked the CPU supports this kernel (`$features`); the panel lengths and `c` are
            // forwarded contracts.
            unsafe { tile::<false>(kc, a.as_ptr(), 0, b.as_ptr(), alpha, beta, c) }
        }

        unsafe fn tile_rows(
            kc: usize,
            a: &[f32],
            row_stride: usize,
            b: &[f32],
            alpha: f32,
            beta: f32,
            c: CTile,
        ) {
            debug_assert!(a.len() >= (MR - 1) * row_stride + kc && b.len() >= kc * NR);
            // SAFETY: as for `tile`; the A rows' length is a forwarded contract.
            unsafe { tile::<true>(kc, a.as_ptr(), row_stride, b.as_ptr(), alpha, beta, c) }
        }

        unsafe fn pack_a(
            a: &$crate::gemm::MatRef,
            ic: usize,
            mc: usize,
            pc: usize,
            kc: usize,
            out: &mut [f32],
        ) {
            #[target_feature(enable = $features)]
            fn compiled(
                a: &$crate::gemm::MatRef,
                ic: usize,
                mc: usize,
                pc: usize,
                kc: usize,
                out: &mut [f32],
            ) {
                $crate::gemm::pack::pack_a::<MR, true>(a, ic, mc, pc, kc, out)
            }
            // SAFETY: the caller guarantees the CPU supports this kernel, whose check covers `$features`.
            unsafe { compiled(a, ic, mc, pc, kc, out) }
        }

        unsafe fn pack_b_panel(
            b: &$crate::gemm::MatRef,
            pc: usize,
            kc: usize,
            col0: usize,
            cols: usize,
            panel: &mut [f32],
        ) {
            #[target_feature(enable = $features)]
            fn compiled(
                b: &$crate::gemm::MatRef,
                pc: usize,
                kc: usize,
                col0: usize,
                cols: usize,
                panel: &mut [f32],
            ) {
                $crate::gemm::pack::pack_b_panel::<NR, true>(b, pc, kc, col0, cols, panel)
            }
            // SAFETY: the caller guarantees the CPU supports this kernel, whose check covers `$features`.
            unsafe { compiled(b, pc, kc, col0, cols, panel) }
        }
    };
}

#[cfg(target_arch = "x86_64")]
pub(super) mod avx2;
#[cfg(target_arch = "x86_64")]
pub(super) mod avx512;

use std::fmt;

use super::{pack, MatRef};

#[cfg(target_arch = "x86_64")]
pub(super) use avx2::Avx2Fma;
#[cfg(target_arch = "x86_64")]
pub(super) use avx512::Avx512F;

/// Which micro-kernel computes the register tiles. [`MicroKernel::detect`] picks the fastest the CPU supports; the
/// others exist so tests can hold every kernel against the same reference.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MicroKernel {
    /// Plain Rust, any target; 6×16 tiles.
    Portable,
    /// x86-64 AVX2 + FMA intrinsics, 6×16 tiles; needs a CPU with both.
    Avx2Fma,
    /// x86-64 AVX-512F intrinsics, 12×32 tiles; needs a CPU with AVX-512 Foundation.
    Avx512F,
}

impl MicroKernel {
    /// Every kernel, fastest first.
    pub const ALL: [MicroKernel; 3] = [Self::Avx512F, Self::Avx2Fma, Self::Portable];

    /// The fastest micro-kernel this CPU can run.
    pub fn detect() -> Self {
        Self::ALL
            .into_iter()
            .find(|kernel| kernel.is_supported())
            .unwrap_or(Self::Portable)
    }

    /// Whether this CPU can run the kernel.
    pub fn is_supported(self) -> bool {
        match self {
            Self::Portable => true,
            #[cfg(target_arch = "x86_64")]
            Self::Avx2Fma => is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"),
            #[cfg(target_arch = "x86_64")]
            Self::Avx512F => is_x86_feature_detected!("avx512f"),
            #[cfg(not(target_arch = "x86_64"))]
            Self::Avx2Fma | Self::Avx512F => false,
        }
    }

    /// The register tile `(MR, NR)`: rows of C (and of a packed A panel) × columns of C (and of a packed B panel) one
    /// kernel call computes.
    pub fn tile_shape(self) -> (usize, usize) {
        match self {
            Self::Portable => (PORTABLE_MR, PORTABLE_NR),
            #[cfg(target_arch = "x86_64")]
            Self::Avx2Fma => (avx2::MR, avx2::NR),
            #[cfg(target_arch = "x86_64")]
            Self::Avx512F => (avx512::MR, avx512::NR),
            #[cfg(not(target_arch = "x86_64"))]
            Self::Avx2Fma => (6, 16),
            #[cfg(not(target_arch = "x86_64"))]
            Self::Avx512F => (12, 32),
        }
    }
}

impl fmt::Display for MicroKernel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Portable => "portable",
            Self::Avx2Fma => "avx2+fma",
            Self::Avx512F => "avx512f",
        })
    }
}

/// A micro-kernel with an `MR × NR` register tile.
pub(super) trait Kernel<const MR: usize, const NR: usize> {
    /// `C ← alpha·Ã·B̃ + beta·C` over `kc` steps for one tile (`alpha·Ã·B̃ + bias` when `c` carries a bias).
    ///
    /// # Safety
    /// The CPU supports the kernel; every element of `c` must be in bounds of one live allocation and written by no
    /// other thread during the call; `a` and `b` must hold at least `kc·MR` and `kc·NR` floats; a bias in `c` holds
    /// at least `c.cols` floats.
    unsafe fn tile(kc: usize, a: &[f32], b: &[f32], alpha: f32, beta: f32, c: CTile);

    /// [`Kernel::tile`] with Ã replaced by MR rows of a row-major A read where they lie: step `p` of row `r` is
    /// `a[r·row_stride + p]` instead of `Ã[p·MR + r]`. The same products are summed in the same order, so the tile's
    /// bits are those of `tile` on the packed panel of the same rows; the driver uses it to skip packing a row-major
    /// A (a linear layer's activations), whose panel would be a transposed copy of rows already contiguous.
    ///
    /// # Safety
    /// As for [`Kernel::tile`], with `a` holding at least `(MR − 1)·row_stride + kc` floats.
    unsafe fn tile_rows(
        kc: usize,
        a: &[f32],
        row_stride: usize,
        b: &[f32],
        alpha: f32,
        beta: f32,
        c: CTile,
    );

    /// [`pack::pack_a`] for this kernel's `MR`, compiled with the kernel's target features (the SIMD kernels
    /// override this baseline build through `simd_kernel_methods!`).
    ///
    /// # Safety
    /// The CPU supports the kernel.
    unsafe fn pack_a(a: &MatRef, ic: usize, mc: usize, pc: usize, kc: usize, out: &mut [f32]) {
        pack::pack_a::<MR, false>(a, ic, mc, pc, kc, out)
    }

    /// [`pack::pack_b_panel`] for this kernel's `NR`, compiled as [`Kernel::pack_a`] is.
    ///
    /// # Safety
    /// The CPU supports the kernel.
    unsafe fn pack_b_panel(
        b: &MatRef,
        pc: usize,
        kc: usize,
        col0: usize,
        cols: usize,
        panel: &mut [f32],
    ) {
        pack::pack_b_panel::<NR, false>(b, pc, kc, col0, cols, panel)
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
    /// Null, or a row of addends for the write-back: then it is `C ← alpha·acc + bias[c]` for tile column `c`, with
    /// `bias[c]` at `bias + c` (a linear layer's bias, added in the first k-block), and C's old contents are neither
    /// read nor scaled (`beta` is ignored).
    pub bias: *const f32,
}

/// Rows of the portable kernel's tile.
pub(super) const PORTABLE_MR: usize = 6;
/// Columns of the portable kernel's tile.
pub(super) const PORTABLE_NR: usize = 16;

/// The plain-Rust kernel.
pub(super) struct Portable;

impl Kernel<PORTABLE_MR, PORTABLE_NR> for Portable {
    unsafe fn tile(kc: usize, a: &[f32], b: &[f32], alpha: f32, beta: f32, c: CTile) {
        debug_assert!(a.len() >= kc * PORTABLE_MR && b.len() >= kc * PORTABLE_NR);
        let acc = portable::<PORTABLE_MR, PORTABLE_NR>(kc, |r, p| a[p * PORTABLE_MR + r], b);
        // SAFETY: forwarded from this function's contract.
        unsafe { store(&acc, alpha, beta, c) }
    }

    unsafe fn tile_rows(
        kc: usize,
        a: &[f32],
        row_stride: usize,
        b: &[f32],
        alpha: f32,
        beta: f32,
        c: CTile,
    ) {
        let acc = portable::<PORTABLE_MR, PORTABLE_NR>(kc, |r, p| a[r * row_stride + p], b);
        // SAFETY: forwarded from this function's contract.
        unsafe { store(&acc, alpha, beta, c) }
    }
}

/// The accumulator tile `Σ_p A[·, p]·B̃[p]` in plain Rust, element `(r, p)` of A read through `a`.
fn portable<const MR: usize, const NR: usize>(
    kc: usize,
    a: impl Fn(usize, usize) -> f32,
    b: &[f32],
) -> [[f32; NR]; MR] {
    let mut acc = [[0.0f32; NR]; MR];
    for (p, b_p) in b.chunks_exact(NR).take(kc).enumerate() {
        for (r, acc_row) in acc.iter_mut().enumerate() {
            let a_rp = a(r, p);
            for (acc_rc, &b_pc) in acc_row.iter_mut().zip(b_p) {
                *acc_rc += a_rp * b_pc;
            }
        }
    }
    acc
}

/// Writes `C ← alpha·acc + beta·C` (or `alpha·acc + bias[j]` when the tile carries a bias) for the valid part of the
/// tile, one element at a time.
///
/// # Safety
/// As for [`Kernel::tile`]: every element of `c` is in bounds and exclusively ours, and a bias, if any, holds
/// `c.cols` floats.
unsafe fn store<const MR: usize, const NR: usize>(
    acc: &[[f32; NR]; MR],
    alpha: f32,
    beta: f32,
    c: CTile,
) {
    for (r, acc_row) in acc.iter().enumerate().take(c.rows) {
        for (j, &v) in acc_row.iter().enumerate().take(c.cols) {
            // SAFETY: r < rows and j < cols, so the caller guarantees this element is in bounds and ours alone.
            let dst = unsafe { &mut *c.ptr.add(r * c.row_stride + j * c.col_stride) };
            *dst = if !c.bias.is_null() {
                // SAFETY: j < cols, and a tile's bias holds `cols` floats (this function's contract).
                alpha * v + unsafe { *c.bias.add(j) }
            } else if beta == 0.0 {
                alpha * v
            } else {
                alpha * v + beta * *dst
            };
        }
    }
}
