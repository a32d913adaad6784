//! Blocked attention against a naive f64 reference that materialises the whole score matrix, and its backward
//! against finite differences of that reference.

mod common;

use common::{assert_close, finite_differences, to_f64, values, weighted_sum, with_threads};
use diffuse_cpu_kernels::attention::{attention_backward, attention_forward, AttentionShape};
use proptest::prelude::*;

/// Naive f64 attention: returns `(out, lse)`; fully masked rows give 0 and −∞.
fn reference(
    s: &AttentionShape,
    q: &[f64],
    k: &[f64],
    v: &[f64],
    bias: Option<&[f64]>,
) -> (Vec<f64>, Vec<f64>) {
    let (lq, lk, d) = (s.q_len, s.kv_len, s.head_dim);
    let mut out = vec![0.0; s.batch_heads * lq * d];
    let mut lse = vec![f64::NEG_INFINITY; s.batch_heads * lq];
    for bh in 0..s.batch_heads {
        for i in 0..lq {
            let scores: Vec<f64> = (0..lk)
                .map(|j| {
                    let dot: f64 = (0..d)
                        .map(|c| q[(bh * lq + i) * d + c] * k[(bh * lk + j) * d + c])
                        .sum();
                    dot * f64::from(s.scale) + bias.map_or(0.0, |b| b[i * lk + j])
                })
                .collect();
            let m = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            if m == f64::NEG_INFINITY {
                continue;
            }
            let sum: f64 = scores.iter().map(|x| (x - m).exp()).sum();
            lse[bh * lq + i] = m + sum.ln();
            for (j, x) in scores.iter().enumerate() {
                let p = (x - m).exp() / sum;
                for c in 0..d {
                    out[(bh * lq + i) * d + c] += p * v[(bh * lk + j) * d + c];
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

fn case(bh: usize, lq: usize, lk: usize, d: usize, masked: Option<i64>, seed: u64) -> Case {
    let s = AttentionShape {
        batch_heads: bh,
        q_len: lq,
        kv_len: lk,
        head_dim: d,
        scale: 1.0 / (d as f32).sqrt(),
    };
    let spread = |x: Vec<f32>| x.iter().map(|v| 2.0 * v).collect::<Vec<_>>();
    Case {
        s,
        q: spread(values(seed, bh * lq * d)),
        k: spread(values(seed + 1, bh * lk * d)),
        v: values(seed + 2, bh * lk * d),
        bias: masked.map(|shift| mask(lq, lk, shift)),
    }
}

fn forward(c: &Case) -> (Vec<f32>, Vec<f32>) {
    let (mut out, mut lse) = (vec![0.0; c.q.len()], vec![0.0; c.s.batch_heads * c.s.q_len]);
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

proptest! {
    #![proptest_config(ProptestConfig::with_cases(40))]

    #[test]
    fn attention_forward_matches_reference(
        bh in 1usize..4, lq in 1usize..80, lk in 1usize..150, d in 1usize..40, masked in prop::option::of(-3i64..40),
        seed in 0u64..1000,
    ) {
        let c = case(bh, lq, lk, d, masked, seed);
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
        bh in 1usize..3, lq in 1usize..24, lk in 1usize..70, d in 1usize..9, masked in prop::option::of(-2i64..10),
        seed in 0u64..1000,
    ) {
        let c = case(bh, lq, lk, d, masked, seed);
        let w = to_f64(&values(seed + 3, c.q.len()));
        let grad_out: Vec<f32> = w.iter().map(|&x| x as f32).collect();
        let (out, lse) = forward(&c);
        let (gq, gk, gv) = backward(&c, &out, &lse, &grad_out);
        let (q, k, v) = (to_f64(&c.q), to_f64(&c.k), to_f64(&c.v));
        let bias = c.bias.as_ref().map(|b| to_f64(b));
        let loss = |q: &[f64], k: &[f64], v: &[f64]| weighted_sum(&w, &reference(&c.s, q, k, v, bias.as_deref()).0);
        // Gradients are sums of up to max(lq, lk) products of f32 quantities of size ≤ ~4 (P ≤ 1, dP a d-term dot
        // product of values < 1, D likewise): absolute error ~ (lq + lk + d)·2^-20.
        let atol = (lq + lk + d) as f64 * 2f64.powi(-20);
        assert_close("grad_q", &gq, &finite_differences(&q, |q| loss(q, &k, &v)), 0.0, atol);
        assert_close("grad_k", &gk, &finite_differences(&k, |k| loss(&q, k, &v)), 0.0, atol);
        assert_close("grad_v", &gv, &finite_differences(&v, |v| loss(&q, &k, v)), 0.0, atol);
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
        let c = case(2, lq, lk, d, masked, seed);
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
    let c = case(2, 9, 70, 5, Some(-3), 4);
    let (out, lse) = forward(&c);
    let d = c.s.head_dim;
    for bh in 0..2 {
        for i in 0..3 {
            let row = (bh * 9 + i) * d;
            assert!(
                out[row..row + d].iter().all(|&x| x == 0.0),
                "row {i} of problem {bh}"
            );
            assert_eq!(lse[bh * 9 + i], f32::NEG_INFINITY);
        }
    }
    let (gq, gk, gv) = backward(&c, &out, &lse, &values(8, out.len()));
    assert!(gq.iter().chain(&gk).chain(&gv).all(|x| x.is_finite()));
    assert!(
        gq[..3 * d].iter().all(|&x| x == 0.0),
        "masked rows get no query gradient"
    );
}

#[test]
fn attention_does_not_depend_on_the_thread_count() {
    // One forward key tile (130 keys) and several (300 keys); several backward key tiles in both.
    for c in [
        case(3, 97, 130, 24, Some(20), 6),
        case(2, 50, 300, 16, Some(100), 7),
    ] {
        let grad_out = values(9, c.q.len());
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
    let c = case(2, 196, 196, 32, None, 1);
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
        let c = case(bh, len, len, 64, None, 7);
        let (out, lse) = forward(&c);
        let (r_out, r_lse) = reference_of(&c);
        let atol = (64.0 + len as f64 + 8.0) * 2f64.powi(-22);
        assert_close("out", &out, &r_out, 0.0, atol);
        assert_lse_close(&lse, &r_lse, 4.0 * atol);
    }
}

#[test]
fn attention_accepts_empty_problems() {
    let s = AttentionShape {
        batch_heads: 0,
        q_len: 4,
        kv_len: 4,
        head_dim: 8,
        scale: 1.0,
    };
    attention_forward(&s, &[], &[], &[], None, &mut [], &mut []).unwrap();
    let s = AttentionShape {
        batch_heads: 2,
        q_len: 0,
        kv_len: 3,
        head_dim: 2,
        scale: 1.0,
    };
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
    let s = AttentionShape {
        batch_heads: 2,
        q_len: 3,
        kv_len: 5,
        head_dim: 4,
        scale: 0.5,
    };
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
