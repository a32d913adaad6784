//! An A operand packed once and multiplied by many B: [`PackedA`] and [`sgemm_batched_packed`].
//!
//! Every GEMM call packs the k-blocks of A it reads into micro-kernel panels (`pack.rs`). A caller that multiplies
//! the same A by many B in turn (a Winograd convolution's 16 transformed weight matrices against every chunk of
//! tiles) would pack all of A again for each call; packing it once here and handing the panels to each call saves
//! that. The panels are exactly those the GEMM would pack itself, in its order, so every product is bit-identical
//! to [`sgemm_batched_using`](super::sgemm_batched_using)'s with the same kernel.
//!
//! Layout: product `i`, k-block `pc` (columns `pc .. pc + kc`, `kc = min(KC, k − pc)`) starts at
//! `i·m̄·k + m̄·pc` with `m̄ = m` rounded up to whole MR-row panels, and holds those panels one after another
//! (`MR × kc` floats each), so the rows from `ic` (a multiple of MR) start `ic·kc` further on. Inside a panel column
//! `p` of the block holds the panel's MR rows one after another. [`PanelLayout`] gives the index of any element, for a
//! caller that computes A and writes it straight into the panels ([`PackedA::from_panels`]) instead of storing A and
//! packing it.

use rayon::prelude::*;

use super::check::{self, Axis};
use super::microkernel::{Kernel, MicroKernel};
use super::{check_supported, checked_gemm, AOperand, Addend, MatMut, MatRef, KC};
use crate::error::{KernelError, Result};

/// Where the elements of one `m × k` A lie in its packed panels for one micro-kernel (see the module header).
#[derive(Clone, Copy, Debug)]
pub struct PanelLayout {
    mr: usize,
    m: usize,
    k: usize,
}

impl PanelLayout {
    pub fn new(kernel: MicroKernel, m: usize, k: usize) -> Self {
        Self {
            mr: kernel.tile_shape().0,
            m,
            k,
        }
    }

    /// Rows per panel (the micro-kernel's MR).
    pub fn panel_rows(&self) -> usize {
        self.mr
    }

    /// Floats of one product's panels: `m` rounded up to whole panels, times `k`.
    pub fn product_len(&self) -> usize {
        self.m.next_multiple_of(self.mr) * self.k
    }

    /// Index of element `(row, col)` in its product's panels, for any `row < m̄` (the rows from `m` on are a panel's
    /// zero padding): the rows of one panel in one column are consecutive.
    pub fn index(&self, row: usize, col: usize) -> usize {
        let pc = col - col % KC;
        let kc = KC.min(self.k - pc);
        self.m.next_multiple_of(self.mr) * pc
            + (row - row % self.mr) * kc
            + (col - pc) * self.mr
            + row % self.mr
    }
}

/// `batch` `m × k` A matrices packed for one micro-kernel (see the module header), borrowed from the caller's buffer.
pub struct PackedA<'a> {
    kernel: MicroKernel,
    batch: usize,
    m: usize,
    k: usize,
    panels: &'a [f32],
}

impl<'a> PackedA<'a> {
    /// Floats the panels of `batch` `m × k` matrices take for `kernel`.
    pub fn len(kernel: MicroKernel, batch: usize, m: usize, k: usize) -> usize {
        batch * Self::product_len(kernel, m, k)
    }

    fn product_len(kernel: MicroKernel, m: usize, k: usize) -> usize {
        PanelLayout::new(kernel, m, k).product_len()
    }

    /// Takes `batch` products' panels that the caller wrote in [`PanelLayout::new`]`(kernel, m, k)`'s layout, product
    /// `i` from `i·product_len()` on, padding rows zero. Errors when this CPU cannot run `kernel` or when `panels`
    /// is not exactly [`PackedA::len`] floats.
    pub fn from_panels(
        kernel: MicroKernel,
        (batch, m, k): (usize, usize, usize),
        panels: &'a [f32],
    ) -> Result<Self> {
        const OP: &str = "PackedA::from_panels";
        check_supported(OP, kernel)?;
        let len = Self::len(kernel, batch, m, k);
        if panels.len() != len {
            return Err(KernelError::new(
                OP,
                format!(
                    "the panels hold {} floats; {batch} packed {m} × {k} matrices take {len}",
                    panels.len()
                ),
            ));
        }
        Ok(Self {
            kernel,
            batch,
            m,
            k,
            panels,
        })
    }

    /// Packs `batch` matrices, product `i`'s A starting `i·a_batch_stride` into `a`, into the first
    /// [`PackedA::len`] floats of `out`, products in parallel. Errors when this CPU cannot run `kernel`, when an
    /// element of A lies outside its slice, or when `out` is too short.
    pub fn pack(
        kernel: MicroKernel,
        (batch, m, k): (usize, usize, usize),
        a: MatRef,
        a_batch_stride: usize,
        out: &'a mut [f32],
    ) -> Result<Self> {
        const OP: &str = "PackedA::pack";
        check_supported(OP, kernel)?;
        let axes = [
            Axis {
                name: "batch",
                extent: batch,
                stride: a_batch_stride,
            },
            Axis {
                name: "m",
                extent: m,
                stride: a.row_stride,
            },
            Axis {
                name: "k",
                extent: k,
                stride: a.col_stride,
            },
        ];
        check::in_bounds(OP, "A", &axes, a.data.len())?;
        let len = Self::len(kernel, batch, m, k);
        if out.len() < len {
            return Err(KernelError::new(
                OP,
                format!(
                    "the output holds {} floats; {batch} packed {m} × {k} matrices need {len}",
                    out.len()
                ),
            ));
        }
        let panels = &mut out[..len];
        let product_len = Self::product_len(kernel, m, k);
        if product_len > 0 {
            panels
                .par_chunks_mut(product_len)
                .enumerate()
                .for_each(|(index, product)| {
                    let a_i = MatRef {
                        data: &a.data[index * a_batch_stride..],
                        ..a
                    };
                    // SAFETY: the kernel is supported and A's elements are inside its slice (both checked above).
                    unsafe { pack_product(kernel, &a_i, m, k, product) };
                });
        }
        Ok(Self {
            kernel,
            batch,
            m,
            k,
            panels,
        })
    }
}

/// Packs one product's A, k-block after k-block, with `kernel`'s panel layout.
///
/// # Safety
/// `kernel` is supported and every element of the `m × k` matrix `a` is inside its slice.
unsafe fn pack_product(kernel: MicroKernel, a: &MatRef, m: usize, k: usize, out: &mut [f32]) {
    /// # Safety
    /// As for `pack_product`, with `K` the kernel.
    unsafe fn blocks<const MR: usize, const NR: usize, K: Kernel<MR, NR>>(
        a: &MatRef,
        m: usize,
        k: usize,
        out: &mut [f32],
    ) {
        let rows = m.next_multiple_of(MR);
        for pc in (0..k).step_by(KC) {
            let kc = KC.min(k - pc);
            // SAFETY: forwarded from the caller.
            unsafe { K::pack_a(a, 0, m, pc, kc, &mut out[rows * pc..][..rows * kc]) };
        }
    }
    // SAFETY: forwarded from the caller.
    unsafe { with_micro_kernel!(kernel, blocks::<MR, NR, K>(a, m, k, out)) }
}

/// `C = alpha·A·B + beta·C` for each of `a`'s products with its packed A, on the kernel that packed it: B is
/// `k × n`, C `m × n`, strided and batched as for [`sgemm_batched`](super::sgemm_batched), with the same checks.
#[allow(clippy::too_many_arguments)]
pub fn sgemm_batched_packed(
    a: &PackedA,
    n: usize,
    alpha: f32,
    b: MatRef,
    b_batch_stride: usize,
    beta: f32,
    c: MatMut,
    c_batch_stride: usize,
) -> Result<()> {
    checked_gemm(
        a.kernel,
        (a.batch, a.m, n, a.k),
        alpha,
        (
            AOperand::Packed(a.panels),
            PackedA::product_len(a.kernel, a.m, a.k),
        ),
        (b, b_batch_stride),
        Addend::ScaledC(beta),
        (c, c_batch_stride),
    )
}
