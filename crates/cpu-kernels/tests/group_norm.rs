//! Group norm against an f64 reference over awkward shapes, its backward against finite differences.

mod common;

use common::{assert_close, finite_differences, to_f64, values, weighted_sum, with_threads};
use diffuse_cpu_kernels::group_norm::{group_norm_backward, group_norm_forward, GroupNormShape};
use proptest::prelude::*;

/// Plain-loop f64 group norm: returns `(y, mean, rstd)`.
fn reference(
    s: &GroupNormShape,
    x: &[f64],
    gamma: &[f64],
    beta: &[f64],
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let cpg = s.channels / s.groups;
    let m = cpg * s.spatial;
    let mut y = vec![0.0; x.len()];
    let (mut means, mut rstds) = (vec![], vec![]);
    for n in 0..s.batch {
        for g in 0..s.groups {
            let start = (n * s.channels + g * cpg) * s.spatial;
            let group = &x[start..start + m];
            let mean = group.iter().sum::<f64>() / m as f64;
            let var = group.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / m as f64;
            let rstd = 1.0 / (var + f64::from(s.eps)).sqrt();
            for (i, v) in group.iter().enumerate() {
                let c = g * cpg + i / s.spatial;
                y[start + i] = (v - mean) * rstd * gamma[c] + beta[c];
            }
            means.push(mean);
            rstds.push(rstd);
        }
    }
    (y, means, rstds)
}

struct Case {
    s: GroupNormShape,
    x: Vec<f32>,
    gamma: Vec<f32>,
    beta: Vec<f32>,
}

fn case(batch: usize, groups: usize, cpg: usize, spatial: usize, seed: u64) -> Case {
    let s = GroupNormShape {
        batch,
        channels: groups * cpg,
        spatial,
        groups,
        eps: 1e-5,
    };
    let len = batch * s.channels * spatial;
    // An offset mean and a non-unit spread, so the centring in the kernel matters.
    let x = values(seed, len).iter().map(|v| 0.5 + 2.0 * v).collect();
    let gamma = values(seed + 1, s.channels)
        .iter()
        .map(|v| 1.0 + v)
        .collect();
    let beta = values(seed + 2, s.channels);
    Case { s, x, gamma, beta }
}

fn forward(c: &Case) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let ng = c.s.batch * c.s.groups;
    let (mut y, mut mean, mut rstd) = (vec![0.0; c.x.len()], vec![0.0; ng], vec![0.0; ng]);
    group_norm_forward(&c.s, &c.x, &c.gamma, &c.beta, &mut y, &mut mean, &mut rstd).unwrap();
    (y, mean, rstd)
}

fn backward(c: &Case, mean: &[f32], rstd: &[f32], gy: &[f32]) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let (mut gx, mut gg, mut gb) = (
        vec![0.0; c.x.len()],
        vec![7.0; c.s.channels],
        vec![7.0; c.s.channels],
    );
    group_norm_backward(
        &c.s, &c.x, &c.gamma, mean, rstd, gy, &mut gx, &mut gg, &mut gb,
    )
    .unwrap();
    (gx, gg, gb)
}

// Forward tolerance: mean and rstd are exact to f32 rounding (f64 sums), then y = (x − mean)·a + β costs ~4 roundings of
// terms of size |x̂·γ| + |β| ≤ ~8 here: absolute error ≲ 8·4·2^-24 ≈ 2e-6; 2^-17 leaves headroom.
const FORWARD_ATOL: f64 = 1.0 / 131_072.0;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn group_norm_forward_matches_reference(
        batch in 1usize..4, groups in 1usize..5, cpg in 1usize..5, spatial in 1usize..40, seed in 0u64..1000,
    ) {
        let c = case(batch, groups, cpg, spatial, seed);
        let (y, mean, rstd) = forward(&c);
        let (ry, rmean, rrstd) = reference(&c.s, &to_f64(&c.x), &to_f64(&c.gamma), &to_f64(&c.beta));
        assert_close("y", &y, &ry, 0.0, FORWARD_ATOL);
        assert_close("mean", &mean, &rmean, 2f64.powi(-23), 1e-7);
        assert_close("rstd", &rstd, &rrstd, 2f64.powi(-22), 0.0);
    }

    #[test]
    fn group_norm_backward_matches_finite_differences(
        batch in 1usize..3, groups in 1usize..4, cpg in 1usize..4, spatial in 1usize..7, seed in 0u64..1000,
    ) {
        let c = case(batch, groups, cpg, spatial, seed);
        let w = to_f64(&values(seed + 3, c.x.len()));
        let gy: Vec<f32> = w.iter().map(|&v| v as f32).collect();
        let (_, mean, rstd) = forward(&c);
        let (gx, gg, gb) = backward(&c, &mean, &rstd, &gy);
        let (x, gamma, beta) = (to_f64(&c.x), to_f64(&c.gamma), to_f64(&c.beta));
        let loss = |x: &[f64], gamma: &[f64], beta: &[f64]| weighted_sum(&w, &reference(&c.s, x, gamma, beta).0);
        // grad_x = rstd·(γg − mean(γg) − x̂·mean(γg x̂)): O(rstd·|γ g|) terms, a handful of f32 roundings each, and
        // rstd is at most ~1/sqrt(eps) ≈ 300 for a near-constant group (spatial 1, one channel). Relative 2^-16 of
        // rstd covers it; for ordinary groups (rstd ~ 1) that is ~1.5e-5.
        let scale = rstd.iter().fold(1.0f64, |a, &r| a.max(f64::from(r)));
        assert_close("grad_x", &gx, &finite_differences(&x, |x| loss(x, &gamma, &beta)), 0.0, scale * 2f64.powi(-16));
        // grad_γ, grad_β: f64 sums of N·S products of f32 values: a few f32 roundings per term, ~(N·S)·2^-22.
        let atol = (batch * spatial) as f64 * 2f64.powi(-20);
        // grad_γ's terms g·x̂ also carry x̂'s error: the f32 mean's rounding times rstd, as for grad_x above.
        assert_close("grad_gamma", &gg, &finite_differences(&gamma, |g| loss(&x, g, &beta)), 0.0, atol * scale);
        assert_close("grad_beta", &gb, &finite_differences(&beta, |b| loss(&x, &gamma, b)), 0.0, atol);
    }
}

#[test]
fn group_norm_handles_the_unet_shape_and_is_thread_count_independent() {
    let c = case(4, 32, 4, 14 * 14 + 3, 5);
    let gy = values(9, c.x.len());
    let run = |threads| {
        with_threads(threads, || {
            let (y, mean, rstd) = forward(&c);
            let grads = backward(&c, &mean, &rstd, &gy);
            (y, mean, rstd, grads)
        })
    };
    let single = run(1);
    assert_eq!(single, run(2));
    let (ry, _, _) = reference(&c.s, &to_f64(&c.x), &to_f64(&c.gamma), &to_f64(&c.beta));
    assert_close("y", &single.0, &ry, 0.0, FORWARD_ATOL);
}

/// The moments take one pass over values shifted by each group's first (`moments.rs`): a group whose mean is large
/// against its spread, and whose first value lies far out (here 1000 ± 0.01 with the first at 1001, about 12
/// standard deviations away: in a group of 150 the outlier's own share of the variance caps its distance near
/// √150), must still give mean and rstd to f32 rounding. An unshifted one-pass `E[x²] − mean²` would lose about
/// `2^-53·150·mean²/var ≈ 2.5e-6` of the variance here, ten times the rstd tolerance. Group length 150: four
/// 32-value chunks and a tail.
#[test]
fn group_norm_moments_hold_for_a_large_mean_and_an_outlying_first_value() {
    let mut c = case(2, 2, 3, 50, 17);
    c.s.eps = 0.0;
    let m = 3 * 50;
    for (i, x) in c.x.iter_mut().enumerate() {
        *x = if i % m == 0 {
            1001.0
        } else {
            1000.0 + 0.005 * (*x - 0.5)
        };
    }
    let (_, mean, rstd) = forward(&c);
    let (_, rmean, rrstd) = reference(&c.s, &to_f64(&c.x), &to_f64(&c.gamma), &to_f64(&c.beta));
    assert!(
        rrstd.iter().all(|&r| r > 10.0),
        "the groups' spread is small: {rrstd:?}"
    );
    assert_close("mean", &mean, &rmean, 2f64.powi(-23), 0.0);
    assert_close("rstd", &rstd, &rrstd, 2f64.powi(-22), 0.0);
}

#[test]
fn group_norm_accepts_an_empty_batch() {
    let c = case(0, 2, 3, 5, 1);
    let (y, mean, _) = forward(&c);
    assert!(y.is_empty() && mean.is_empty());
}

#[test]
fn group_norm_rejects_bad_shapes_and_lengths() {
    let s = GroupNormShape {
        batch: 1,
        channels: 6,
        spatial: 2,
        groups: 4,
        eps: 1e-5,
    };
    let (x, g) = (vec![0.0; 12], vec![1.0; 6]);
    let (mut y, mut m, mut r) = (vec![0.0; 12], vec![0.0; 4], vec![0.0; 4]);
    let err = group_norm_forward(&s, &x, &g, &g, &mut y, &mut m, &mut r).unwrap_err();
    assert!(
        err.message
            .contains("groups 4 must be ≥ 1 and divide channels 6"),
        "{err}"
    );

    let s = GroupNormShape { groups: 3, ..s };
    let err =
        group_norm_forward(&s, &x, &g[..5], &g, &mut y, &mut m[..3], &mut r[..3]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "group_norm_forward: gamma has 5 elements but its shape implies 6"
    );
    let err = group_norm_forward(&s, &x, &g, &g, &mut y, &mut m, &mut r[..3]).unwrap_err();
    assert!(
        err.message
            .contains("mean has 4 elements but its shape implies 3"),
        "{err}"
    );
    let err = group_norm_forward(
        &GroupNormShape { spatial: 0, ..s },
        &[],
        &g,
        &g,
        &mut [],
        &mut m[..3],
        &mut r[..3],
    )
    .unwrap_err();
    assert!(err.message.contains("spatial"), "{err}");
    let err = group_norm_forward(
        &GroupNormShape { eps: -1.0, ..s },
        &x,
        &g,
        &g,
        &mut y,
        &mut m[..3],
        &mut r[..3],
    )
    .unwrap_err();
    assert!(err.message.contains("eps"), "{err}");

    let (mut gx, mut gg, mut gb) = (vec![0.0; 12], vec![0.0; 6], vec![0.0; 6]);
    let err = group_norm_backward(
        &s,
        &x,
        &g,
        &m[..3],
        &r[..3],
        &x[..11],
        &mut gx,
        &mut gg,
        &mut gb,
    )
    .unwrap_err();
    assert!(err.message.contains("grad_y has 11 elements"), "{err}");
}
