//! Blocked attention against a naive f64 reference that materialises the whole score matrix, and its backward
//! against finite differences of that reference.

mod common;

use common::{assert_close, finite_differences, to_f64, values, weighted_sum, with_threads};
use diffuse_cpu_kernels::attention::{attention_backward, attention_forward, AttentionShape};
use proptest::prelude::*;

/// Where element `(n, l, h, c)` of an operand with `len` rows per sequence and row stride `stride` lies.
fn at(
    s: &AttentionShape,
    len: usize,
    stride: usize,
    (n, l, h, c): (usize, usize, usize, usize),
) -> usize {
    (n * len + l) * stride + h * s.head_dim + c
}

/// Naive f64 attention over the head-interleaved operands: returns `(out, lse)`, `out` dense (N, Lq, H·d) and `lse`
/// (N, H, Lq); fully masked rows give 0 and −∞.
fn reference(
    s: &AttentionShape,
    q: &[f64],
    k: &[f64],
    v: &[f64],
    bias: Option<&[f64]>,
) -> (Vec<f64>, Vec<f64>) {
    let (lq, lk, d, inner) = (s.q_len, s.kv_len, s.head_dim, s.inner());
    let mut out = vec![0.0; s.batch * lq * inner];
    let mut lse = vec![f64::NEG_INFINITY; s.problems() * lq];
    for n in 0..s.batch {
        for h in 0..s.heads {
            for i in 0..lq {
                let scores: Vec<f64> = (0..lk)
                    .map(|j| {
                        let dot: f64 = (0..d)
                            .map(|c| {
                                q[at(s, lq, s.q_row_stride, (n, i, h, c))]
                                    * k[at(s, lk, s.kv_row_stride, (n, j, h, c))]
                            })
                            .sum();
                        dot * f64::from(s.scale) + bias.map_or(0.0, |b| b[i * lk + j])
                    })
                    .collect();
                let m = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                if m == f64::NEG_INFINITY {
                    continue;
                }
                let sum: f64 = scores.iter().map(|x| (x - m).exp()).sum();
                lse[(n * s.heads + h) * lq + i] = m + sum.ln();
                for (j, x) in scores.iter().enumerate() {
                    let p = (x - m).exp() / sum;
                    for c in 0..d {
                        out[at(s, lq, inner, (n, i, h, c))] +=
                            p * v[at(s, lk, s.kv_row_stride, (n, j, h, c))];
                    }
                }
            }
        }
    }
    (out, lse)
}

struct Case {
    s: AttentionShape,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    bias: Option<Vec<f32>>,
}

/// A causal-style mask (key j visible to query i when j ≤ i + shift) with some rows fully masked when shift < 0.
fn mask(lq: usize, lk: usize, shift: i64) -> Vec<f32> {
    (0..lq * lk)
        .map(|idx| {
            let (i, j) = ((idx / lk) as i64, (idx % lk) as i64);
            if j <= i + shift {
                0.1 * ((i - j) % 3) as f32
            } else {
                f32::NEG_INFINITY
            }
        })
        .collect()
}

/// The geometry of a case: sequences, heads, lengths, head size, and the floats each row of `q` and of `k`, `v`
/// carries past its heads (0: dense rows).
#[derive(Clone, Copy, Debug)]
struct Geometry {
    batch: usize,
    heads: usize,
    lq: usize,
    lk: usize,
    d: usize,
    q_pad: usize,
    kv_pad: usize,
}

/// `batch_heads` contiguous problems: one head, dense rows.
fn plain(batch_heads: usize, lq: usize, lk: usize, d: usize) -> Geometry {
    Geometry {
        batch: batch_heads,
        heads: 1,
        lq,
        lk,
        d,
        q_pad: 0,
        kv_pad: 0,
    }
}

fn case(g: Geometry, masked: Option<i64>, seed: u64) -> Case {
    let inner = g.heads * g.d;
    let s = AttentionShape {
        q_row_stride: inner + g.q_pad,
        kv_row_stride: inner + g.kv_pad,
        ..AttentionShape::dense(g.batch, g.heads, g.lq, g.lk, g.d, 1.0 / (g.d as f32).sqrt())
    };
    let spread = |x: Vec<f32>| x.iter().map(|v| 2.0 * v).collect::<Vec<_>>();
    Case {
        s,
        q: spread(values(seed, g.batch * g.lq * s.q_row_stride)),
        k: spread(values(seed + 1, g.batch * g.lk * s.kv_row_stride)),
        v: values(seed + 2, g.batch * g.lk * s.kv_row_stride),
        bias: masked.map(|shift| mask(g.lq, g.lk, shift)),
    }
}

/// The head columns of an operand of `rows` rows of `stride` (its first `inner` floats each), and whether every other
/// column still holds `untouched`.
fn head_columns(x: &[f32], stride: usize, inner: usize, untouched: f32) -> (Vec<f32>, bool) {
    let heads = x
        .chunks_exact(stride)
        .flat_map(|row| &row[..inner])
        .copied()
        .collect();
    let rest = x
        .chunks_exact(stride)
        .flat_map(|row| &row[inner..])
        .all(|&g| g == untouched);
    (heads, rest)
}

fn head_columns_f64(x: &[f64], stride: usize, inner: usize) -> Vec<f64> {
    x.chunks_exact(stride)
        .flat_map(|row| &row[..inner])
        .copied()
        .collect()
}

fn forward(c: &Case) -> (Vec<f32>, Vec<f32>) {
    let s = &c.s;
    let (mut out, mut lse) = (
        vec![0.0; s.batch * s.q_len * s.inner()],
        vec![0.0; s.problems() * s.q_len],
    );
    attention_forward(
        &c.s,
        &c.q,
        &c.k,
        &c.v,
        c.bias.as_deref(),
        &mut out,
        &mut lse,
    )
    .unwrap();
    (out, lse)
}

/// The gradients, their columns past the heads checked to be left as they were.
fn backward(
    c: &Case,
    out: &[f32],
    lse: &[f32],
    grad_out: &[f32],
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let (mut gq, mut gk, mut gv) = (
        vec![7.0; c.q.len()],
        vec![7.0; c.k.len()],
        vec![7.0; c.v.len()],
    );
    attention_backward(
        &c.s,
        &c.q,
        &c.k,
        &c.v,
        c.bias.as_deref(),
        out,
        lse,
        grad_out,
        &mut gq,
        &mut gk,
        &mut gv,
    )
    .unwrap();
    let (s, inner) = (&c.s, c.s.inner());
    let (gq, q_rest) = head_columns(&gq, s.q_row_stride, inner, 7.0);
    let (gk, k_rest) = head_columns(&gk, s.kv_row_stride, inner, 7.0);
    let (gv, v_rest) = head_columns(&gv, s.kv_row_stride, inner, 7.0);
    assert!(
        q_rest && k_rest && v_rest,
        "columns past the heads were written"
    );
    (gq, gk, gv)
}

fn reference_of(c: &Case) -> (Vec<f64>, Vec<f64>) {
    let bias = c.bias.as_ref().map(|b| to_f64(b));
    reference(
        &c.s,
        &to_f64(&c.q),
        &to_f64(&c.k),
        &to_f64(&c.v),
        bias.as_deref(),
    )
}

fn assert_lse_close(lse: &[f32], expected: &[f64], atol: f64) {
    for (i, (&a, &e)) in lse.iter().zip(expected).enumerate() {
        if e == f64::NEG_INFINITY {
            assert_eq!(a, f32::NEG_INFINITY, "lse[{i}] of a fully masked row");
        } else {
            assert!((f64::from(a) - e).abs() <= atol, "lse[{i}]: {a} vs {e}");
        }
    }
}

/// Batch 1 or more, one head or several, head sizes on and off the 16-column register tile, lengths on and off the
/// 48-row tiles, and rows dense or carrying extra floats past their heads.
fn geometry(max_lq: usize, max_lk: usize, max_d: usize) -> impl Strategy<Value = Geometry> {
    (
        1usize..3,
        1usize..4,
        1..max_lq,
        1..max_lk,
        1..max_d,
        prop::sample::select(vec![0usize, 0, 5]),
        prop::sample::select(vec![0usize, 0, 3]),
    )
        .prop_map(|(batch, heads, lq, lk, d, q_pad, kv_pad)| Geometry {
            batch,
            heads,
            lq,
            lk,
            d,
            q_pad,
            kv_pad,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(40))]

    #[test]
    fn attention_forward_matches_reference(
        g in geometry(80, 150, 40), masked in prop::option::of(-3i64..40), seed in 0u64..1000,
    ) {
        let c = case(g, masked, seed);
        let (d, lk) = (g.d, g.lk);
        let (out, lse) = forward(&c);
        let (r_out, r_lse) = reference_of(&c);
        // Scores are d-term f32 dot products of values ≤ 2 scaled by 1/sqrt(d): absolute error ~ d·4·2^-24·scale.
        // exp turns that into a relative error of the weights; the output is a convex combination of v (|v| < 1)
        // accumulated over lk terms and rescaled at most lk/BK times: ~(sqrt(d) + lk)·2^-22 absolute.
        let atol = (d as f64 + lk as f64 + 8.0) * 2f64.powi(-22);
        assert_close("out", &out, &r_out, 0.0, atol);
        assert_lse_close(&lse, &r_lse, atol * 4.0);
    }

    #[test]
    fn attention_backward_matches_finite_differences(
        g in geometry(24, 70, 9), masked in prop::option::of(-2i64..10), seed in 0u64..1000,
    ) {
        let c = case(g, masked, seed);
        let (lq, lk, d) = (g.lq, g.lk, g.d);
        let w = to_f64(&values(seed + 3, g.batch * lq * c.s.inner()));
        let grad_out: Vec<f32> = w.iter().map(|&x| x as f32).collect();
        let (out, lse) = forward(&c);
        let (gq, gk, gv) = backward(&c, &out, &lse, &grad_out);
        let (q, k, v) = (to_f64(&c.q), to_f64(&c.k), to_f64(&c.v));
        let bias = c.bias.as_ref().map(|b| to_f64(b));
        let loss = |q: &[f64], k: &[f64], v: &[f64]| weighted_sum(&w, &reference(&c.s, q, k, v, bias.as_deref()).0);
        // Gradients are sums of up to max(lq, lk) products of f32 quantities of size ≤ ~4 (P ≤ 1, dP a d-term dot
        // product of values < 1, D likewise): absolute error ~ (lq + lk + d)·2^-20.
        let atol = (lq + lk + d) as f64 * 2f64.powi(-20);
        let (inner, q_stride, kv_stride) = (c.s.inner(), c.s.q_row_stride, c.s.kv_row_stride);
        let fd_q = head_columns_f64(&finite_differences(&q, |q| loss(q, &k, &v)), q_stride, inner);
        let fd_k = head_columns_f64(&finite_differences(&k, |k| loss(&q, k, &v)), kv_stride, inner);
        let fd_v = head_columns_f64(&finite_differences(&v, |v| loss(&q, &k, v)), kv_stride, inner);
        assert_close("grad_q", &gq, &fd_q, 0.0, atol);
        assert_close("grad_k", &gk, &fd_k, 0.0, atol);
        assert_close("grad_v", &gv, &fd_v, 0.0, atol);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    /// Beyond 256 keys the forward runs its online softmax over several key tiles (rescaling the running sum and
    /// output whenever a row's maximum grows), with a ragged last tile.
    #[test]
    fn attention_forward_matches_reference_over_several_key_tiles(
        lq in 1usize..60, lk in 257usize..420, d in 1usize..20, masked in prop::option::of(-3i64..300),
        seed in 0u64..1000,
    ) {
        let c = case(Geometry { heads: 2, q_pad: 3, ..plain(1, lq, lk, d) }, masked, seed);
        let (out, lse) = forward(&c);
        let (r_out, r_lse) = reference_of(&c);
        // As in `attention_forward_matches_reference`.
        let atol = (d as f64 + lk as f64 + 8.0) * 2f64.powi(-22);
        assert_close("out", &out, &r_out, 0.0, atol);
        assert_lse_close(&lse, &r_lse, atol * 4.0);
    }
}

#[test]
fn fully_masked_rows_give_zero_output_and_no_nan() {
    // shift −3: query rows 0..3 see no key at all.
    let c = case(
        Geometry {
            heads: 2,
            ..plain(2, 9, 70, 5)
        },
        Some(-3),
        4,
    );
    let (out, lse) = forward(&c);
    let inner = c.s.inner();
    for n in 0..2 {
        for i in 0..3 {
            let row = (n * 9 + i) * inner;
            assert!(
                out[row..row + inner].iter().all(|&x| x == 0.0),
                "row {i} of sequence {n}"
            );
            for h in 0..2 {
                assert_eq!(lse[(n * 2 + h) * 9 + i], f32::NEG_INFINITY);
            }
        }
    }
    let (gq, gk, gv) = backward(&c, &out, &lse, &values(8, out.len()));
    assert!(gq.iter().chain(&gk).chain(&gv).all(|x| x.is_finite()));
    assert!(
        gq[..3 * inner].iter().all(|&x| x == 0.0),
        "masked rows get no query gradient"
    );
}

#[test]
fn attention_does_not_depend_on_the_thread_count() {
    // One forward key tile (130 keys) and several (300 keys); several backward key tiles in both.
    for c in [
        case(
            Geometry {
                heads: 3,
                q_pad: 5,
                ..plain(1, 97, 130, 24)
            },
            Some(20),
            6,
        ),
        case(plain(2, 50, 300, 16), Some(100), 7),
    ] {
        let grad_out = values(9, c.s.batch * c.s.q_len * c.s.inner());
        let run = |threads| {
            with_threads(threads, || {
                let (out, lse) = forward(&c);
                let grads = backward(&c, &out, &lse, &grad_out);
                (out, lse, grads)
            })
        };
        assert_eq!(run(1), run(2));
    }
}

#[test]
fn attention_matches_reference_at_a_vision_shape() {
    // L = 196 (14×14), d = 32: one forward key tile of 196 (padded to 208) columns; a ragged last query tile of 4
    // rows.
    let c = case(plain(2, 196, 196, 32), None, 1);
    let (out, lse) = forward(&c);
    let (r_out, r_lse) = reference_of(&c);
    let atol = (32.0 + 196.0 + 8.0) * 2f64.powi(-22);
    assert_close("out", &out, &r_out, 0.0, atol);
    assert_lse_close(&lse, &r_lse, 4.0 * atol);
}

#[test]
fn attention_matches_reference_at_dit_shapes() {
    // The DiT's token counts and head size: 49 tokens (7×7 patches: patch 4 on 28×28, or patch 1 on the 7×7
    // latents) and 196 (patch 2 on 28×28), heads of 64 channels. The scores' dot products have 64 terms, the
    // softmax sums L of them: the vision-shape tolerance with d = 64.
    for (bh, len) in [(3, 49), (2, 196)] {
        let c = case(
            Geometry {
                heads: bh,
                ..plain(1, len, len, 64)
            },
            None,
            7,
        );
        let (out, lse) = forward(&c);
        let (r_out, r_lse) = reference_of(&c);
        let atol = (64.0 + len as f64 + 8.0) * 2f64.powi(-22);
        assert_close("out", &out, &r_out, 0.0, atol);
        assert_lse_close(&lse, &r_lse, 4.0 * atol);
    }
}

#[test]
fn attention_accepts_empty_problems() {
    let s = AttentionShape::dense(0, 1, 4, 4, 8, 1.0);
    attention_forward(&s, &[], &[], &[], None, &mut [], &mut []).unwrap();
    let s = AttentionShape::dense(1, 2, 0, 3, 2, 1.0);
    let (mut gk, mut gv) = (vec![1.0; 12], vec![1.0; 12]);
    attention_backward(
        &s,
        &[],
        &[0.0; 12],
        &[0.0; 12],
        None,
        &[],
        &[],
        &[],
        &mut [],
        &mut gk,
        &mut gv,
    )
    .unwrap();
    assert!(gk.iter().chain(&gv).all(|&x| x == 0.0));
}

#[test]
fn attention_rejects_bad_shapes_and_lengths() {
    let s = AttentionShape::dense(2, 1, 3, 5, 4, 0.5);
    let (q, kv) = (vec![0.0; 24], vec![0.0; 40]);
    let (mut out, mut lse) = (vec![0.0; 24], vec![0.0; 6]);
    let err = attention_forward(&s, &q, &kv[..39], &kv, None, &mut out, &mut lse).unwrap_err();
    assert_eq!(
        err.to_string(),
        "attention_forward: k has 39 elements but its shape implies 40"
    );
    let err =
        attention_forward(&s, &q, &kv, &kv, Some(&[0.0; 14]), &mut out, &mut lse).unwrap_err();
    assert!(
        err.message
            .contains("bias has 14 elements but its shape implies 15"),
        "{err}"
    );
    let err = attention_forward(
        &AttentionShape { kv_len: 0, ..s },
        &q,
        &[],
        &[],
        None,
        &mut out,
        &mut lse,
    )
    .unwrap_err();
    assert!(err.message.contains("kv_len is 0"), "{err}");
    let err = attention_forward(
        &AttentionShape { head_dim: 0, ..s },
        &[],
        &[],
        &[],
        None,
        &mut [],
        &mut lse,
    )
    .unwrap_err();
    assert!(err.message.contains("head_dim is 0"), "{err}");
    let (mut gq, mut gk, mut gv) = (vec![0.0; 24], vec![0.0; 40], vec![0.0; 40]);
    let err = attention_backward(
        &s,
        &q,
        &kv,
        &kv,
        None,
        &out,
        &lse[..5],
        &q,
        &mut gq,
        &mut gk,
        &mut gv,
    )
    .unwrap_err();
    assert!(err.message.contains("lse has 5 elements"), "{err}");
}

#[test]
fn attention_rejects_overlapping_rows_and_short_strided_operands() {
    let s = AttentionShape {
        q_row_stride: 8,
        kv_row_stride: 7,
        ..AttentionShape::dense(1, 2, 3, 5, 4, 0.5)
    };
    let (mut out, mut lse) = (vec![0.0; 24], vec![0.0; 6]);
    let (q, kv) = (vec![0.0; 24], vec![0.0; 50]);
    let err = attention_forward(&s, &q, &kv, &kv, None, &mut out, &mut lse).unwrap_err();
    assert!(
        err.message
            .contains("kv_row_stride 7 is less than heads·head_dim = 2 × 4 = 8"),
        "{err}"
    );
    let s = AttentionShape {
        kv_row_stride: 10,
        ..s
    };
    // k: 5 rows of stride 10 holding 8 channels need 48 to 50 floats.
    let err =
        attention_forward(&s, &q, &kv[..47], &kv[..50], None, &mut out, &mut lse).unwrap_err();
    assert!(
        err.message.contains(
            "k has 47 elements but 5 rows of stride 10 holding 8 channels of heads need 48 to 50"
        ),
        "{err}"
    );
    attention_forward(&s, &q, &kv[..48], &kv[..50], None, &mut out, &mut lse).unwrap();
    let err = attention_forward(
        &AttentionShape { heads: 0, ..s },
        &[],
        &[],
        &[],
        None,
        &mut [],
        &mut [],
    )
    .unwrap_err();
    assert!(err.message.contains("heads is 0"), "{err}");
}

/// q, k and v read in place from one fused projection's rows `[q | k | v]` (slices of one buffer at offsets 0, H·d and
/// 2·H·d, row stride 3·H·d) give the same bits as the same values in three dense buffers, forward and backward.
#[test]
fn a_fused_projection_is_read_in_place() {
    let (batch, heads, len, d) = (2, 3, 53, 20);
    let inner = heads * d;
    let fused = values(11, batch * len * 3 * inner);
    let part = |p: usize| -> Vec<f32> {
        fused
            .chunks_exact(3 * inner)
            .flat_map(|row| &row[p * inner..][..inner])
            .copied()
            .collect()
    };
    let dense = Case {
        s: AttentionShape::dense(batch, heads, len, len, d, 0.3),
        q: part(0),
        k: part(1),
        v: part(2),
        bias: None,
    };
    let (out, lse) = forward(&dense);
    let grad_out = values(12, out.len());
    let grads = backward(&dense, &out, &lse, &grad_out);

    let s = AttentionShape {
        q_row_stride: 3 * inner,
        kv_row_stride: 3 * inner,
        ..dense.s
    };
    let (q, k, v) = (&fused[..], &fused[inner..], &fused[2 * inner..]);
    let (mut fused_out, mut fused_lse) = (vec![0.0; out.len()], vec![0.0; lse.len()]);
    attention_forward(&s, q, k, v, None, &mut fused_out, &mut fused_lse).unwrap();
    assert_eq!((&fused_out, &fused_lse), (&out, &lse));
    let mut g = vec![7.0; fused.len()];
    let (gq, rest) = g.split_at_mut(inner);
    let (gk, gv) = rest.split_at_mut(inner);
    // Three views of one buffer cannot all be borrowed mutably: each gradient goes to a buffer of its own, in the
    // fused row layout.
    let (mut gq, mut gk, mut gv) = (gq.to_vec(), gk.to_vec(), gv.to_vec());
    gq.resize(fused.len(), 7.0);
    gk.resize(fused.len() - inner, 7.0);
    gv.resize(fused.len() - 2 * inner, 7.0);
    attention_backward(
        &s, q, k, v, None, &out, &lse, &grad_out, &mut gq, &mut gk, &mut gv,
    )
    .unwrap();
    let columns = |g: &[f32]| -> Vec<f32> {
        g.chunks(3 * inner)
            .flat_map(|row| &row[..inner])
            .copied()
            .collect()
    };
    assert_eq!((columns(&gq), columns(&gk), columns(&gv)), grads);
}
