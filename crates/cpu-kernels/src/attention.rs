//! Scaled dot-product attention for `BH` independent (batch·head) problems, in the blocked online-softmax form of
//! FlashAttention (Dao et al., 2022; backward as in FlashAttention-2, Dao, 2023).
//!
//! Math, per problem: `S = scale·Q·Kᵀ + bias` (`[Lq, Lk]`), `P = softmax_rows(S)`, `O = P·V`,
//! `lse_i = ln Σ_j exp(S_ij)`. Backward with `dO`: `D_i = Σ_c dO_ic·O_ic`, `P_ij = exp(S_ij − lse_i)`,
//! `dP = dO·Vᵀ`, `dS = P∘(dP − D)`, `dQ = scale·dS·K`, `dK = scale·dSᵀ·Q`, `dV = Pᵀ·dO`.
//!
//! Loop structure: the query rows are cut into tiles of `BQ`, the key/value rows into tiles of `BK`; only a
//! `BQ × BK` block of scores exists at a time. Forward, one task per (problem, query tile): for each key tile,
//! `S_tile = Q_tile·K_tileᵀ`, then per row the running maximum `m`, running sum `l` and unnormalised output are
//! rescaled by `exp(m_old − m_new)` and extended by `exp(S − m_new)·V_tile`; at the end `O = acc / l`,
//! `lse = m + ln l`. Backward recomputes `P` from `lse` tile by tile in two passes without atomics: one task per
//! (problem, query tile) accumulates `dQ`, one task per (problem, key tile) accumulates `dK` and `dV`.
//!
//! Masking: `bias` (`[Lq, Lk]`, shared by all problems) may hold −∞. A query row whose scores are all −∞ attends
//! to nothing: its output is 0, its `lse` is −∞, and it contributes no gradient (no NaN anywhere).
//!
//! Inner loops, written so LLVM vectorises them: each problem's `K` (and, for the backward, `V`) is transposed once
//! into `d × BK` tiles shared by all its query tiles, so the innermost loop of a score tile runs over `BK` contiguous
//! keys; the weighted row sums (`P·V`, `dS·K`, `Pᵀ·dO`, `dSᵀ·Q`) take two output rows at a time and keep 2 × 32
//! output columns in registers over a whole tile (`add_weighted_rows_2`), both with explicit fused multiply-adds;
//! `exp` is the vectorisable [`crate::math::exp_fused`] (its polynomial in fused multiply-adds). On x86-64 the tile routines are also compiled for AVX2 + FMA and
//! picked at run time (`dispatch.rs`); both builds give bit-identical results.

use std::borrow::Cow;

use rayon::prelude::*;

use crate::dispatch::dispatch;
use crate::error::{check_len, KernelError, Result};
use crate::math::exp_fused as exp;

/// Query rows per tile (and per forward / dQ task).
const BQ: usize = 32;
/// Key/value rows per tile (and per dK/dV task).
const BK: usize = 64;

/// The shape of an attention call: `q [batch_heads, q_len, head_dim]`, `k, v [batch_heads, kv_len, head_dim]`.
#[derive(Clone, Copy, Debug)]
pub struct AttentionShape {
    pub batch_heads: usize,
    pub q_len: usize,
    pub kv_len: usize,
    pub head_dim: usize,
    pub scale: f32,
}

impl AttentionShape {
    /// Checks the shape and returns the lengths of `q`/`out` and of `k`/`v`.
    fn validate(&self, op: &'static str) -> Result<(usize, usize)> {
        let overflow = || KernelError::new(op, format!("shape {self:?} overflows usize"));
        if self.head_dim == 0 {
            return Err(KernelError::new(op, "head_dim is 0"));
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
        let rows = |len: usize| {
            self.batch_heads
                .checked_mul(len)
                .and_then(|r| r.checked_mul(self.head_dim))
        };
        let q_elems = rows(self.q_len).ok_or_else(overflow)?;
        let kv_elems = rows(self.kv_len).ok_or_else(overflow)?;
        self.q_len.checked_mul(self.kv_len).ok_or_else(overflow)?;
        Ok((q_elems, kv_elems))
    }
}

/// Writes the `rows × d` tile `src` transposed into `dst` (`d × BK`), zero-filling columns `rows..BK`.
#[inline(always)]
fn transpose_into(src: &[f32], d: usize, dst: &mut [f32]) {
    dst.fill(0.0);
    for (j, row) in src.chunks_exact(d).enumerate() {
        for (p, &value) in row.iter().enumerate() {
            dst[p * BK + j] = value;
        }
    }
}

/// The `len × d` rows of one problem as consecutive transposed tiles: tile `t` (`d × BK`, at `t·d·BK`) holds rows
/// `t·BK..` as [`transpose_into`] writes them. Made once per problem and read by all its query tiles.
fn transposed_tiles(rows: &[f32], d: usize) -> Vec<f32> {
    let tiles = (rows.len() / d).div_ceil(BK);
    let mut out = vec![0.0f32; tiles * d * BK];
    for (src, dst) in rows.chunks(BK * d).zip(out.chunks_exact_mut(d * BK)) {
        transpose_into(src, d, dst);
    }
    out
}

/// Score-tile columns per register block of [`tile_products`]: two rows × 32 columns are eight 8-lane accumulators.
const BJ: usize = 32;

/// `out[i][j] = Σ_p a[i, p]·bt[p, j]` for the `out.len()` rows of `a` (`· × d`) against `bt` (`d × BK`), for the
/// columns `j < nk` (a ragged last key tile computes only the register blocks it needs; later columns keep stale
/// values and are never read). Rows go in pairs so each loaded slice of `bt` feeds two rows' fused multiply-adds;
/// every element is still summed over `p` in order, so pairing does not change the result.
#[inline(always)]
fn tile_products(a: &[f32], d: usize, bt: &[f32], nk: usize, out: &mut [[f32; BK]]) {
    let mut out_pairs = out.chunks_exact_mut(2);
    let mut a_pairs = a.chunks_exact(2 * d);
    for (rows, a_rows) in (&mut out_pairs).zip(&mut a_pairs) {
        let (a0, a1) = a_rows.split_at(d);
        for j0 in (0..nk).step_by(BJ) {
            let (mut acc0, mut acc1) = ([0.0f32; BJ], [0.0f32; BJ]);
            for ((&x0, &x1), bt_row) in a0.iter().zip(a1).zip(bt.chunks_exact(BK)) {
                let b: &[f32; BJ] = bt_row[j0..j0 + BJ].try_into().expect("BJ divides BK");
                for ((c0, c1), &b) in acc0.iter_mut().zip(acc1.iter_mut()).zip(b) {
                    *c0 = x0.mul_add(b, *c0);
                    *c1 = x1.mul_add(b, *c1);
                }
            }
            rows[0][j0..j0 + BJ].copy_from_slice(&acc0);
            rows[1][j0..j0 + BJ].copy_from_slice(&acc1);
        }
    }
    for (row, a_row) in out_pairs
        .into_remainder()
        .iter_mut()
        .zip(a_pairs.remainder().chunks_exact(d))
    {
        let mut acc = [0.0f32; BK];
        for (&a_ip, bt_row) in a_row.iter().zip(bt.chunks_exact(BK)) {
            for (acc, &b) in acc.iter_mut().zip(bt_row) {
                *acc = a_ip.mul_add(b, *acc);
            }
        }
        *row = acc;
    }
}

/// Output columns per register block of [`add_weighted_rows`].
const DC: usize = 32;

/// `d` rounded up to whole register blocks: the row stride of padded tiles.
fn padded(d: usize) -> usize {
    d.div_ceil(DC) * DC
}

/// The `· × d` rows `src` with row stride `padded(d)` (extra columns zero); borrowed as they are when `d` already is
/// a whole number of register blocks.
fn padded_rows(src: &[f32], d: usize) -> Cow<'_, [f32]> {
    let dp = padded(d);
    if dp == d {
        return Cow::Borrowed(src);
    }
    let mut dst = vec![0.0f32; src.len() / d * dp];
    for (dst, src) in dst.chunks_exact_mut(dp).zip(src.chunks_exact(d)) {
        dst[..d].copy_from_slice(src);
    }
    Cow::Owned(dst)
}

/// `acc[c] += Σ_r w_r·rows[r, c]` for `c < acc.len()`, with `rows` padded to stride `padded(acc.len())`.
/// Each block of `DC` columns is summed in registers over all rows (four independent 8-lane chains), then added
/// once: accumulating into `acc` row by row instead would chain every addition through memory.
#[inline(always)]
fn add_weighted_rows(weights: impl Iterator<Item = f32> + Clone, rows: &[f32], acc: &mut [f32]) {
    let dp = padded(acc.len());
    for (block, acc) in acc.chunks_mut(DC).enumerate() {
        let mut sum = [0.0f32; DC];
        for (w, row) in weights.clone().zip(rows.chunks_exact(dp)) {
            let row: &[f32; DC] = row[block * DC..][..DC]
                .try_into()
                .expect("rows are padded to whole blocks");
            for (s, &x) in sum.iter_mut().zip(row) {
                *s = w.mul_add(x, *s);
            }
        }
        for (a, s) in acc.iter_mut().zip(sum) {
            *a += s;
        }
    }
}

/// [`add_weighted_rows`] for two weight sequences and two accumulators at once: each loaded block of `rows` feeds
/// both (eight independent 8-lane chains instead of four), and every element is summed exactly as there.
#[inline(always)]
fn add_weighted_rows_2(
    weights: [impl Iterator<Item = f32> + Clone; 2],
    rows: &[f32],
    acc: [&mut [f32]; 2],
) {
    let [w0, w1] = weights;
    let [acc0, acc1] = acc;
    let dp = padded(acc0.len());
    for (block, (acc0, acc1)) in acc0.chunks_mut(DC).zip(acc1.chunks_mut(DC)).enumerate() {
        let (mut sum0, mut sum1) = ([0.0f32; DC], [0.0f32; DC]);
        for ((w0, w1), row) in w0.clone().zip(w1.clone()).zip(rows.chunks_exact(dp)) {
            let row: &[f32; DC] = row[block * DC..][..DC]
                .try_into()
                .expect("rows are padded to whole blocks");
            for ((s0, s1), &x) in sum0.iter_mut().zip(sum1.iter_mut()).zip(row) {
                *s0 = w0.mul_add(x, *s0);
                *s1 = w1.mul_add(x, *s1);
            }
        }
        for (a, s) in acc0.iter_mut().zip(sum0) {
            *a += s;
        }
        for (a, s) in acc1.iter_mut().zip(sum1) {
            *a += s;
        }
    }
}

/// Rows `i < j` of the `· × d` matrix `m`, borrowed together.
#[inline(always)]
fn two_rows(m: &mut [f32], d: usize, i: usize, j: usize) -> [&mut [f32]; 2] {
    let (head, tail) = m.split_at_mut(j * d);
    [&mut head[i * d..][..d], &mut tail[..d]]
}

/// `out_i += Σ_j w(i, j)·rows[j]` for the rows `i` listed in `which` (ascending), two at a time; `w(i, ·)` yields
/// row `i`'s weights and `rows` is padded to stride `padded(d)`.
#[inline(always)]
fn add_weighted_rows_to<W: Iterator<Item = f32> + Clone>(
    which: &[usize],
    w: impl Fn(usize) -> W,
    rows: &[f32],
    out: &mut [f32],
    d: usize,
) {
    let mut pairs = which.chunks_exact(2);
    for pair in &mut pairs {
        let (i, j) = (pair[0], pair[1]);
        add_weighted_rows_2([w(i), w(j)], rows, two_rows(out, d, i, j));
    }
    if let [i] = *pairs.remainder() {
        add_weighted_rows(w(i), rows, &mut out[i * d..][..d]);
    }
}

/// `max(init, max x)` over eight interleaved lanes, so the comparisons vectorise; the maximum does not depend on the
/// order (NaNs are skipped either way), so this equals the sequential fold.
#[inline(always)]
fn lane_max(init: f32, x: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; 8];
    let chunks = x.chunks_exact(8);
    let tail = chunks.remainder().iter().copied().fold(init, f32::max);
    for chunk in chunks {
        for (lane, &v) in lanes.iter_mut().zip(chunk) {
            *lane = lane.max(v);
        }
    }
    lanes.iter().copied().fold(tail, f32::max)
}

/// `Σ x` in eight interleaved partial sums, so the additions vectorise (a single running sum is a serial chain).
#[inline(always)]
fn lane_sum(x: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    let chunks = x.chunks_exact(8);
    let tail: f32 = chunks.remainder().iter().sum();
    for chunk in chunks {
        for (lane, &v) in lanes.iter_mut().zip(chunk) {
            *lane += v;
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// Turns raw products `s = q·k` of query rows `i0..` and key rows `j0..j0 + nk` into scores `scale·s + bias`.
#[inline(always)]
fn to_scores(
    s: &mut [[f32; BK]],
    nk: usize,
    scale: f32,
    bias: Option<&[f32]>,
    i0: usize,
    j0: usize,
    kv_len: usize,
) {
    for (i, row) in s.iter_mut().enumerate() {
        let row = &mut row[..nk];
        match bias {
            Some(bias) => {
                let bias_row = &bias[(i0 + i) * kv_len + j0..][..nk];
                for (x, &b) in row.iter_mut().zip(bias_row) {
                    *x = *x * scale + b;
                }
            }
            None => row.iter_mut().for_each(|x| *x *= scale),
        }
    }
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
    let (q_elems, kv_elems) = s.validate(OP)?;
    check_len(OP, "q", q.len(), q_elems)?;
    check_len(OP, "k", k.len(), kv_elems)?;
    check_len(OP, "v", v.len(), kv_elems)?;
    check_len(OP, "out", out.len(), q_elems)?;
    check_len(OP, "lse", lse.len(), s.batch_heads * s.q_len)?;
    if let Some(bias) = bias {
        check_len(OP, "bias", bias.len(), s.q_len * s.kv_len)?;
    }
    if q_elems == 0 {
        return Ok(());
    }

    let (d, lq, lk) = (s.head_dim, s.q_len, s.kv_len);
    out.par_chunks_mut(lq * d)
        .zip(lse.par_chunks_mut(lq))
        .enumerate()
        .for_each(|(bh, (out, lse))| {
            let kt = &transposed_tiles(&k[bh * lk * d..][..lk * d], d)[..];
            let v = &padded_rows(&v[bh * lk * d..][..lk * d], d)[..];
            out.par_chunks_mut(BQ * d)
                .zip(lse.par_chunks_mut(BQ))
                .enumerate()
                .for_each(|(tile, (out, lse))| {
                    let i0 = tile * BQ;
                    let q = &q[(bh * lq + i0) * d..][..out.len()];
                    dispatch!(forward_tile(
                        s: &AttentionShape,
                        q: &[f32],
                        kt: &[f32],
                        v: &[f32],
                        bias: Option<&[f32]>,
                        i0: usize,
                        out: &mut [f32],
                        lse: &mut [f32],
                    ));
                });
        });
    Ok(())
}

/// One query tile (`q`, rows `i0..`) of one problem against all its keys (`kt` from [`transposed_tiles`], `v` from
/// [`padded_rows`]): online softmax over key tiles.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn forward_tile(
    s: &AttentionShape,
    q: &[f32],
    kt: &[f32],
    v: &[f32],
    bias: Option<&[f32]>,
    i0: usize,
    out: &mut [f32],
    lse: &mut [f32],
) {
    let (d, dp, lk, nq) = (s.head_dim, padded(s.head_dim), s.kv_len, lse.len());
    let mut scores = vec![[0.0f32; BK]; nq];
    let mut row_max = vec![f32::NEG_INFINITY; nq];
    let mut row_sum = vec![0.0f32; nq];
    let mut attending = Vec::with_capacity(nq);
    out.fill(0.0);

    for (kt, j0) in kt.chunks_exact(d * BK).zip((0..lk).step_by(BK)) {
        let nk = BK.min(lk - j0);
        tile_products(q, d, kt, nk, &mut scores);
        to_scores(&mut scores, nk, s.scale, bias, i0, j0, lk);
        attending.clear();
        for (i, (row, acc)) in scores.iter_mut().zip(out.chunks_exact_mut(d)).enumerate() {
            let row = &mut row[..nk];
            let new_max = lane_max(row_max[i], row);
            if new_max == f32::NEG_INFINITY {
                continue; // every key so far is masked for this row
            }
            let rescale = exp(row_max[i] - new_max); // 0 when the old maximum was −∞
            if rescale != 1.0 {
                row_sum[i] *= rescale;
                acc.iter_mut().for_each(|a| *a *= rescale);
            }
            row.iter_mut().for_each(|p| *p = exp(*p - new_max));
            row_sum[i] += lane_sum(row);
            row_max[i] = new_max;
            attending.push(i);
        }
        let v_tile = &v[j0 * dp..(j0 + nk) * dp];
        add_weighted_rows_to(
            &attending,
            |i| scores[i][..nk].iter().copied(),
            v_tile,
            out,
            d,
        );
    }

    for ((acc, lse), (&m, &l)) in out
        .chunks_exact_mut(d)
        .zip(lse.iter_mut())
        .zip(row_max.iter().zip(&row_sum))
    {
        if l > 0.0 {
            let inv = 1.0 / l;
            acc.iter_mut().for_each(|a| *a *= inv);
            *lse = m + l.ln();
        } else {
            *lse = f32::NEG_INFINITY; // fully masked row: output stays 0
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
    let (q_elems, kv_elems) = s.validate(OP)?;
    check_len(OP, "q", q.len(), q_elems)?;
    check_len(OP, "k", k.len(), kv_elems)?;
    check_len(OP, "v", v.len(), kv_elems)?;
    check_len(OP, "out", out.len(), q_elems)?;
    check_len(OP, "lse", lse.len(), s.batch_heads * s.q_len)?;
    check_len(OP, "grad_out", grad_out.len(), q_elems)?;
    check_len(OP, "grad_q", grad_q.len(), q_elems)?;
    check_len(OP, "grad_k", grad_k.len(), kv_elems)?;
    check_len(OP, "grad_v", grad_v.len(), kv_elems)?;
    if let Some(bias) = bias {
        check_len(OP, "bias", bias.len(), s.q_len * s.kv_len)?;
    }
    grad_k.fill(0.0);
    grad_v.fill(0.0);
    if q_elems == 0 {
        return Ok(());
    }

    let (d, lq, lk) = (s.head_dim, s.q_len, s.kv_len);
    // D_i = Σ_c dO_ic·O_ic, the row correction of dS = P∘(dP − D).
    let mut delta = vec![0.0f32; s.batch_heads * lq];
    delta
        .par_iter_mut()
        .zip(out.par_chunks(d).zip(grad_out.par_chunks(d)))
        .with_min_len(256)
        .for_each(|(delta, (o, g))| *delta = o.iter().zip(g).map(|(&o, &g)| o * g).sum());
    let problem = |bh: usize| Problem {
        s,
        q: &q[bh * lq * d..][..lq * d],
        k: &k[bh * lk * d..][..lk * d],
        v: &v[bh * lk * d..][..lk * d],
        bias,
        lse: &lse[bh * lq..][..lq],
        delta: &delta[bh * lq..][..lq],
        grad_out: &grad_out[bh * lq * d..][..lq * d],
    };

    grad_q
        .par_chunks_mut(lq * d)
        .enumerate()
        .for_each(|(bh, grad_q)| {
            let p = &problem(bh);
            let (kt, vt) = (&transposed_tiles(p.k, d)[..], &transposed_tiles(p.v, d)[..]);
            let k_rows = &padded_rows(p.k, d)[..];
            grad_q
                .par_chunks_mut(BQ * d)
                .enumerate()
                .for_each(|(tile, grad_q)| {
                    let i0 = tile * BQ;
                    dispatch!(grad_q_tile(
                        p: &Problem,
                        kt: &[f32],
                        vt: &[f32],
                        k_rows: &[f32],
                        i0: usize,
                        grad_q: &mut [f32],
                    ));
                });
        });
    grad_k
        .par_chunks_mut(lk * d)
        .zip(grad_v.par_chunks_mut(lk * d))
        .enumerate()
        .for_each(|(bh, (grad_k, grad_v))| {
            let p = &problem(bh);
            let (q_rows, grad_out_rows) =
                (&padded_rows(p.q, d)[..], &padded_rows(p.grad_out, d)[..]);
            grad_k
                .par_chunks_mut(BK * d)
                .zip(grad_v.par_chunks_mut(BK * d))
                .enumerate()
                .for_each(|(tile, (grad_k, grad_v))| {
                    let j0 = tile * BK;
                    dispatch!(grad_kv_tile(
                        p: &Problem,
                        q_rows: &[f32],
                        grad_out_rows: &[f32],
                        j0: usize,
                        grad_k: &mut [f32],
                        grad_v: &mut [f32],
                    ));
                });
        });
    Ok(())
}

/// The slices of one (batch·head) problem that the backward tiles read.
struct Problem<'a> {
    s: &'a AttentionShape,
    q: &'a [f32],
    k: &'a [f32],
    v: &'a [f32],
    bias: Option<&'a [f32]>,
    lse: &'a [f32],
    delta: &'a [f32],
    grad_out: &'a [f32],
}

/// Replaces the products in `p` (query rows `i0..`, key rows `j0..j0 + nk`) by `P = exp(S − lse)` and `dp`
/// (holding `dO·Vᵀ`) by `dS = P∘(dP − D)`. Rows with `lse = −∞` (fully masked) get `P = dS = 0`.
#[inline(always)]
fn probabilities_and_score_grads(
    pr: &Problem,
    p: &mut [[f32; BK]],
    dp: &mut [[f32; BK]],
    i0: usize,
    j0: usize,
    nk: usize,
) {
    to_scores(p, nk, pr.s.scale, pr.bias, i0, j0, pr.s.kv_len);
    for (i, (p_row, dp_row)) in p.iter_mut().zip(dp.iter_mut()).enumerate() {
        let (lse, delta) = (pr.lse[i0 + i], pr.delta[i0 + i]);
        for (p, dp) in p_row[..nk].iter_mut().zip(&mut dp_row[..nk]) {
            *p = if lse == f32::NEG_INFINITY {
                0.0
            } else {
                exp(*p - lse)
            };
            *dp = *p * (*dp - delta);
        }
    }
}

/// `dQ` of query rows `i0..`: `scale·Σ_j dS_ij·k_j` over all key tiles (`kt`, `vt` from [`transposed_tiles`] of
/// `K` and `V`, `k_rows` from [`padded_rows`] of `K`).
#[inline(always)]
fn grad_q_tile(
    pr: &Problem,
    kt: &[f32],
    vt: &[f32],
    k_rows: &[f32],
    i0: usize,
    grad_q: &mut [f32],
) {
    let (d, dp, lk, scale) = (
        pr.s.head_dim,
        padded(pr.s.head_dim),
        pr.s.kv_len,
        pr.s.scale,
    );
    let nq = grad_q.len() / d;
    let (q, grad_out) = (&pr.q[i0 * d..][..nq * d], &pr.grad_out[i0 * d..][..nq * d]);
    let (mut p, mut ds) = (vec![[0.0f32; BK]; nq], vec![[0.0f32; BK]; nq]);
    let every_row: Vec<usize> = (0..nq).collect();
    grad_q.fill(0.0);
    for ((kt, vt), j0) in kt
        .chunks_exact(d * BK)
        .zip(vt.chunks_exact(d * BK))
        .zip((0..lk).step_by(BK))
    {
        let nk = BK.min(lk - j0);
        tile_products(q, d, kt, nk, &mut p);
        tile_products(grad_out, d, vt, nk, &mut ds);
        probabilities_and_score_grads(pr, &mut p, &mut ds, i0, j0, nk);
        add_weighted_rows_to(
            &every_row,
            |i| ds[i][..nk].iter().map(move |&x| x * scale),
            &k_rows[j0 * dp..(j0 + nk) * dp],
            grad_q,
            d,
        );
    }
}

/// `dK`, `dV` of key rows `j0..`: `scale·Σ_i dS_ij·q_i` and `Σ_i P_ij·dO_i` over all query tiles (`q_rows`,
/// `grad_out_rows` from [`padded_rows`]).
#[inline(always)]
fn grad_kv_tile(
    pr: &Problem,
    q_rows: &[f32],
    grad_out_rows: &[f32],
    j0: usize,
    grad_k: &mut [f32],
    grad_v: &mut [f32],
) {
    let (d, dp, lq, scale) = (pr.s.head_dim, padded(pr.s.head_dim), pr.s.q_len, pr.s.scale);
    let nk = grad_k.len() / d;
    let (mut kt, mut vt) = (vec![0.0f32; d * BK], vec![0.0f32; d * BK]);
    transpose_into(&pr.k[j0 * d..(j0 + nk) * d], d, &mut kt);
    transpose_into(&pr.v[j0 * d..(j0 + nk) * d], d, &mut vt);
    let (mut p, mut ds) = (vec![[0.0f32; BK]; BQ], vec![[0.0f32; BK]; BQ]);
    let every_key: Vec<usize> = (0..nk).collect();
    for i0 in (0..lq).step_by(BQ) {
        let nq = BQ.min(lq - i0);
        let (q, grad_out) = (&pr.q[i0 * d..][..nq * d], &pr.grad_out[i0 * d..][..nq * d]);
        let (p, ds) = (&mut p[..nq], &mut ds[..nq]);
        tile_products(q, d, &kt, nk, p);
        tile_products(grad_out, d, &vt, nk, ds);
        probabilities_and_score_grads(pr, p, ds, i0, j0, nk);
        let (p, ds) = (&*p, &*ds);
        add_weighted_rows_to(
            &every_key,
            |j| p.iter().map(move |row| row[j]),
            &grad_out_rows[i0 * dp..(i0 + nq) * dp],
            grad_v,
            d,
        );
        add_weighted_rows_to(
            &every_key,
            |j| ds.iter().map(move |row| row[j] * scale),
            &q_rows[i0 * dp..(i0 + nq) * dp],
            grad_k,
            d,
        );
    }
}
