//! Scaled dot-product attention for `N·H` independent (sequence, head) problems, in the blocked online-softmax form
//! of FlashAttention (Dao et al., 2022; backward as in FlashAttention-2, Dao, 2023).
//!
//! Layout: the operands are read where a projection writes them, heads interleaved ([`layout`]): element
//! `(n, l, h, c)` of `q` is at `(n·Lq + l)·q_row_stride + h·d + c`, of `k` and `v` at `(n·Lk + l)·kv_row_stride +
//! h·d + c`, with row strides of at least `H·d` (exactly `H·d` for a dense `(N, L, H·d)` projection; more when the
//! rows are a slice of a wider, fused projection's). `out` and `grad_out` are dense `(N, Lq, H·d)`, `lse` is
//! `(N, H, Lq)`, and `grad_q`, `grad_k`, `grad_v` are written in their operands' layouts (columns past `H·d` are left
//! as they are). No head is ever split off into a copy of its own: the copies the kernel makes anyway (the padded
//! register-tile rows below) gather one head's rows from the interleaved ones. A batched `(BH, L, d)` attention is
//! the special case `N = BH`, `H = 1`, row strides `d`.
//!
//! Math, per problem: `S = scale·Q·Kᵀ + bias` (`[Lq, Lk]`), `P = softmax_rows(S)`, `O = P·V`,
//! `lse_i = ln Σ_j exp(S_ij)`. Backward with `dO`: `D_i = Σ_c dO_ic·O_ic`, `P_ij = exp(S_ij − lse_i)`,
//! `dP = dO·Vᵀ`, `dS = P∘(dP − D)`, `dQ = scale·dS·K`, `dK = scale·dSᵀ·Q`, `dV = Pᵀ·dO`.
//!
//! Loop structure: the query rows are cut into tiles of `BQ`, the key/value rows into tiles of `BK` (in the forward,
//! up to `WHOLE_ROW_KEYS` keys make a single tile); only a `BQ × BK` block of scores exists at a time.
//! Forward, one task per (problem, query tile): for each key tile, `S_tile = Q_tile·K_tileᵀ`, then per row the
//! running maximum `m`, running sum `l` and unnormalised output are rescaled by `exp(m_old − m_new)` and extended by
//! `exp(S − m_new)·V_tile`; at the end `O = acc / l`, `lse = m + ln l`.
//! Backward, one task per (problem, key tile), in one pass over the query tiles (five products per tile pair, as
//! FlashAttention-2): `S` and `dP = dO·Vᵀ` are recomputed, `P = exp(S − lse)`, `dS = P∘(dP − D)`; the task
//! accumulates its key tile's `dV += Pᵀ·dO` and `dK += dSᵀ·Q` and writes its share `dS·K` of every query row's `dQ`
//! to a buffer of its own; the shares are then summed over the key tiles in order. No atomics, and no sum's order
//! depends on the thread count.
//!
//! Masking: `bias` (`[Lq, Lk]`, shared by all problems) may hold −∞. A query row whose scores are all −∞ attends
//! to nothing: its output is 0, its `lse` is −∞, and it contributes no gradient (no NaN anywhere).
//!
//! Base 2: the element-wise steps work with `log2(e)·S` rather than `S` (the forward folds `scale·log2(e)` into its
//! copy of `Q`; the backward folds it into the one fused multiply-add that forms the power's argument), so every
//! `exp` is a `2^x` ([`crate::math::exp2_shifted`], all its arguments ≤ 0 up to rounding), whose range reduction
//! is exact and whose polynomial has a short dependency chain. `lse` is stored in natural units.
//!
//! Inner loops: every product is the register-tiled routine of `product.rs` (6 × 16 tiles of fused multiply-adds;
//! AVX-512 or AVX2 intrinsics where the CPU has them). Each problem's `K` is transposed once into `d × BK` tiles shared by all
//! its query tiles (the backward transposes its key tile's `K` and `V`), and the operands are copied with rows padded
//! to whole register tiles. The element-wise steps (bias, row maximum, `2^x` and row sum, `dS`) take few passes
//! over a tile, with eight-lane partial maxima and sums reduced pairwise. They are compiled for AVX2 + FMA as well
//! and picked at run time (`dispatch.rs`), with bit-identical results either way.

use std::cell::RefCell;
use std::f32::consts::{LN_2, LOG2_E};

use rayon::prelude::*;

use crate::dispatch::dispatch;
use crate::error::{check_len, KernelError, Result};
use crate::math::exp2_shifted as exp2;

mod layout;
mod product;
use layout::{check_rows, HeadRows, HeadRowsMut, SharedRows};
use product::{product, Init, Rows, Strided, MR, NR};

/// Query rows per tile (and per forward task): a whole number of register tiles ([`MR`] rows).
const BQ: usize = 48;
/// Key/value rows per tile (and per backward task): a whole number of register tiles as rows ([`MR`]) and as
/// columns ([`NR`]).
const BK: usize = 48;
const _: () = assert!(BQ.is_multiple_of(MR) && BK.is_multiple_of(MR) && BK.is_multiple_of(NR));
/// Up to this many keys the forward takes a whole row of scores at once ([`forward_key_tile`]).
const WHOLE_ROW_KEYS: usize = 256;
/// Keys per forward tile beyond [`WHOLE_ROW_KEYS`]. Each tile costs every row a horizontal maximum and sum and a
/// rescale of its output accumulator, so the forward takes twice the backward's tile; at L = 1024, d = 64 that was
/// 5–8% faster than 48 keys, and 256 keys slower (interleaved runs of the three builds, 2026-11-23).
const LONG_FORWARD_BK: usize = 2 * BK;

/// The shape of an attention call over `batch` sequences of `heads` heads: `q` holds `batch·q_len` rows, `k` and `v`
/// `batch·kv_len` rows, each row every head's `head_dim` channels side by side ([`layout`]: element `(n, l, h, c)` at
/// `(n·len + l)·row_stride + h·head_dim + c`). `out` and `grad_out` are dense (`batch`, `q_len`, `heads·head_dim`);
/// `lse` is (`batch`, `heads`, `q_len`). The contiguous (`BH`, `L`, `d`) problems of a plain batched attention are
/// `batch = BH`, `heads = 1`, row strides `d` ([`AttentionShape::dense`]).
#[derive(Clone, Copy, Debug)]
pub struct AttentionShape {
    pub batch: usize,
    pub heads: usize,
    pub q_len: usize,
    pub kv_len: usize,
    pub head_dim: usize,
    /// Floats from one row of `q` (and of `grad_q`) to the next: at least `heads·head_dim`.
    pub q_row_stride: usize,
    /// Floats from one row of `k`, `v` (and of `grad_k`, `grad_v`) to the next: at least `heads·head_dim`.
    pub kv_row_stride: usize,
    pub scale: f32,
}

impl AttentionShape {
    /// Every operand dense: rows of `heads·head_dim` floats.
    pub fn dense(
        batch: usize,
        heads: usize,
        q_len: usize,
        kv_len: usize,
        head_dim: usize,
        scale: f32,
    ) -> Self {
        let inner = heads.saturating_mul(head_dim);
        Self {
            batch,
            heads,
            q_len,
            kv_len,
            head_dim,
            q_row_stride: inner,
            kv_row_stride: inner,
            scale,
        }
    }

    /// `heads·head_dim`: the channels of a row that hold heads (all of `out`'s).
    pub fn inner(&self) -> usize {
        self.heads * self.head_dim
    }

    /// The number of independent (sequence, head) problems: `batch·heads`, the rows of `lse`.
    pub fn problems(&self) -> usize {
        self.batch * self.heads
    }

    /// Checks the shape and the lengths of the forward's operands `[q, k, v, out, lse]` and of `bias` (which the
    /// backward reads too); returns the number of elements of `out`. The GPU entries
    /// (`diffuse_cuda_kernels::attention`) check their operands with it too.
    pub fn check_forward_lengths(
        &self,
        op: &'static str,
        [q, k, v, out, lse]: [usize; 5],
        bias: Option<usize>,
    ) -> Result<usize> {
        let out_elems = self.validate(op)?;
        let (q_rows, kv_rows, inner) = (
            self.batch * self.q_len,
            self.batch * self.kv_len,
            self.inner(),
        );
        check_rows(op, "q", q, q_rows, self.q_row_stride, inner)?;
        check_rows(op, "k", k, kv_rows, self.kv_row_stride, inner)?;
        check_rows(op, "v", v, kv_rows, self.kv_row_stride, inner)?;
        check_len(op, "out", out, out_elems)?;
        check_len(op, "lse", lse, self.problems() * self.q_len)?;
        if let Some(bias) = bias {
            check_len(op, "bias", bias, self.q_len * self.kv_len)?;
        }
        Ok(out_elems)
    }

    /// Checks the lengths of the backward's own operands `[grad_out, grad_q, grad_k, grad_v]`, after
    /// [`AttentionShape::check_forward_lengths`] has checked the shape.
    pub fn check_gradient_lengths(
        &self,
        op: &'static str,
        [grad_out, grad_q, grad_k, grad_v]: [usize; 4],
    ) -> Result<()> {
        let (q_rows, kv_rows, inner) = (
            self.batch * self.q_len,
            self.batch * self.kv_len,
            self.inner(),
        );
        check_len(op, "grad_out", grad_out, q_rows * inner)?;
        check_rows(op, "grad_q", grad_q, q_rows, self.q_row_stride, inner)?;
        check_rows(op, "grad_k", grad_k, kv_rows, self.kv_row_stride, inner)?;
        check_rows(op, "grad_v", grad_v, kv_rows, self.kv_row_stride, inner)
    }

    /// Checks the shape and returns the number of elements of `out`.
    fn validate(&self, op: &'static str) -> Result<usize> {
        let overflow = || KernelError::new(op, format!("shape {self:?} overflows usize"));
        if self.head_dim == 0 {
            return Err(KernelError::new(op, "head_dim is 0"));
        }
        if self.heads == 0 {
            return Err(KernelError::new(op, "heads is 0"));
        }
        if self.kv_len == 0 && self.q_len > 0 {
            return Err(KernelError::new(
                op,
                format!(
                    "kv_len is 0 but q_len is {}: nothing to attend to",
                    self.q_len
                ),
            ));
        }
        if !self.scale.is_finite() {
            return Err(KernelError::new(
                op,
                format!("scale {} is not finite", self.scale),
            ));
        }
        let inner = self.heads.checked_mul(self.head_dim).ok_or_else(overflow)?;
        for (what, stride) in [
            ("q_row_stride", self.q_row_stride),
            ("kv_row_stride", self.kv_row_stride),
        ] {
            if stride < inner {
                return Err(KernelError::new(
                    op,
                    format!(
                        "{what} {stride} is less than heads·head_dim = {} × {} = {inner}: rows would overlap",
                        self.heads, self.head_dim
                    ),
                ));
            }
        }
        let rows = |len: usize, stride: usize| {
            self.batch
                .checked_mul(len)
                .and_then(|r| r.checked_mul(stride))
        };
        rows(self.q_len, self.q_row_stride).ok_or_else(overflow)?;
        rows(self.kv_len, self.kv_row_stride).ok_or_else(overflow)?;
        self.batch
            .checked_mul(self.heads)
            .and_then(|p| p.checked_mul(self.q_len))
            .ok_or_else(overflow)?;
        self.q_len.checked_mul(self.kv_len).ok_or_else(overflow)?;
        rows(self.q_len, inner).ok_or_else(overflow)
    }
}

/// Writes the `rows` rows of `src` (`d` wide) transposed into `dst` (`d × width`), zero-filling columns
/// `rows..width`.
#[inline(always)]
fn transpose_into(src: HeadRows, rows: usize, dst: &mut [f32], width: usize) {
    dst.fill(0.0);
    for j in 0..rows {
        for (p, &value) in src.row(j).iter().enumerate() {
            dst[p * width + j] = value;
        }
    }
}

/// Writes the `len` rows of one problem's `src` (`d` wide) into `dst` as consecutive transposed tiles of `width` rows:
/// tile `t` (`d × width`, at `t·d·width`) holds rows `t·width..` as [`transpose_into`] writes them. Made once per
/// problem and read by all its query tiles.
fn transposed_tiles_into(src: HeadRows, len: usize, d: usize, dst: &mut [f32], width: usize) {
    for (t, dst) in dst.chunks_exact_mut(d * width).enumerate() {
        let j0 = t * width;
        transpose_into(src.skip_rows(j0), width.min(len - j0), dst, width);
    }
}

/// Keys per forward tile: all of them, rounded up to whole register tiles, when there are at most
/// [`WHOLE_ROW_KEYS`] (one pass per row and nothing to rescale); otherwise [`LONG_FORWARD_BK`].
fn forward_key_tile(kv_len: usize) -> usize {
    if kv_len <= WHOLE_ROW_KEYS {
        kv_len.div_ceil(NR) * NR
    } else {
        LONG_FORWARD_BK
    }
}

/// `d` rounded up to whole register tiles ([`NR`] columns): the row stride of the padded copies below.
fn padded(d: usize) -> usize {
    d.div_ceil(NR) * NR
}

/// Writes the `rows` rows of `src` (`d` wide) into `dst` with row stride `padded(d)`, zero-filling the extra
/// columns and the rows after `src`'s, so that products over whole register tiles read only defined values.
fn padded_rows_into(src: HeadRows, rows: usize, d: usize, dst: &mut [f32]) {
    let dp = padded(d);
    for (i, dst) in dst.chunks_exact_mut(dp).enumerate() {
        if i < rows {
            dst[..d].copy_from_slice(src.row(i));
            dst[d..].fill(0.0);
        } else {
            dst.fill(0.0);
        }
    }
}

/// Splits `len` floats off the front of `buf`.
fn take<'a>(buf: &mut &'a mut [f32], len: usize) -> &'a mut [f32] {
    let (head, tail) = std::mem::take(buf).split_at_mut(len);
    *buf = tail;
    head
}

thread_local! {
    /// Working memory of the tile tasks, reused from task to task on each thread. A task holds it only while it runs
    /// its tile routine, which never calls back into rayon, so no other task on the same thread can ask for it then.
    static TILE_SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` on `len` floats of this thread's tile scratch; their contents are left over from earlier tasks, so `f`
/// must write every element it reads.
fn with_tile_scratch<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    TILE_SCRATCH.with(|cell| {
        let mut buf = cell.borrow_mut();
        if buf.len() < len {
            buf.resize(len, 0.0);
        }
        f(&mut buf[..len])
    })
}

/// The larger of `a` and `b`, where `b` is never NaN: a compare and select, which is one `maxps` instruction where
/// `f32::max` takes three (it must also pass a NaN `b` over). A NaN `a` is skipped.
#[inline(always)]
fn max_not_nan(a: f32, b: f32) -> f32 {
    if a > b {
        a
    } else {
        b
    }
}

/// Adds `log2(e)·bias` to one row of base-2 scores (when there is a bias) and returns `max(init, max of the row)`.
/// The maximum runs in eight interleaved lanes, so the loop vectorises; NaN scores are skipped, so it does not
/// depend on the order and equals the sequential fold.
#[inline(always)]
fn biased_row_max(row: &mut [f32], bias_row: Option<&[f32]>, init: f32) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; 8];
    let mut tail = init;
    match bias_row {
        Some(bias_row) => {
            let (mut chunks, mut bias_chunks) = (row.chunks_exact_mut(8), bias_row.chunks_exact(8));
            for (chunk, bias) in (&mut chunks).zip(&mut bias_chunks) {
                for ((lane, x), &b) in lanes.iter_mut().zip(chunk).zip(bias) {
                    *x = b.mul_add(LOG2_E, *x);
                    *lane = max_not_nan(*x, *lane);
                }
            }
            for (x, &b) in chunks
                .into_remainder()
                .iter_mut()
                .zip(bias_chunks.remainder())
            {
                *x = b.mul_add(LOG2_E, *x);
                tail = max_not_nan(*x, tail);
            }
        }
        None => {
            let mut chunks = row.chunks_exact(8);
            for chunk in &mut chunks {
                for (lane, &x) in lanes.iter_mut().zip(chunk) {
                    *lane = max_not_nan(x, *lane);
                }
            }
            for &x in chunks.remainder() {
                tail = max_not_nan(x, tail);
            }
        }
    }
    let [a, b, c, d, e, f, g, h] = lanes;
    let m = max_not_nan;
    m(m(m(m(a, e), m(c, g)), m(m(b, f), m(d, h))), tail)
}

/// Replaces the base-2 scores of one row by `2^(x − m)` and returns their sum. Two loops, each of which LLVM
/// vectorises whole: the powers, then the sum in eight interleaved partial sums (a single running sum is a serial
/// chain). Fused into one loop, the eight-lane sum turns the powers into half-width code.
#[inline(always)]
fn exp2_and_sum(row: &mut [f32], m: f32) -> f32 {
    row.iter_mut().for_each(|x| *x = exp2(*x - m));
    let mut lanes = [0.0f32; 8];
    let (chunks, rest) = row.as_chunks::<8>();
    for chunk in chunks {
        lanes
            .iter_mut()
            .zip(chunk)
            .for_each(|(lane, &x)| *lane += x);
    }
    sum_lanes(lanes) + rest.iter().sum::<f32>()
}

/// The sum of eight partial sums, pairwise.
#[inline(always)]
fn sum_lanes([a, b, c, d, e, f, g, h]: [f32; 8]) -> f32 {
    ((a + e) + (c + g)) + ((b + f) + (d + h))
}

/// Forward attention: `out = softmax(scale·Q·Kᵀ + bias)·V` and the row log-sum-exp `lse` (`[BH, Lq]`).
pub fn attention_forward(
    s: &AttentionShape,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    bias: Option<&[f32]>,
    out: &mut [f32],
    lse: &mut [f32],
) -> Result<()> {
    const OP: &str = "attention_forward";
    let lengths = [q.len(), k.len(), v.len(), out.len(), lse.len()];
    let out_elems = s.check_forward_lengths(OP, lengths, bias.map(<[f32]>::len))?;
    if out_elems == 0 {
        return Ok(());
    }

    let (d, dp, lq, lk) = (s.head_dim, padded(s.head_dim), s.q_len, s.kv_len);
    let bk = forward_key_tile(lk);
    let kt_len = lk.div_ceil(bk) * d * bk;
    let tile_scratch = BQ * (d + bk + dp);
    let (out, inner) = (SharedRows::new(out), s.inner());
    lse.par_chunks_mut(lq).enumerate().for_each_init(
        Vec::new,
        |problem_scratch, (problem, lse)| {
            let (n, h) = (problem / s.heads, problem % s.heads);
            problem_scratch.resize(kt_len + lk * dp, 0.0);
            let (kt, v_rows) = problem_scratch.split_at_mut(kt_len);
            transposed_tiles_into(
                HeadRows::new(k, s.kv_row_stride, n * lk, h, d),
                lk,
                d,
                kt,
                bk,
            );
            padded_rows_into(
                HeadRows::new(v, s.kv_row_stride, n * lk, h, d),
                lk,
                d,
                v_rows,
            );
            let (kt, v) = (&*kt, &*v_rows);
            lse.par_chunks_mut(BQ).enumerate().for_each(|(tile, lse)| {
                let i0 = tile * BQ;
                let q = HeadRows::new(q, s.q_row_stride, n * lq + i0, h, d);
                // SAFETY: this task alone writes rows i0.. of head h of sequence n.
                let out = &mut unsafe { out.head_rows(inner, n * lq + i0, h, d, lse.len()) };
                with_tile_scratch(tile_scratch, |scratch| {
                    dispatch!(forward_tile(
                        s: &AttentionShape,
                        q: HeadRows,
                        kt: &[f32],
                        bk: usize,
                        v: &[f32],
                        bias: Option<&[f32]>,
                        i0: usize,
                        out: &mut HeadRowsMut,
                        lse: &mut [f32],
                        scratch: &mut [f32],
                    ))
                });
            });
        },
    );
    Ok(())
}

/// One query tile (`q`, rows `i0..`; output rows `out`) of one problem against all its keys (`kt` from [`transposed_tiles_into`] with
/// tiles of `bk` keys, `v` from [`padded_rows_into`]): online softmax over key tiles. `scratch` holds
/// `BQ·(d + bk + padded(d))` floats.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn forward_tile(
    s: &AttentionShape,
    q: HeadRows,
    kt: &[f32],
    bk: usize,
    v: &[f32],
    bias: Option<&[f32]>,
    i0: usize,
    out: &mut HeadRowsMut,
    lse: &mut [f32],
    mut scratch: &mut [f32],
) {
    let (d, dp, lk, nq) = (s.head_dim, padded(s.head_dim), s.kv_len, lse.len());
    // Scores in base 2: `scale·log2(e)` goes into the copy of Q, so the score product yields `log2(e)·scale·q·k`.
    let q_tile = take(&mut scratch, BQ * d);
    let q_scale = s.scale * LOG2_E;
    for (i, to) in q_tile.chunks_exact_mut(d).take(nq).enumerate() {
        for (to, &from) in to.iter_mut().zip(q.row(i)) {
            *to = q_scale * from;
        }
    }
    q_tile[nq * d..].fill(0.0); // the products run over whole register tiles of rows
    let q_tile = Strided::by_rows(q_tile, d);
    let scores = take(&mut scratch, BQ * bk); // the score product writes every element that is read
    let acc = take(&mut scratch, BQ * dp);
    acc.fill(0.0);
    let (mut row_max, mut new_max) = (vec![f32::NEG_INFINITY; nq], vec![0.0f32; nq]);
    let (mut row_sum, mut rescale) = (vec![0.0f32; nq], vec![0.0f32; nq]);

    for (kt, j0) in kt.chunks_exact(d * bk).zip((0..lk).step_by(bk)) {
        let nk = bk.min(lk - j0);
        let (kt, scores_out) = (Rows::new(kt, bk), Rows::new(&mut *scores, bk));
        product(nq, nk, d, q_tile, kt, scores_out, Init::Zero);
        for (i, (row, new_max)) in scores.chunks_exact_mut(bk).zip(&mut new_max).enumerate() {
            let bias_row = bias.map(|b| &b[(i0 + i) * lk + j0..][..nk]);
            *new_max = biased_row_max(&mut row[..nk], bias_row, row_max[i]);
        }
        // 2^(m − m'), 0 when the old maximum was −∞ (NaN, and unused, while a row is still fully masked).
        for (r, (&m, &new_m)) in rescale.iter_mut().zip(row_max.iter().zip(&new_max)) {
            *r = exp2(m - new_m);
        }
        for (i, (row, acc)) in scores
            .chunks_exact_mut(bk)
            .zip(acc.chunks_exact_mut(dp))
            .take(nq)
            .enumerate()
        {
            let row = &mut row[..nk];
            if new_max[i] == f32::NEG_INFINITY {
                row.fill(0.0); // every key so far is masked for this row: it adds nothing
                continue;
            }
            if rescale[i] != 1.0 {
                row_sum[i] *= rescale[i];
                acc.iter_mut().for_each(|a| *a *= rescale[i]);
            }
            row_sum[i] += exp2_and_sum(row, new_max[i]);
            row_max[i] = new_max[i];
        }
        let (p, v_tile) = (Strided::by_rows(scores, bk), Rows::new(&v[j0 * dp..], dp));
        product(
            nq,
            d,
            nk,
            p,
            v_tile,
            Rows::new(&mut *acc, dp),
            Init::Accumulate,
        );
    }

    for (i, (acc, (lse, (&m, &l)))) in acc
        .chunks_exact(dp)
        .zip(lse.iter_mut().zip(row_max.iter().zip(&row_sum)))
        .enumerate()
    {
        let out = out.row(i);
        if l > 0.0 {
            let inv = 1.0 / l;
            out.iter_mut().zip(acc).for_each(|(o, &a)| *o = a * inv);
            *lse = m * LN_2 + l.ln(); // m is in base 2
        } else {
            out.fill(0.0); // fully masked row
            *lse = f32::NEG_INFINITY;
        }
    }
}

/// Backward attention: `grad_q`, `grad_k`, `grad_v` (overwritten) from the forward's `out` and `lse` and `grad_out`.
#[allow(clippy::too_many_arguments)] // the fixed kernel signature shared with the CUDA crate
pub fn attention_backward(
    s: &AttentionShape,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    bias: Option<&[f32]>,
    out: &[f32],
    lse: &[f32],
    grad_out: &[f32],
    grad_q: &mut [f32],
    grad_k: &mut [f32],
    grad_v: &mut [f32],
) -> Result<()> {
    const OP: &str = "attention_backward";
    let lengths = [q.len(), k.len(), v.len(), out.len(), lse.len()];
    let out_elems = s.check_forward_lengths(OP, lengths, bias.map(<[f32]>::len))?;
    let gradients = [grad_out.len(), grad_q.len(), grad_k.len(), grad_v.len()];
    s.check_gradient_lengths(OP, gradients)?;
    let (kv_rows, inner) = (s.batch * s.kv_len, s.inner());
    if out_elems == 0 {
        // No queries (or no problems): dK and dV are empty sums.
        for grad in [grad_k, grad_v] {
            for row in 0..kv_rows {
                grad[row * s.kv_row_stride..][..inner].fill(0.0);
            }
        }
        return Ok(());
    }

    let (d, lq, lk, heads) = (s.head_dim, s.q_len, s.kv_len, s.heads);
    // D_i = Σ_c dO_ic·O_ic, the row correction of dS = P∘(dP − D); `delta` is laid out as `lse`.
    let mut delta = vec![0.0f32; s.problems() * lq];
    delta
        .par_iter_mut()
        .enumerate()
        .with_min_len(256)
        .for_each(|(row, delta)| {
            let (problem, i) = (row / lq, row % lq);
            let (n, h) = (problem / heads, problem % heads);
            let at = (n * lq + i) * inner + h * d;
            let (o, g) = (&out[at..][..d], &grad_out[at..][..d]);
            *delta = o.iter().zip(g).map(|(&o, &g)| o * g).sum();
        });
    let problem = |problem: usize| {
        let (n, h) = (problem / heads, problem % heads);
        Problem {
            s,
            q: HeadRows::new(q, s.q_row_stride, n * lq, h, d),
            k: HeadRows::new(k, s.kv_row_stride, n * lk, h, d),
            v: HeadRows::new(v, s.kv_row_stride, n * lk, h, d),
            bias,
            lse: &lse[problem * lq..][..lq],
            delta: &delta[problem * lq..][..lq],
            grad_out: HeadRows::new(grad_out, inner, n * lq, h, d),
        }
    };

    let (dp, lq_padded, key_tiles) = (padded(d), lq.div_ceil(MR) * MR, lk.div_ceil(BK));
    let problem_scratch = 2 * lq_padded * dp + lk * dp + key_tiles * lq_padded * dp;
    let tile_scratch = 2 * d * BK + 2 * BK * dp + 2 * BQ * BK;
    let (grad_q, grad_k, grad_v) = (
        SharedRows::new(grad_q),
        SharedRows::new(grad_k),
        SharedRows::new(grad_v),
    );
    (0..s.problems())
        .into_par_iter()
        .for_each_init(Vec::new, |buffer, index| {
            let p = &problem(index);
            let (n, h) = (index / heads, index % heads);
            buffer.resize(problem_scratch, 0.0);
            let mut buffer = &mut buffer[..];
            let q_rows = take(&mut buffer, lq_padded * dp);
            let grad_out_rows = take(&mut buffer, lq_padded * dp);
            let k_rows = take(&mut buffer, lk * dp);
            padded_rows_into(p.q, lq, d, q_rows);
            padded_rows_into(p.grad_out, lq, d, grad_out_rows);
            padded_rows_into(p.k, lk, d, k_rows);
            let (q_rows, grad_out_rows, k_rows) = (&*q_rows, &*grad_out_rows, &*k_rows);
            // dQ's share of each key tile (every element is written), summed over the tiles in order below.
            let grad_q_parts = buffer;
            grad_q_parts
                .par_chunks_mut(lq_padded * dp)
                .enumerate()
                .for_each(|(tile, grad_q_part)| {
                    let j0 = tile * BK;
                    let nk = BK.min(lk - j0);
                    let stride = s.kv_row_stride;
                    // SAFETY: this task alone writes key rows j0..j0 + nk of head h of sequence n.
                    let grad_k = &mut unsafe { grad_k.head_rows(stride, n * lk + j0, h, d, nk) };
                    // SAFETY: as for grad_k.
                    let grad_v = &mut unsafe { grad_v.head_rows(stride, n * lk + j0, h, d, nk) };
                    with_tile_scratch(tile_scratch, |scratch| {
                        dispatch!(key_tile_grads(
                            p: &Problem,
                            q_rows: &[f32],
                            grad_out_rows: &[f32],
                            k_rows: &[f32],
                            j0: usize,
                            nk: usize,
                            grad_k: &mut HeadRowsMut,
                            grad_v: &mut HeadRowsMut,
                            grad_q_part: &mut [f32],
                            scratch: &mut [f32],
                        ))
                    });
                });
            // SAFETY: this task alone writes the query rows of head h of sequence n.
            let mut grad_q = unsafe { grad_q.head_rows(s.q_row_stride, n * lq, h, d, lq) };
            let mut parts = grad_q_parts.chunks_exact(lq_padded * dp);
            let first = parts.next().expect("kv_len > 0 when q_len > 0");
            for (i, row) in first.chunks_exact(dp).take(lq).enumerate() {
                grad_q.row(i).copy_from_slice(&row[..d]);
            }
            for part in parts {
                for (i, row) in part.chunks_exact(dp).take(lq).enumerate() {
                    grad_q
                        .row(i)
                        .iter_mut()
                        .zip(row)
                        .for_each(|(g, &x)| *g += x);
                }
            }
            for i in 0..lq {
                grad_q.row(i).iter_mut().for_each(|g| *g *= s.scale);
            }
        });
    Ok(())
}

/// The operands of one (sequence, head) problem that the backward tiles read.
struct Problem<'a> {
    s: &'a AttentionShape,
    q: HeadRows<'a>,
    k: HeadRows<'a>,
    v: HeadRows<'a>,
    bias: Option<&'a [f32]>,
    lse: &'a [f32],
    delta: &'a [f32],
    grad_out: HeadRows<'a>,
}

/// Replaces the raw products `s = q·k` in the first `nq` rows (stride `BK`) of `p` (query rows `i0..`, key rows
/// `j0..j0 + nk`) by `P = exp(scale·s + bias − lse)` and of `dp` (holding `dO·Vᵀ`) by `dS = P∘(dP − D)`, in one pass.
/// Rows with `lse = −∞` (fully masked) get `P = dS = 0`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn probabilities_and_score_grads(
    pr: &Problem,
    p: &mut [f32],
    dp: &mut [f32],
    i0: usize,
    j0: usize,
    nq: usize,
    nk: usize,
) {
    // In base 2: P = 2^(log2(e)·(scale·s + bias − lse)), one fused multiply-add per score before the power.
    let (scale, lk) = (pr.s.scale * LOG2_E, pr.s.kv_len);
    for (i, (p_row, dp_row)) in p
        .chunks_exact_mut(BK)
        .zip(dp.chunks_exact_mut(BK))
        .take(nq)
        .enumerate()
    {
        let (p_row, dp_row) = (&mut p_row[..nk], &mut dp_row[..nk]);
        let (lse, delta) = (pr.lse[i0 + i], pr.delta[i0 + i]);
        if lse == f32::NEG_INFINITY {
            p_row.fill(0.0);
            dp_row.fill(0.0);
            continue;
        }
        let minus_lse = -LOG2_E * lse;
        match pr.bias {
            Some(bias) => {
                let bias_row = &bias[(i0 + i) * lk + j0..][..nk];
                for ((p, dp), &b) in p_row.iter_mut().zip(dp_row.iter_mut()).zip(bias_row) {
                    *p = exp2(p.mul_add(scale, b.mul_add(LOG2_E, minus_lse)));
                    *dp = *p * (*dp - delta);
                }
            }
            None => {
                for (p, dp) in p_row.iter_mut().zip(dp_row.iter_mut()) {
                    *p = exp2(p.mul_add(scale, minus_lse));
                    *dp = *p * (*dp - delta);
                }
            }
        }
    }
}

/// All three gradients' shares of the key rows `j0..` (one key tile), over every query tile in order:
/// `dV = Σ_i Pᵀ·dO`, `dK = scale·Σ_i dSᵀ·Q` (written to `grad_k`, `grad_v`) and `dS·K` for every query row (written
/// to `grad_q_part`, stride `padded(d)`, unscaled). `q_rows`, `grad_out_rows` and `k_rows` are written by
/// [`padded_rows_into`].
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn key_tile_grads(
    pr: &Problem,
    q_rows: &[f32],
    grad_out_rows: &[f32],
    k_rows: &[f32],
    j0: usize,
    nk: usize,
    grad_k: &mut HeadRowsMut,
    grad_v: &mut HeadRowsMut,
    grad_q_part: &mut [f32],
    mut scratch: &mut [f32],
) {
    let (d, dp, lq) = (pr.s.head_dim, padded(pr.s.head_dim), pr.s.q_len);
    let (kt, vt) = (take(&mut scratch, d * BK), take(&mut scratch, d * BK));
    transpose_into(pr.k.skip_rows(j0), nk, kt, BK);
    transpose_into(pr.v.skip_rows(j0), nk, vt, BK);
    let (kt, vt) = (&*kt, &*vt);
    // The first query tile overwrites dK and dV, the score products write every element of P and dS that is read.
    let (dk, dv) = (take(&mut scratch, BK * dp), take(&mut scratch, BK * dp));
    let (p, ds) = (take(&mut scratch, BQ * BK), take(&mut scratch, BQ * BK));
    for i0 in (0..lq).step_by(BQ) {
        let nq = BQ.min(lq - i0);
        let (q, grad_out) = (&q_rows[i0 * dp..], &grad_out_rows[i0 * dp..]);
        let (q_by_rows, grad_out_by_rows) =
            (Strided::by_rows(q, dp), Strided::by_rows(grad_out, dp));
        product(
            nq,
            nk,
            d,
            q_by_rows,
            Rows::new(kt, BK),
            Rows::new(&mut *p, BK),
            Init::Zero,
        );
        product(
            nq,
            nk,
            d,
            grad_out_by_rows,
            Rows::new(vt, BK),
            Rows::new(&mut *ds, BK),
            Init::Zero,
        );
        probabilities_and_score_grads(pr, p, ds, i0, j0, nq, nk);
        let init = if i0 == 0 {
            Init::Zero
        } else {
            Init::Accumulate
        };
        let (p_by_columns, ds_by_columns) =
            (Strided::by_columns(p, BK), Strided::by_columns(ds, BK));
        product(
            nk,
            d,
            nq,
            p_by_columns,
            Rows::new(grad_out, dp),
            Rows::new(&mut *dv, dp),
            init,
        );
        product(
            nk,
            d,
            nq,
            ds_by_columns,
            Rows::new(q, dp),
            Rows::new(&mut *dk, dp),
            init,
        );
        let (k_tile, grad_q_rows) = (
            Rows::new(&k_rows[j0 * dp..], dp),
            Rows::new(&mut grad_q_part[i0 * dp..], dp),
        );
        product(
            nq,
            d,
            nk,
            Strided::by_rows(ds, BK),
            k_tile,
            grad_q_rows,
            Init::Zero,
        );
    }
    for (j, (dk, dv)) in dk
        .chunks_exact(dp)
        .zip(dv.chunks_exact(dp))
        .take(nk)
        .enumerate()
    {
        grad_k
            .row(j)
            .iter_mut()
            .zip(dk)
            .for_each(|(g, &x)| *g = pr.s.scale * x);
        grad_v.row(j).copy_from_slice(&dv[..d]);
    }
}
