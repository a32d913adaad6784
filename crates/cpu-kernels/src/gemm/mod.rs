//! Single-precision GEMM, `C[m×n] = alpha·A[m×k]·B[k×n] + beta·C`, on strided `f32` slices.
//!
//! The algorithm is Goto's, as structured by BLIS: five loops around a register-tile micro-kernel, with A and B copied
//! ("packed") into cache-sized contiguous blocks so the innermost loop streams unit-stride memory.
//!
//! ```text
//! for jc in 0..n step NC                      B block  B̃ = B[pc.., jc..]  kc×nc   lives in L3
//!   for pc in 0..k step KC                    pack B̃ (NR-column panels, in parallel)
//!     for ic in 0..m step MC      (parallel)  pack Ã = A[ic.., pc..]  mc×kc     lives in L2, one per task
//!       for jr in 0..nc step NR   (parallel)  B̃ panel kc×NR                    lives in L1
//!         for ir in 0..mc step MR             micro-kernel: C[ic+ir.., jc+jr..] (MR×NR) ← alpha·Ã·B̃ + beta'·C
//! ```
//!
//! `beta' = beta` for the first `pc` block and 1 afterwards, so C accumulates the k-blocks in order. With a bias
//! ([`sgemm_batched_bias`]) the first block's tiles write `alpha·Ã·B̃ + bias` instead, and the later blocks accumulate
//! onto that as before. Every element of C
//! therefore receives its k-terms in the same order (ascending `p` inside a block, blocks ascending) whatever the
//! number of threads and however rayon splits the `ic` and `jr` loops: results are bit-identical across thread counts.
//! Threads only ever split the `ic`/`jr` loops, whose C tiles are disjoint; small products run on the calling thread.
//!
//! The register tile MR×NR belongs to the micro-kernel (6×16 for the portable and AVX2 kernels, 12×32 for AVX-512):
//! the whole nest, packing included, is compiled once per kernel with its MR and NR as constants, so a kernel's loops
//! are exactly what they would be with global constants. The block sizes are shared and hold whole panels of every
//! tile (`MC` a multiple of 6 and 12, `NC` of 16 and 32). Sizes (f32): the B̃ panel is KC·NR·4 = 16 KiB at NR = 16
//! and 32 KiB at NR = 32 (L1d holds 32–48 KiB), an Ã block MC·KC·4 = 120 KiB (a quarter of a 512 KiB L2), B̃ at most
//! KC·NC·4 = 4 MiB (a slice of L3). Packing costs O(mk + kn) copies against the O(mnk) multiply-adds. Each kernel's
//! sum order is fixed by the constants alone, so thread counts never change a bit; different kernels may differ by
//! rounding (FMA or not).
//!
//! A row-major A is not packed in the blocked order: its tiles read MR rows in place ([`row_tiles`]), the same
//! products in the same order as from the packed panel, since the panel would only be a transposed copy of rows
//! that are already contiguous.
//!
//! Short, wide products (`m ≤ 256` rows, as in a convolution's `[out_channels × positions]`) use a second loop order,
//! [`gemm_short`]: A's whole k-block is packed once and each B panel is packed just before its tiles run, so it never
//! leaves L1. The sum order, hence every bit of the result, is the same in both.

/// Evaluates `$body` with micro-kernel `$kernel`'s register tile and type in scope as `MR`, `NR` and `K`: one `match`
/// arm per kernel, so the body is compiled once for each with its constants (the entry points' products, and
/// [`PackedA`]'s packing).
macro_rules! with_micro_kernel {
    ($kernel:expr, $body:expr) => {
        match $kernel {
            $crate::gemm::MicroKernel::Portable => {
                const MR: usize = $crate::gemm::microkernel::PORTABLE_MR;
                const NR: usize = $crate::gemm::microkernel::PORTABLE_NR;
                type K = $crate::gemm::microkernel::Portable;
                $body
            }
            #[cfg(target_arch = "x86_64")]
            $crate::gemm::MicroKernel::Avx2Fma => {
                const MR: usize = $crate::gemm::microkernel::avx2::MR;
                const NR: usize = $crate::gemm::microkernel::avx2::NR;
                type K = $crate::gemm::microkernel::Avx2Fma;
                $body
            }
            #[cfg(target_arch = "x86_64")]
            $crate::gemm::MicroKernel::Avx512F => {
                const MR: usize = $crate::gemm::microkernel::avx512::MR;
                const NR: usize = $crate::gemm::microkernel::avx512::NR;
                type K = $crate::gemm::microkernel::Avx512F;
                $body
            }
            #[cfg(not(target_arch = "x86_64"))]
            $crate::gemm::MicroKernel::Avx2Fma | $crate::gemm::MicroKernel::Avx512F => {
                unreachable!("x86 kernels are never reported as supported off x86-64")
            }
        }
    };
}

mod check;
mod microkernel;
mod pack;
mod packed_a;
mod transpose;

use rayon::prelude::*;

pub use microkernel::MicroKernel;
pub use packed_a::{sgemm_batched_packed, PackedA, PanelLayout};
pub(crate) use transpose::transpose_into;

use crate::error::{KernelError, Result};
use check::Axis;
use microkernel::{CTile, Kernel};
use pack::{Operand, PackBuf};

/// Depth of a packed block: the k-extent one micro-kernel call sums over.
const KC: usize = 256;
/// Rows of A packed per task (a multiple of every kernel's MR).
const MC: usize = 120;
/// Columns of B packed per k-block (a multiple of every kernel's NR).
const NC: usize = 4096;
/// Products with at most this many rows take the short-and-wide loop order of [`gemm_short`].
const SHORT_M: usize = 256;
/// A row-major A whose row stride is a multiple of this many floats (2 KiB) is packed rather than read in place: its
/// MR rows then start in at most two of L1d's 64 sets (a set is picked by address bits 6–11), and as the tile walks
/// along them each of those sets must hold 6–12 row lines beside the B̃ panel's 8, more than its 12 ways. Measured on
/// `sgemm/diffuse/2048` (one thread): 150–160 GFLOP/s in place, 171–175 packed.
const ALIASING_ROW_STRIDE: usize = 512;
/// Products with fewer multiply-adds than this run on the calling thread: a rayon task costs about a microsecond.
const PARALLEL_MIN_MACS: usize = 1 << 17;

/// A read-only strided matrix view: element `(i, j)` is `data[i·row_stride + j·col_stride]`.
#[derive(Clone, Copy, Debug)]
pub struct MatRef<'a> {
    pub data: &'a [f32],
    pub row_stride: usize,
    pub col_stride: usize,
}

/// A writable strided matrix view: element `(i, j)` is `data[i·row_stride + j·col_stride]`.
#[derive(Debug)]
pub struct MatMut<'a> {
    pub data: &'a mut [f32],
    pub row_stride: usize,
    pub col_stride: usize,
}

impl<'a> MatRef<'a> {
    /// A row-major matrix with `cols` columns: `(i, j)` at `i·cols + j`.
    pub fn row_major(data: &'a [f32], cols: usize) -> Self {
        Self {
            data,
            row_stride: cols,
            col_stride: 1,
        }
    }

    /// The transpose, as a view of the same data (strides swapped).
    pub fn t(self) -> Self {
        Self {
            data: self.data,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
        }
    }
}

impl<'a> MatMut<'a> {
    /// A row-major matrix with `cols` columns: `(i, j)` at `i·cols + j`.
    pub fn row_major(data: &'a mut [f32], cols: usize) -> Self {
        Self {
            data,
            row_stride: cols,
            col_stride: 1,
        }
    }
}

/// C[m×n] = alpha·A[m×k]·B[k×n] + beta·C; element (i,j) of a matrix lives at i*row_stride + j*col_stride.
/// Transposes are expressed through strides. beta == 0 means C is overwritten (NaNs in C ignored).
///
/// Errors when an addressed element lies outside its slice or when two elements of C share a slot.
#[allow(clippy::too_many_arguments)]
pub fn sgemm(
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    a: MatRef,
    b: MatRef,
    beta: f32,
    c: MatMut,
) -> Result<()> {
    sgemm_batched_using(
        MicroKernel::detect(),
        1,
        m,
        n,
        k,
        alpha,
        a,
        0,
        b,
        0,
        beta,
        c,
        0,
    )
}

/// `batch` independent products; matrix b of each operand starts at b*batch_stride (a batch stride of 0 broadcasts).
///
/// C may not broadcast (its batch stride must separate the products) since every product writes its own C.
#[allow(clippy::too_many_arguments)]
pub fn sgemm_batched(
    batch: usize,
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    a: MatRef,
    a_batch_stride: usize,
    b: MatRef,
    b_batch_stride: usize,
    beta: f32,
    c: MatMut,
    c_batch_stride: usize,
) -> Result<()> {
    sgemm_batched_using(
        MicroKernel::detect(),
        batch,
        m,
        n,
        k,
        alpha,
        a,
        a_batch_stride,
        b,
        b_batch_stride,
        beta,
        c,
        c_batch_stride,
    )
}

/// [`sgemm_batched`] with a chosen micro-kernel, for tests and benchmarks that compare kernels. Errors if this CPU
/// cannot run `kernel`.
#[allow(clippy::too_many_arguments)]
pub fn sgemm_batched_using(
    kernel: MicroKernel,
    batch: usize,
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    a: MatRef,
    a_batch_stride: usize,
    b: MatRef,
    b_batch_stride: usize,
    beta: f32,
    c: MatMut,
    c_batch_stride: usize,
) -> Result<()> {
    let (a, b) = ((AOperand::Strided(a), a_batch_stride), (b, b_batch_stride));
    checked_gemm(
        kernel,
        (batch, m, n, k),
        alpha,
        a,
        b,
        Addend::ScaledC(beta),
        (c, c_batch_stride),
    )
}

/// `batch` products `C = alpha·A·B + bias`, the `[n]` vector `bias` added to every row of every product in the
/// GEMM's output stage (a linear layer), where copying it into C first would cost a pass over C. C's old contents
/// are ignored. Each element is `alpha·(A·B)_ij + bias_j`, rounded exactly as a C filled with the bias and `beta = 1`
/// would give it. Operands and errors as for [`sgemm_batched`], and the bias must hold `n` floats.
#[allow(clippy::too_many_arguments)]
pub fn sgemm_batched_bias(
    batch: usize,
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    a: MatRef,
    a_batch_stride: usize,
    b: MatRef,
    b_batch_stride: usize,
    bias: &[f32],
    c: MatMut,
    c_batch_stride: usize,
) -> Result<()> {
    sgemm_batched_bias_using(
        MicroKernel::detect(),
        batch,
        m,
        n,
        k,
        alpha,
        a,
        a_batch_stride,
        b,
        b_batch_stride,
        bias,
        c,
        c_batch_stride,
    )
}

/// [`sgemm_batched_bias`] with a chosen micro-kernel, as [`sgemm_batched_using`].
#[allow(clippy::too_many_arguments)]
pub fn sgemm_batched_bias_using(
    kernel: MicroKernel,
    batch: usize,
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    a: MatRef,
    a_batch_stride: usize,
    b: MatRef,
    b_batch_stride: usize,
    bias: &[f32],
    c: MatMut,
    c_batch_stride: usize,
) -> Result<()> {
    if bias.len() != n {
        return Err(KernelError::new(
            "sgemm",
            format!(
                "the bias has {} floats for a product with {n} columns (one per column)",
                bias.len()
            ),
        ));
    }
    let (a, b) = ((AOperand::Strided(a), a_batch_stride), (b, b_batch_stride));
    checked_gemm(
        kernel,
        (batch, m, n, k),
        alpha,
        a,
        b,
        Addend::Bias(bias),
        (c, c_batch_stride),
    )
}

/// What the product is added to: `beta·C`, or a bias row (C's old contents ignored).
#[derive(Clone, Copy)]
enum Addend<'a> {
    ScaledC(f32),
    Bias(&'a [f32]),
}

/// An error naming `op` unless this CPU can run `kernel`.
fn check_supported(op: &'static str, kernel: MicroKernel) -> Result<()> {
    if kernel.is_supported() {
        Ok(())
    } else {
        Err(KernelError::new(
            op,
            format!("this CPU cannot run the {kernel} micro-kernel"),
        ))
    }
}

/// The checks and the run shared by the public entry points.
fn checked_gemm(
    kernel: MicroKernel,
    (batch, m, n, k): (usize, usize, usize, usize),
    alpha: f32,
    (a, a_batch_stride): (AOperand, usize),
    (b, b_batch_stride): (MatRef, usize),
    addend: Addend,
    (c, c_batch_stride): (MatMut, usize),
) -> Result<()> {
    const OP: &str = "sgemm";
    crate::threads::keep_workers_spinning();
    check_supported(OP, kernel)?;
    let axes = |batch_stride: usize,
                rows: (&'static str, usize, usize),
                cols: (&'static str, usize, usize)| {
        [
            Axis {
                name: "batch",
                extent: batch,
                stride: batch_stride,
            },
            Axis {
                name: rows.0,
                extent: rows.1,
                stride: rows.2,
            },
            Axis {
                name: cols.0,
                extent: cols.1,
                stride: cols.2,
            },
        ]
    };
    let b_axes = axes(
        b_batch_stride,
        ("k", k, b.row_stride),
        ("n", n, b.col_stride),
    );
    let c_axes = axes(
        c_batch_stride,
        ("m", m, c.row_stride),
        ("n", n, c.col_stride),
    );
    // A and B are read only when some element of C is computed; C is touched whenever it is non-empty. A packed by
    // `PackedA::pack` was checked when it was packed, against this kernel and these sizes.
    if let (AOperand::Strided(a), true) = (a, n > 0) {
        let a_axes = axes(
            a_batch_stride,
            ("m", m, a.row_stride),
            ("k", k, a.col_stride),
        );
        check::in_bounds(OP, "A", &a_axes, a.data.len())?;
    }
    if m > 0 {
        check::in_bounds(OP, "B", &b_axes, b.data.len())?;
    }
    check::in_bounds(OP, "C", &c_axes, c.data.len())?;
    check::injective(OP, "C", &c_axes)?;

    if batch == 0 || m == 0 || n == 0 {
        return Ok(());
    }
    let (beta, bias) = match addend {
        // A bias replaces C's old contents, as beta = 0 would; the tiles of the first k-block add it instead.
        Addend::ScaledC(beta) => (beta, std::ptr::null()),
        Addend::Bias(bias) => (0.0, bias.as_ptr()),
    };
    if k == 0 {
        match addend {
            Addend::ScaledC(beta) => scale(batch, m, n, beta, c, c_batch_stride),
            Addend::Bias(bias) => fill_rows(batch, m, bias, c, c_batch_stride),
        }
        return Ok(());
    }

    let problem = Problem {
        batch,
        m,
        n,
        k,
        alpha,
        a,
        a_batch_stride,
        b,
        b_batch_stride,
        beta,
        c: SharedC {
            ptr: c.data.as_mut_ptr(),
            row_stride: c.row_stride,
            col_stride: c.col_stride,
            bias,
        },
        c_batch_stride,
    };
    // SAFETY: the kernel is supported (checked above); the checks above put every addressed element of A, B and C
    // inside its slice and give every element of C a slot of its own, and `c` is mutably borrowed for the call.
    unsafe { with_micro_kernel!(kernel, problem.run::<MR, NR, K>()) }
    Ok(())
}

/// The A of a product: a strided view the GEMM packs as it goes, or panels packed beforehand ([`PackedA`]) for
/// the kernel that runs the product; with `batch` products, product `i`'s panels start `i·a_batch_stride` in.
#[derive(Clone, Copy)]
enum AOperand<'a> {
    Strided(MatRef<'a>),
    Packed(&'a [f32]),
}

/// A checked, non-empty batched product (`k > 0`), ready to run with a chosen kernel.
struct Problem<'a> {
    batch: usize,
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    a: AOperand<'a>,
    a_batch_stride: usize,
    b: MatRef<'a>,
    b_batch_stride: usize,
    beta: f32,
    c: SharedC,
    c_batch_stride: usize,
}

impl Problem<'_> {
    /// Runs every product with kernel `K` and its `MR × NR` tile.
    ///
    /// # Safety
    /// `K` is supported by this CPU; every element the problem addresses is inside its slice, C's elements have
    /// slots of their own, and nothing else touches C meanwhile.
    unsafe fn run<const MR: usize, const NR: usize, K: Kernel<MR, NR>>(&self) {
        const {
            assert!(
                MC.is_multiple_of(MR) && NC.is_multiple_of(NR),
                "blocks must hold whole panels"
            )
        };
        let &Self {
            batch,
            m,
            n,
            k,
            alpha,
            a,
            b,
            beta,
            ..
        } = self;
        let parallel = m.saturating_mul(n).saturating_mul(k) >= PARALLEL_MIN_MACS;
        let product = |index: usize| {
            let a_i = match a {
                AOperand::Strided(a) => AOperand::Strided(MatRef {
                    data: &a.data[index * self.a_batch_stride..],
                    ..a
                }),
                AOperand::Packed(panels) => {
                    AOperand::Packed(&panels[index * self.a_batch_stride..])
                }
            };
            let b_i = MatRef {
                data: &b.data[index * self.b_batch_stride..],
                ..b
            };
            // SAFETY: the bounds check covered offset index·c_batch_stride, so the pointer stays inside C's slice.
            let c_i = unsafe { self.c.offset(index * self.c_batch_stride) };
            // SAFETY: `c_i` addresses product `index` of C: in bounds, disjoint from the other products' elements,
            // and touched by nothing else (this function's contract).
            unsafe {
                if m <= SHORT_M {
                    gemm_short::<MR, NR, K>(m, n, k, alpha, &a_i, &b_i, beta, c_i, parallel)
                } else {
                    gemm_blocked::<MR, NR, K>(m, n, k, alpha, &a_i, &b_i, beta, c_i, parallel)
                }
            };
        };
        if batch > 1 && parallel_batch(batch, m, n, k) {
            (0..batch).into_par_iter().for_each(product);
        } else {
            (0..batch).for_each(product);
        }
    }
}

/// Whether a batch is worth spreading over threads product by product.
fn parallel_batch(batch: usize, m: usize, n: usize, k: usize) -> bool {
    batch.saturating_mul(m).saturating_mul(n).saturating_mul(k) >= PARALLEL_MIN_MACS
}

/// `C ← beta·C` (zeros when beta == 0): the product of an empty sum.
fn scale(batch: usize, m: usize, n: usize, beta: f32, c: MatMut, c_batch_stride: usize) {
    for index in 0..batch {
        for i in 0..m {
            for j in 0..n {
                let slot =
                    &mut c.data[index * c_batch_stride + i * c.row_stride + j * c.col_stride];
                *slot = if beta == 0.0 { 0.0 } else { beta * *slot };
            }
        }
    }
}

/// C = the bias on every row: the product of an empty sum plus its bias.
fn fill_rows(batch: usize, m: usize, bias: &[f32], c: MatMut, c_batch_stride: usize) {
    for index in 0..batch {
        for i in 0..m {
            for (j, &b) in bias.iter().enumerate() {
                c.data[index * c_batch_stride + i * c.row_stride + j * c.col_stride] = b;
            }
        }
    }
}

/// The base of one C matrix, shared by the tasks that write its disjoint tiles.
#[derive(Clone, Copy)]
struct SharedC {
    ptr: *mut f32,
    row_stride: usize,
    col_stride: usize,
    /// Null, or the bias (one float per column of C) that the first k-block's tiles add instead of `beta·C`.
    bias: *const f32,
}

// SAFETY: a `SharedC` is only dereferenced through `tile`, and the loop nest hands each (ic, jr, ir) tile to exactly
// one task, so no element is ever written by two threads or read while another writes it.
unsafe impl Send for SharedC {}
// SAFETY: as for `Send`: concurrent holders write pairwise disjoint tiles.
unsafe impl Sync for SharedC {}

impl SharedC {
    /// The matrix starting `by` floats further on, with the same strides.
    ///
    /// # Safety
    /// The offset stays inside the allocation.
    unsafe fn offset(&self, by: usize) -> Self {
        // SAFETY: forwarded from the caller.
        let ptr = unsafe { self.ptr.add(by) };
        Self { ptr, ..*self }
    }

    /// This C for k-block `pc`: only the first block's tiles add the bias; later blocks accumulate onto C.
    fn for_block(&self, pc: usize) -> Self {
        if pc == 0 {
            *self
        } else {
            Self {
                bias: std::ptr::null(),
                ..*self
            }
        }
    }

    /// The `rows × cols` tile whose top-left element is `(i, j)`.
    ///
    /// # Safety
    /// `(i, j)` is inside the matrix this `SharedC` addresses, so the offset stays inside its allocation.
    unsafe fn tile(&self, i: usize, j: usize, rows: usize, cols: usize) -> CTile {
        CTile {
            // SAFETY: forwarded from the caller.
            ptr: unsafe { self.ptr.add(i * self.row_stride + j * self.col_stride) },
            row_stride: self.row_stride,
            col_stride: self.col_stride,
            rows,
            cols,
            // Column j of C takes bias[j].
            bias: if self.bias.is_null() {
                self.bias
            } else {
                self.bias.wrapping_add(j)
            },
        }
    }
}

/// The five-loop blocked product of one matrix triple (see the module header), with `k > 0`.
///
/// # Safety
/// `K` is supported; A and B address only elements inside their slices; every element of the `m × n` matrix
/// `c` is inside one allocation, has a slot of its own, and no other code reads or writes those slots meanwhile.
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_blocked<const MR: usize, const NR: usize, K: Kernel<MR, NR>>(
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    a: &AOperand,
    b: &MatRef,
    beta: f32,
    c: SharedC,
    parallel: bool,
) {
    let mut b_buf = PackBuf::take(Operand::B);
    for jc in (0..n).step_by(NC) {
        let nc = NC.min(n - jc);
        for pc in (0..k).step_by(KC) {
            let kc = KC.min(k - pc);
            let beta_block = if pc == 0 { beta } else { 1.0 };
            let c = c.for_block(pc);
            let b_packed = b_buf.floats(nc.next_multiple_of(NR) * kc);
            // SAFETY: `K` is supported (this function's contract).
            unsafe { pack::pack_b::<MR, NR, K>(b, pc, kc, jc, nc, b_packed, parallel) };
            let b_packed: &[f32] = b_packed;

            let row_block = |a_buf: &mut PackBuf, ic: usize| {
                let mc = MC.min(m - ic);
                // A row-major A's whole MR-row panels are read where they lie (`Kernel::tile_rows`) unless its rows
                // alias in L1 (`ALIASING_ROW_STRIDE`); only the rows past the last whole panel, and every row of any
                // other layout, are packed (or were, beforehand).
                let in_place = match a {
                    AOperand::Strided(a)
                        if a.col_stride == 1 && a.row_stride % ALIASING_ROW_STRIDE != 0 =>
                    {
                        mc / MR * MR
                    }
                    _ => 0,
                };
                let packed_rows = (ic + in_place, mc - in_place);
                let a_packed: &[f32] = match a {
                    AOperand::Packed(panels) => {
                        &panels[m.next_multiple_of(MR) * pc + ic * kc..]
                            [..mc.next_multiple_of(MR) * kc]
                    }
                    AOperand::Strided(a) => {
                        let a_packed = a_buf.floats(packed_rows.1.next_multiple_of(MR) * kc);
                        if packed_rows.1 > 0 {
                            // SAFETY: `K` is supported (this function's contract).
                            unsafe { K::pack_a(a, packed_rows.0, packed_rows.1, pc, kc, a_packed) };
                        }
                        a_packed
                    }
                };
                let column_panel = |(q, b_panel): (usize, &[f32])| {
                    let jr = q * NR;
                    let cols = (jc + jr, NR.min(nc - jr));
                    // SAFETY: the rows and columns are inside C, and this task alone owns their tiles.
                    unsafe {
                        if let AOperand::Strided(a) = a {
                            row_tiles::<MR, NR, K>(
                                kc,
                                (a, pc),
                                b_panel,
                                alpha,
                                beta_block,
                                c,
                                (ic, in_place),
                                cols,
                            );
                        }
                        panel_tiles::<MR, NR, K>(
                            kc,
                            a_packed,
                            b_panel,
                            alpha,
                            beta_block,
                            c,
                            packed_rows,
                            cols,
                        );
                    };
                };
                if parallel {
                    b_packed
                        .par_chunks_exact(NR * kc)
                        .enumerate()
                        .for_each(column_panel);
                } else {
                    b_packed
                        .chunks_exact(NR * kc)
                        .enumerate()
                        .for_each(column_panel);
                }
            };
            if parallel {
                (0..m)
                    .into_par_iter()
                    .step_by(MC)
                    .for_each_init(|| PackBuf::take(Operand::A), row_block);
            } else {
                let mut a_buf = PackBuf::take(Operand::A);
                (0..m).step_by(MC).for_each(|ic| row_block(&mut a_buf, ic));
            }
        }
    }
}

/// The innermost loop of both orders: the tiles of one column panel of C, `rows = (first, count)` ×
/// `cols = (first, count ≤ NR)`, from the packed A block of those rows and one packed B panel.
///
/// # Safety
/// `K` is supported; the rows and columns are inside C, and no other code touches their elements meanwhile.
#[allow(clippy::too_many_arguments)]
unsafe fn panel_tiles<const MR: usize, const NR: usize, K: Kernel<MR, NR>>(
    kc: usize,
    a_packed: &[f32],
    b_panel: &[f32],
    alpha: f32,
    beta: f32,
    c: SharedC,
    (row0, rows): (usize, usize),
    (col0, cols): (usize, usize),
) {
    for (ir, a_panel) in (0..rows).step_by(MR).zip(a_packed.chunks_exact(MR * kc)) {
        // SAFETY: (row0 + ir, col0) is inside C and the tile, clamped to C's edge, belongs to the caller alone; the
        // kernel and panel lengths are as `run` requires.
        unsafe {
            let tile = c.tile(row0 + ir, col0, MR.min(rows - ir), cols);
            K::tile(kc, a_panel, b_panel, alpha, beta, tile);
        }
    }
}

/// [`panel_tiles`] with A's rows read in place instead of packed ([`Kernel::tile_rows`]): `rows = (first, count)`
/// with `count` a multiple of MR, of a row-major A (`col_stride == 1`) whose k-block starts at column `pc`.
///
/// # Safety
/// As for [`panel_tiles`]; A is row-major and its rows `first .. first + count` exist.
#[allow(clippy::too_many_arguments)]
unsafe fn row_tiles<const MR: usize, const NR: usize, K: Kernel<MR, NR>>(
    kc: usize,
    (a, pc): (&MatRef, usize),
    b_panel: &[f32],
    alpha: f32,
    beta: f32,
    c: SharedC,
    (row0, rows): (usize, usize),
    (col0, cols): (usize, usize),
) {
    debug_assert!(a.col_stride == 1 && rows.is_multiple_of(MR));
    for ir in (0..rows).step_by(MR) {
        // Row row0 + ir + MR − 1 of A exists and the bounds check covered its columns pc .. pc + kc, so the slice
        // holds the (MR − 1)·row_stride + kc floats the kernel reads.
        let a_rows = &a.data[(row0 + ir) * a.row_stride + pc..];
        // SAFETY: (row0 + ir, col0) is inside C and the full-height tile belongs to the caller alone.
        unsafe {
            let tile = c.tile(row0 + ir, col0, MR, cols);
            K::tile_rows(kc, a_rows, a.row_stride, b_panel, alpha, beta, tile);
        }
    }
}

/// The loop order for short, wide products (`m ≤ SHORT_M`, e.g. a convolution's `[out_channels × positions]`):
///
/// ```text
/// for pc in 0..k step KC                      pack Ã = A[.., pc..]  m×kc  (≤ 256 KiB: lives in L2)
///   for jr in 0..n step NR      (parallel)    pack one B̃ panel kc×NR  (16 or 32 KiB: lives in L1)
///     for ir in 0..m step MR                  micro-kernel on that panel
/// ```
///
/// [`gemm_blocked`] packs a whole kc×nc block of B before any tile runs, so each packed panel is written out to L2 or
/// L3 and read back later; when A has few rows each panel is used by only ⌈m/MR⌉ tiles, and that round trip costs
/// as much as the tiles' arithmetic. Packing each panel just before its tiles keeps it in L1. Every element of C still
/// receives its k-terms in the same order (blocks ascending, `p` ascending), so both orders give identical bits.
///
/// # Safety
/// As for [`gemm_blocked`].
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_short<const MR: usize, const NR: usize, K: Kernel<MR, NR>>(
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    a: &AOperand,
    b: &MatRef,
    beta: f32,
    c: SharedC,
    parallel: bool,
) {
    let mut a_buf = PackBuf::take(Operand::A);
    for pc in (0..k).step_by(KC) {
        let kc = KC.min(k - pc);
        let beta_block = if pc == 0 { beta } else { 1.0 };
        let c = c.for_block(pc);
        let a_packed: &[f32] = match a {
            AOperand::Packed(panels) => {
                &panels[m.next_multiple_of(MR) * pc..][..m.next_multiple_of(MR) * kc]
            }
            AOperand::Strided(a) => {
                let a_packed = a_buf.floats(m.next_multiple_of(MR) * kc);
                // SAFETY: `K` is supported (this function's contract).
                unsafe { K::pack_a(a, 0, m, pc, kc, a_packed) };
                a_packed
            }
        };
        let column_panel = |b_buf: &mut PackBuf, jr: usize| {
            let cols = NR.min(n - jr);
            let b_panel: &[f32] = if cols == NR && b.col_stride == 1 && b.row_stride == NR {
                // Rows NR floats apart, NR columns from jr: this k-block of B is already the packed panel, kc rows
                // of NR floats one after another, and is read where it lies. (A Winograd weight gradient over 32
                // input channels has such a B, `tiles × 32`: without the copies, `conv_time 32 32 28 20
                // bwd-weight` on one thread went from 3.94 / 3.95 / 4.28 to 3.62 / 3.69 / 3.98 ms. Rows further
                // apart are still packed: a first version that read every row-major B's rows in place made the
                // forward products, whose rows lie far apart, 5 % slower.)
                &b.data[pc * NR + jr..][..kc * NR]
            } else {
                let b_panel = b_buf.floats(NR * kc);
                // SAFETY: `K` is supported (this function's contract).
                unsafe { K::pack_b_panel(b, pc, kc, jr, cols, b_panel) };
                b_panel
            };
            // SAFETY: the rows and columns are inside C, and this task alone owns their tiles.
            unsafe {
                panel_tiles::<MR, NR, K>(
                    kc,
                    a_packed,
                    b_panel,
                    alpha,
                    beta_block,
                    c,
                    (0, m),
                    (jr, cols),
                )
            };
        };
        if parallel {
            (0..n)
                .into_par_iter()
                .step_by(NR)
                .for_each_init(|| PackBuf::take(Operand::B), column_panel);
        } else {
            let mut b_buf = PackBuf::take(Operand::B);
            (0..n)
                .step_by(NR)
                .for_each(|jr| column_panel(&mut b_buf, jr));
        }
    }
}
