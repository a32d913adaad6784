//! Packing: copy a block of A or B into the order the micro-kernel reads it, so that its inner loop walks memory with
//! unit stride whatever the strides of the caller's matrices.
//!
//! A block `A[ic..ic+mc, pc..pc+kc]` becomes ⌈mc/MR⌉ *row panels*; panel `q` holds rows `q·MR .. q·MR+MR` column by
//! column: `panel[p·MR + r] = A[ic + q·MR + r, pc + p]`. A block `B[pc..pc+kc, jc..jc+nc]` becomes ⌈nc/NR⌉ *column
//! panels*; panel `q` holds columns `q·NR .. q·NR+NR` row by row: `panel[p·NR + c] = B[pc + p, jc + q·NR + c]`.
//! Rows (columns) past the edge of the matrix are filled with zeros, so the micro-kernel always multiplies a full
//! MR×NR tile and the padding contributes exact zeros that the write-back then ignores. MR and NR are the kernel's
//! tile (const parameters), so every copy loop is compiled for its constant panel width, and each kernel compiles the
//! packing under its own target features (`Kernel::pack_a`, `Kernel::pack_b_panel`), so its copies and transposes
//! use the kernel's vector registers.

use std::cell::Cell;
use std::thread::LocalKey;

use rayon::prelude::*;

use super::microkernel::Kernel;
use super::transpose::transpose_into;
use super::MatRef;
use crate::short_copy::copy_short;

/// An `f32` buffer whose start is aligned to a 64-byte cache line, so packed panels never straddle one more line
/// than they must and vector loads from them are aligned.
///
/// Buffers are recycled per thread ([`PackBuf::take`] / drop): a GEMM called in a loop (as conv2d does, image after
/// image) reuses the same warm memory instead of allocating and zeroing it on every call.
pub(super) struct PackBuf {
    lines: Vec<CacheLine>,
    home: &'static LocalKey<Cell<Vec<CacheLine>>>,
}

/// Which operand a buffer packs; each has its own spare per thread, since one GEMM holds both at once.
#[derive(Clone, Copy)]
pub(super) enum Operand {
    A,
    B,
}

#[repr(C, align(64))]
#[derive(Clone, Copy)]
struct CacheLine([f32; 16]);

thread_local! {
    /// This thread's spare buffer for packed A blocks.
    static SPARE_A: Cell<Vec<CacheLine>> = const { Cell::new(Vec::new()) };
    /// This thread's spare buffer for packed B blocks.
    static SPARE_B: Cell<Vec<CacheLine>> = const { Cell::new(Vec::new()) };
}

impl PackBuf {
    /// Takes the calling thread's spare buffer for `operand` (empty if a caller up the stack holds it); dropping the
    /// `PackBuf` puts it back.
    pub(super) fn take(operand: Operand) -> Self {
        let home = match operand {
            Operand::A => &SPARE_A,
            Operand::B => &SPARE_B,
        };
        Self {
            lines: home.with(Cell::take),
            home,
        }
    }

    /// The first `len` floats of the buffer, growing it if needed. Their contents are whatever was packed last.
    pub(super) fn floats(&mut self, len: usize) -> &mut [f32] {
        let lines = len.div_ceil(16);
        if self.lines.len() < lines {
            self.lines.resize(lines, CacheLine([0.0; 16]));
        }
        // SAFETY: `CacheLine` is `repr(C)` around `[f32; 16]` (64 bytes, alignment 64, no padding), so the vector's
        // storage is `16 · lines.len() ≥ len` contiguous, initialised `f32`s, borrowed mutably through `self`.
        unsafe { std::slice::from_raw_parts_mut(self.lines.as_mut_ptr().cast::<f32>(), len) }
    }
}

impl Drop for PackBuf {
    fn drop(&mut self) {
        let lines = std::mem::take(&mut self.lines);
        // `try_with` fails only while the thread is being torn down; the buffer is then simply freed.
        let _ = self.home.try_with(|spare| spare.set(lines));
    }
}

/// Packs `A[ic..ic+mc, pc..pc+kc]` into `out` (length `⌈mc/MR⌉·MR·kc`) as MR-row panels. `VECTOR`: the caller is
/// compiled with AVX, so the transposing copy may use it (see `transpose.rs`).
#[inline(always)]
pub(super) fn pack_a<const MR: usize, const VECTOR: bool>(
    a: &MatRef,
    ic: usize,
    mc: usize,
    pc: usize,
    kc: usize,
    out: &mut [f32],
) {
    if a.col_stride != 1 && a.row_stride == 1 {
        pack_a_column_major::<MR>(a, ic, mc, pc, kc, out);
        return;
    }
    for (q, panel) in out.chunks_exact_mut(MR * kc).enumerate() {
        let row0 = ic + q * MR;
        let rows = MR.min(ic + mc - row0);
        if a.col_stride == 1 {
            // Row-major A: the panel is the transpose of `rows` contiguous row pieces.
            let start = |r: usize| (row0 + r) * a.row_stride + pc;
            let lines: [&[f32]; MR] = std::array::from_fn(|r| {
                if r < rows {
                    &a.data[start(r)..start(r) + kc]
                } else {
                    &[]
                }
            });
            transpose_into::<MR, VECTOR>(&lines[..rows], kc, panel);
        } else {
            for (p, dst) in panel.chunks_exact_mut(MR).enumerate() {
                let base = row0 * a.row_stride + (pc + p) * a.col_stride;
                for (r, d) in dst.iter_mut().enumerate() {
                    *d = if r < rows {
                        a.data[base + r * a.row_stride]
                    } else {
                        0.0
                    };
                }
            }
        }
    }
}

/// [`pack_a`] for a column-major A (a transposed view, as the `xᵀ` of a weight gradient `xᵀ·g`): column `p`'s `mc`
/// rows are contiguous, so step `p` of every panel is a short copy from it. The columns are walked outermost and
/// each is read once, front to back, its floats scattered over the panels. Panel by panel instead, every column
/// would be revisited once per panel at a stride of a whole column (3 KiB for 768 rows), a stride the hardware
/// prefetchers do not follow, so each step waited for its cache line; walked in order, a column's lines are
/// consecutive and arrive ahead of their use. The packed result is the same.
#[inline(always)]
fn pack_a_column_major<const MR: usize>(
    a: &MatRef,
    ic: usize,
    mc: usize,
    pc: usize,
    kc: usize,
    out: &mut [f32],
) {
    let panels = mc.div_ceil(MR);
    let full = mc / MR;
    for p in 0..kc {
        let column = &a.data[(pc + p) * a.col_stride + ic..][..mc];
        for q in 0..full {
            out[(q * kc + p) * MR..][..MR].copy_from_slice(&column[q * MR..][..MR]);
        }
        if full < panels {
            // The last panel's rows past the edge of A are zeros.
            let rows = mc - full * MR;
            let dst = &mut out[(full * kc + p) * MR..][..MR];
            // Zeroed whole first, at a constant length: the `MR − rows` floats alone would be a call to memset.
            dst.fill(0.0);
            copy_short(&mut dst[..rows], &column[full * MR..]);
        }
    }
}

/// Packs `B[pc..pc+kc, jc..jc+nc]` into `out` (length `⌈nc/NR⌉·NR·kc`) as NR-column panels with kernel `K`'s
/// packing, panels in parallel when `parallel` is set.
///
/// # Safety
/// The CPU supports `K`.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn pack_b<const MR: usize, const NR: usize, K: Kernel<MR, NR>>(
    b: &MatRef,
    pc: usize,
    kc: usize,
    jc: usize,
    nc: usize,
    out: &mut [f32],
    parallel: bool,
) {
    let pack_panel = |(q, panel): (usize, &mut [f32])| {
        let col0 = jc + q * NR;
        // SAFETY: the CPU supports `K` (this function's contract).
        unsafe { K::pack_b_panel(b, pc, kc, col0, NR.min(jc + nc - col0), panel) };
    };
    if parallel {
        out.par_chunks_exact_mut(NR * kc)
            .enumerate()
            .for_each(pack_panel);
    } else {
        out.chunks_exact_mut(NR * kc)
            .enumerate()
            .for_each(pack_panel);
    }
}

/// Packs the one panel `B[pc..pc+kc, col0..col0+cols]` (`cols ≤ NR`) into `panel` (length `NR·kc`), zero-padded to
/// NR columns. `VECTOR` as for [`pack_a`].
#[inline(always)]
pub(super) fn pack_b_panel<const NR: usize, const VECTOR: bool>(
    b: &MatRef,
    pc: usize,
    kc: usize,
    col0: usize,
    cols: usize,
    panel: &mut [f32],
) {
    if b.row_stride == 1 && b.col_stride != 1 {
        // Column-major B (a transposed view): the panel is the transpose of `cols` contiguous column pieces.
        let start = |c: usize| (col0 + c) * b.col_stride + pc;
        let lines: [&[f32]; NR] = std::array::from_fn(|c| {
            if c < cols {
                &b.data[start(c)..start(c) + kc]
            } else {
                &[]
            }
        });
        transpose_into::<NR, VECTOR>(&lines[..cols], kc, panel);
        return;
    }
    for (p, dst) in panel.chunks_exact_mut(NR).take(kc).enumerate() {
        let base = (pc + p) * b.row_stride + col0 * b.col_stride;
        if b.col_stride == 1 && cols == NR {
            // A constant-length copy: the compiler emits vector moves instead of a call to memcpy.
            dst.copy_from_slice(&b.data[base..base + NR]);
            continue;
        }
        // Zero the whole row first, at a constant length (vector stores: zeroing just the `NR − cols` columns past
        // the edge is a call to memset per row, which a short GEMM edge makes for every row of its last panel).
        dst.fill(0.0);
        if b.col_stride == 1 {
            copy_short(&mut dst[..cols], &b.data[base..base + cols]);
        } else {
            for (c, d) in dst[..cols].iter_mut().enumerate() {
                *d = b.data[base + c * b.col_stride];
            }
        }
    }
}
