//! The one matrix product every attention tile is made of:
//!
//! ```text
//! out[r, c] = init[r, c] + Σ_{p<k} A(r, p)·B[p, c],   A(r, p) = a[r·a_row + p·a_step],   B[p, c] = b[p·ldb + c]
//! ```
//!
//! with `init` either 0 or `out` itself. `A` is read through two strides, so one routine serves all five products:
//! `S = Q·Kᵀ` and `dP = dO·Vᵀ` (A = query rows, B = a transposed key tile), `P·V` and `dS·K` (A = a score tile by rows,
//! B = key rows), and `Pᵀ·dO` and `dSᵀ·Q` (A = a score tile by columns: `a_row = 1`, `a_step` = its row length).
//!
//! The output is cut into register tiles of `MR × NR` = 6 × 16. Each step `p` is a rank-1 update of the tile: two
//! 8-lane vectors of `B` row `p`, six broadcast scalars of `A` column `p`, twelve fused multiply-adds into twelve
//! accumulators (12 FMAs per 8 loads, enough independent chains to keep both FMA pipes of the core busy). Rows and
//! columns are rounded up to whole tiles: the caller provides that much readable `A`, `B` and writable `out`, and
//! ignores the extra rows and columns. Every element is summed over `p` in ascending order with one fused
//! multiply-add per step, in the AVX-512 and AVX2 builds (intrinsics; the AVX-512 one holds a tile row in one 16-lane
//! vector and runs two column tiles side by side) and in the portable build (`f32::mul_add`) alike, so the builds give
//! identical bits and no result depends on how the caller splits work among threads.

/// Rows of a register tile.
pub(super) const MR: usize = 6;
/// Columns of a register tile.
pub(super) const NR: usize = 16;

/// The `A` operand: element `(r, p)` is `data[r·row + p·step]`.
#[derive(Clone, Copy)]
pub(super) struct Strided<'a> {
    pub data: &'a [f32],
    pub row: usize,
    pub step: usize,
}

impl<'a> Strided<'a> {
    /// `A` = the row-major matrix `data` with row stride `ld`.
    pub fn by_rows(data: &'a [f32], ld: usize) -> Self {
        Self {
            data,
            row: ld,
            step: 1,
        }
    }

    /// `A` = the transpose of the row-major matrix `data` with row stride `ld`.
    pub fn by_columns(data: &'a [f32], ld: usize) -> Self {
        Self {
            data,
            row: 1,
            step: ld,
        }
    }
}

/// A row-major matrix with row stride `ld` (the `B` operand, or the output).
pub(super) struct Rows<T> {
    pub data: T,
    pub ld: usize,
}

impl<T> Rows<T> {
    pub fn new(data: T, ld: usize) -> Self {
        Self { data, ld }
    }
}

/// Whether a product starts from zero or adds to what `out` holds.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Init {
    Zero,
    Accumulate,
}

/// `out ← init + A·B` for `rows × cols` (rounded up to whole `MR × NR` tiles) over `k` steps.
///
/// # Panics
/// If an operand is too short for the rounded-up extents (a bug in the caller, never a user error).
pub(super) fn product(
    rows: usize,
    cols: usize,
    k: usize,
    a: Strided,
    b: Rows<&[f32]>,
    out: Rows<&mut [f32]>,
    init: Init,
) {
    let (rows, cols) = (rows.div_ceil(MR) * MR, cols.div_ceil(NR) * NR);
    if rows == 0 || cols == 0 {
        return;
    }
    if k > 0 {
        assert!(
            (rows - 1) * a.row + (k - 1) * a.step < a.data.len(),
            "A too short"
        );
        assert!((k - 1) * b.ld + cols <= b.data.len(), "B too short");
    }
    assert!(
        (rows - 1) * out.ld + cols <= out.data.len(),
        "out too short"
    );
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: AVX-512F was just detected, and the assertions above bound every index `avx512::product` touches.
        unsafe { avx512::product(rows, cols, k, a, b, out, init) };
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: AVX2 and FMA were just detected, and the assertions above bound every index `avx2::product` touches.
        unsafe { avx2::product(rows, cols, k, a, b, out, init) };
        return;
    }
    portable(rows, cols, k, a, b, out, init);
}

/// [`product`] in plain Rust, for `rows` and `cols` already whole tiles: the same sums in the same order.
pub(super) fn portable(
    rows: usize,
    cols: usize,
    k: usize,
    a: Strided,
    b: Rows<&[f32]>,
    out: Rows<&mut [f32]>,
    init: Init,
) {
    for c0 in (0..cols).step_by(NR) {
        for r0 in (0..rows).step_by(MR) {
            let mut acc = [[0.0f32; NR]; MR];
            if init == Init::Accumulate {
                for (r, acc_r) in acc.iter_mut().enumerate() {
                    acc_r.copy_from_slice(&out.data[(r0 + r) * out.ld + c0..][..NR]);
                }
            }
            for p in 0..k {
                let b_p = &b.data[p * b.ld + c0..][..NR];
                for (r, acc_r) in acc.iter_mut().enumerate() {
                    let a_rp = a.data[(r0 + r) * a.row + p * a.step];
                    for (acc_rc, &b_pc) in acc_r.iter_mut().zip(b_p) {
                        *acc_rc = a_rp.mul_add(b_pc, *acc_rc);
                    }
                }
            }
            for (r, acc_r) in acc.iter().enumerate() {
                out.data[(r0 + r) * out.ld + c0..][..NR].copy_from_slice(acc_r);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::{Init, Rows, Strided, MR, NR};

    /// [`super::product`] with AVX2 + FMA intrinsics.
    ///
    /// # Safety
    /// The CPU supports AVX2 and FMA; `rows` and `cols` are whole tiles and every operand is long enough for them (as
    /// [`super::product`] asserts).
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn product(
        rows: usize,
        cols: usize,
        k: usize,
        a: Strided,
        b: Rows<&[f32]>,
        out: Rows<&mut [f32]>,
        init: Init,
    ) {
        let (a_ptr, b_ptr, out_ptr) = (a.data.as_ptr(), b.data.as_ptr(), out.data.as_mut_ptr());
        for c0 in (0..cols).step_by(NR) {
            for r0 in (0..rows).step_by(MR) {
                // SAFETY: r0 + MR ≤ rows and c0 + NR ≤ cols, which the caller's extents cover.
                unsafe {
                    tile(
                        k,
                        a_ptr.add(r0 * a.row),
                        a.row,
                        a.step,
                        b_ptr.add(c0),
                        b.ld,
                        out_ptr.add(r0 * out.ld + c0),
                        out.ld,
                        init,
                    )
                };
            }
        }
    }

    /// One `MR × NR` tile at `out` (row stride `ldo`) from `A` at `a` and `B` at `b`.
    ///
    /// # Safety
    /// The CPU supports AVX2 and FMA; `a[r·a_row + p·a_step]`, `b[p·ldb + c]` and `out[r·ldo + c]` are in bounds for
    /// `r < MR`, `c < NR`, `p < k`.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn tile(
        k: usize,
        a: *const f32,
        a_row: usize,
        a_step: usize,
        b: *const f32,
        ldb: usize,
        out: *mut f32,
        ldo: usize,
        init: Init,
    ) {
        let mut acc = [[_mm256_setzero_ps(); 2]; MR];
        if init == Init::Accumulate {
            for (r, acc_r) in acc.iter_mut().enumerate() {
                // SAFETY: row r < MR of the output tile, 16 floats.
                unsafe {
                    acc_r[0] = _mm256_loadu_ps(out.add(r * ldo));
                    acc_r[1] = _mm256_loadu_ps(out.add(r * ldo + 8));
                }
            }
        }
        for p in 0..k {
            // SAFETY: p < k, so B row p's 16 floats and A column p's six scalars are in bounds.
            unsafe {
                let b_lo = _mm256_loadu_ps(b.add(p * ldb));
                let b_hi = _mm256_loadu_ps(b.add(p * ldb + 8));
                let a_p = a.add(p * a_step);
                for (r, acc_r) in acc.iter_mut().enumerate() {
                    let a_rp = _mm256_broadcast_ss(&*a_p.add(r * a_row));
                    acc_r[0] = _mm256_fmadd_ps(a_rp, b_lo, acc_r[0]);
                    acc_r[1] = _mm256_fmadd_ps(a_rp, b_hi, acc_r[1]);
                }
            }
        }
        for (r, acc_r) in acc.iter().enumerate() {
            // SAFETY: row r < MR of the output tile, 16 floats.
            unsafe {
                _mm256_storeu_ps(out.add(r * ldo), acc_r[0]);
                _mm256_storeu_ps(out.add(r * ldo + 8), acc_r[1]);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::{Init, Rows, Strided, MR, NR};

    /// [`super::product`] with AVX-512F intrinsics: a 16-lane vector holds a whole tile row, and two column tiles
    /// run side by side where the columns allow (`MR × 2·NR`: twelve independent multiply-add chains, as the AVX2
    /// build has), one otherwise.
    ///
    /// # Safety
    /// The CPU supports AVX-512F; `rows` and `cols` are whole tiles and every operand is long enough for them (as
    /// [`super::product`] asserts).
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn product(
        rows: usize,
        cols: usize,
        k: usize,
        a: Strided,
        b: Rows<&[f32]>,
        out: Rows<&mut [f32]>,
        init: Init,
    ) {
        let (a_ptr, b_ptr, out_ptr) = (a.data.as_ptr(), b.data.as_ptr(), out.data.as_mut_ptr());
        let mut c0 = 0;
        while c0 < cols {
            let pair = c0 + 2 * NR <= cols;
            for r0 in (0..rows).step_by(MR) {
                // SAFETY: r0 + MR ≤ rows and c0 + NR (2·NR for a pair) ≤ cols, which the caller's extents cover.
                unsafe {
                    let a_tile = a_ptr.add(r0 * a.row);
                    let (b_tile, out_tile) = (b_ptr.add(c0), out_ptr.add(r0 * out.ld + c0));
                    let strides = (a.row, a.step, b.ld, out.ld);
                    if pair {
                        tile::<2>(k, a_tile, b_tile, out_tile, strides, init);
                    } else {
                        tile::<1>(k, a_tile, b_tile, out_tile, strides, init);
                    }
                }
            }
            c0 += if pair { 2 * NR } else { NR };
        }
    }

    /// `MR × W·NR` of the output at `out` from `A` at `a` and `B` at `b`; `strides` = (A's row, A's step, B's row,
    /// the output's row). Each element gets one fused multiply-add per step `p`, in order, as in every build.
    ///
    /// # Safety
    /// The CPU supports AVX-512F; `a[r·a_row + p·a_step]`, `b[p·ldb + c]` and `out[r·ldo + c]` are in bounds for
    /// `r < MR`, `c < W·NR`, `p < k`.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn tile<const W: usize>(
        k: usize,
        a: *const f32,
        b: *const f32,
        out: *mut f32,
        (a_row, a_step, ldb, ldo): (usize, usize, usize, usize),
        init: Init,
    ) {
        let mut acc = [[_mm512_setzero_ps(); W]; MR];
        if init == Init::Accumulate {
            for (r, acc_r) in acc.iter_mut().enumerate() {
                for (w, acc_rw) in acc_r.iter_mut().enumerate() {
                    // SAFETY: row r < MR of the output tile, 16 floats at column w·NR < W·NR.
                    *acc_rw = unsafe { _mm512_loadu_ps(out.add(r * ldo + w * NR)) };
                }
            }
        }
        for p in 0..k {
            // SAFETY: p < k, so B row p's W·16 floats and A column p's six scalars are in bounds.
            unsafe {
                let b_p: [__m512; W] =
                    std::array::from_fn(|w| _mm512_loadu_ps(b.add(p * ldb + w * NR)));
                let a_p = a.add(p * a_step);
                for (r, acc_r) in acc.iter_mut().enumerate() {
                    let a_rp = _mm512_set1_ps(*a_p.add(r * a_row));
                    for (acc_rw, &b_pw) in acc_r.iter_mut().zip(&b_p) {
                        *acc_rw = _mm512_fmadd_ps(a_rp, b_pw, *acc_rw);
                    }
                }
            }
        }
        for (r, acc_r) in acc.iter().enumerate() {
            for (w, &acc_rw) in acc_r.iter().enumerate() {
                // SAFETY: row r < MR of the output tile, 16 floats at column w·NR < W·NR.
                unsafe { _mm512_storeu_ps(out.add(r * ldo + w * NR), acc_rw) };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The dispatched product (AVX-512 or AVX2 where the CPU has it) and the portable one agree bit for bit, for
    /// strided `A`, both initialisations, a `k` of 0, and column counts of one, two and three tiles (the AVX-512
    /// build's single and paired column tiles).
    #[test]
    fn product_builds_agree_bit_for_bit() {
        let values = |n: usize, salt: u32| -> Vec<f32> {
            (0..n as u32)
                .map(|i| (i.wrapping_mul(2_654_435_761).wrapping_add(salt) >> 9) as f32 / 4e6 - 1.0)
                .collect()
        };
        for (rows, cols, k, transposed) in [
            (12, 32, 7, false),
            (6, 16, 0, true),
            (18, 48, 33, true),
            (6, 16, 5, false),
        ] {
            let a = values(rows * k.max(1) + 8, 1);
            let a = if transposed {
                Strided {
                    data: &a,
                    row: 1,
                    step: rows,
                }
            } else {
                Strided {
                    data: &a,
                    row: k.max(1),
                    step: 1,
                }
            };
            let b = values(k * (cols + 3), 2);
            for init in [Init::Zero, Init::Accumulate] {
                let mut fast = values(rows * (cols + 5), 3);
                let mut slow = fast.clone();
                let b = || Rows {
                    data: &b[..],
                    ld: cols + 3,
                };
                product(
                    rows,
                    cols,
                    k,
                    a,
                    b(),
                    Rows {
                        data: &mut fast,
                        ld: cols + 5,
                    },
                    init,
                );
                portable(
                    rows,
                    cols,
                    k,
                    a,
                    b(),
                    Rows {
                        data: &mut slow,
                        ld: cols + 5,
                    },
                    init,
                );
                assert_eq!(
                    fast.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                    slow.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
                );
            }
        }
    }
}
