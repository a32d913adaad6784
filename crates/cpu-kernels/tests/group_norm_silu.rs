//! The fused group norm + SiLU against an f64 reference (group norm, then SiLU, in plain loops) over awkward shapes,
//! its backward against f64 finite differences, and its agreement with the two separate kernels.

mod common;

use common::{assert_close, finite_differences, to_f64, values, weighted_sum, with_threads};
use diffuse_cpu_kernels::elementwise::{BinaryOp, UnaryOp};
use diffuse_cpu_kernels::group_norm::{group_norm_backward, group_norm_forward, GroupNormShape};
use diffuse_cpu_kernels::group_norm_silu::{group_norm_silu_backward, group_norm_silu_forward};
use proptest::prelude::*;

/// Plain-loop f64 `silu(group_norm(x))`.
fn reference(s: &GroupNormShape, x: &[f64], gamma: &[f64], beta: &[f64]) -> Vec<f64> {
    let cpg = s.channels / s.groups;
    let m = cpg * s.spatial;
    let mut y = vec![0.0; x.len()];
    for n in 0..s.batch {
        for g in 0..s.groups {
            let start = (n * s.channels + g * cpg) * s.spatial;
            let group = &x[start..start + m];
            let mean = group.iter().sum::<f64>() / m as f64;
            let var = group.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / m as f64;
            let rstd = 1.0 / (var + f64::from(s.eps)).sqrt();
            for (i, v) in group.iter().enumerate() {
                let c = g * cpg + i / s.spatial;
                let z = (v - mean) * rstd * gamma[c] + beta[c];
                y[start + i] = z / (1.0 + (-z).exp());
            }
        }
    }
    y
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
    // An offset mean and a non-unit spread, so the centring matters; β spreads z over both sides of SiLU's bend.
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
    group_norm_silu_forward(&c.s, &c.x, &c.gamma, &c.beta, &mut y, &mut mean, &mut rstd).unwrap();
    (y, mean, rstd)
}

fn backward(c: &Case, mean: &[f32], rstd: &[f32], gy: &[f32]) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    // Stale values in every output, as the host cache hands out: the kernel must overwrite them all.
    let (mut gx, mut gg, mut gb) = (
        vec![f32::NAN; c.x.len()],
        vec![7.0; c.s.channels],
        vec![7.0; c.s.channels],
    );
    group_norm_silu_backward(
        &c.s, &c.x, &c.gamma, &c.beta, mean, rstd, gy, &mut gx, &mut gg, &mut gb,
    )
    .unwrap();
    (gx, gg, gb)
}

// Forward tolerance: z carries group norm's error (≲ 2e-6 absolute for |z| ≲ 8, see tests/group_norm.rs); SiLU's
// slope is at most 1.1, and σ(z) with the kernels' exp adds a few f32 roundings of |y| ≲ 8. 2^-16 leaves headroom.
const FORWARD_ATOL: f64 = 1.0 / 65_536.0;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn group_norm_silu_forward_matches_reference(
        batch in 1usize..4, groups in 1usize..5, cpg in 1usize..5, spatial in 1usize..40, seed in 0u64..1000,
    ) {
        let c = case(batch, groups, cpg, spatial, seed);
        let (y, _, _) = forward(&c);
        let ry = reference(&c.s, &to_f64(&c.x), &to_f64(&c.gamma), &to_f64(&c.beta));
        assert_close("y", &y, &ry, 0.0, FORWARD_ATOL);
    }

    #[test]
    fn group_norm_silu_backward_matches_finite_differences(
        batch in 1usize..3, groups in 1usize..4, cpg in 1usize..4, spatial in 1usize..7, seed in 0u64..1000,
    ) {
        let c = case(batch, groups, cpg, spatial, seed);
        let w = to_f64(&values(seed + 3, c.x.len()));
        let gy: Vec<f32> = w.iter().map(|&v| v as f32).collect();
        let (_, mean, rstd) = forward(&c);
        let (gx, gg, gb) = backward(&c, &mean, &rstd, &gy);
        let (x, gamma, beta) = (to_f64(&c.x), to_f64(&c.gamma), to_f64(&c.beta));
        let loss = |x: &[f64], gamma: &[f64], beta: &[f64]| weighted_sum(&w, &reference(&c.s, x, gamma, beta));
        // As group norm's (tests/group_norm.rs): O(rstd·|γ ∂z|) terms with a handful of f32 roundings, rstd up to
        // ~300 for a one-element group; SiLU's derivative (≤ 1.1) only rescales ∂z.
        let scale = rstd.iter().fold(1.0f64, |a, &r| a.max(f64::from(r)));
        assert_close("grad_x", &gx, &finite_differences(&x, |x| loss(x, &gamma, &beta)), 0.0, scale * 2f64.powi(-16));
        // f64 sums of N·S products of f32 values, each with a few f32 roundings (∂z's own included).
        let atol = (batch * spatial) as f64 * 2f64.powi(-19);
        assert_close("grad_gamma", &gg, &finite_differences(&gamma, |g| loss(&x, g, &beta)), 0.0, atol * scale);
        assert_close("grad_beta", &gb, &finite_differences(&beta, |b| loss(&x, &gamma, b)), 0.0, atol);
    }
}

/// The fused kernel against group norm followed by SiLU through the separate kernels, on the U-Net's shape (32
/// groups, spatial one off a tile): the same z and statistics, so agreement to a few f32 roundings.
#[test]
fn group_norm_silu_agrees_with_the_separate_kernels() {
    let c = case(3, 32, 2, 14 * 14 + 1, 4);
    let gy = values(11, c.x.len());
    let ng = c.s.batch * c.s.groups;
    let (mut z, mut mean, mut rstd) = (vec![0.0; c.x.len()], vec![0.0; ng], vec![0.0; ng]);
    group_norm_forward(&c.s, &c.x, &c.gamma, &c.beta, &mut z, &mut mean, &mut rstd).unwrap();
    let y: Vec<f32> = z.iter().map(|&z| UnaryOp::Silu.apply(z)).collect();
    let gz: Vec<f32> = z
        .iter()
        .zip(&gy)
        .map(|(&z, &g)| BinaryOp::SiluBackward.apply(z, g))
        .collect();
    let (mut gx, mut gg, mut gb) = (
        vec![0.0; z.len()],
        vec![0.0; c.s.channels],
        vec![0.0; c.s.channels],
    );
    group_norm_backward(
        &c.s, &c.x, &c.gamma, &mean, &rstd, &gz, &mut gx, &mut gg, &mut gb,
    )
    .unwrap();

    let (fy, fmean, frstd) = forward(&c);
    assert_eq!(
        (&fmean, &frstd),
        (&mean, &rstd),
        "the statistics are the same code"
    );
    assert_eq!(
        fy, y,
        "z is computed as group norm computes it, and SiLU as the elementwise kernel"
    );
    let (fgx, fgg, fgb) = backward(&c, &mean, &rstd, &gy);
    // ∂z is the same bits; the sums run over the same values in the same order.
    assert_eq!((fgx, fgg, fgb), (gx, gg, gb));
}

#[test]
fn group_norm_silu_is_thread_count_independent() {
    let c = case(4, 32, 4, 14 * 14 + 3, 5);
    let gy = values(9, c.x.len());
    let run = |threads| {
        with_threads(threads, || {
            let (y, mean, rstd) = forward(&c);
            let grads = backward(&c, &mean, &rstd, &gy);
            (y, mean, rstd, grads)
        })
    };
    assert_eq!(run(1), run(2));
}

#[test]
fn group_norm_silu_accepts_an_empty_batch() {
    let c = case(0, 2, 3, 5, 1);
    let (y, mean, _) = forward(&c);
    assert!(y.is_empty() && mean.is_empty());
}

#[test]
fn group_norm_silu_rejects_bad_shapes_and_lengths() {
    let s = GroupNormShape {
        batch: 1,
        channels: 6,
        spatial: 2,
        groups: 4,
        eps: 1e-5,
    };
    let (x, g) = (vec![0.0; 12], vec![1.0; 6]);
    let (mut y, mut m, mut r) = (vec![0.0; 12], vec![0.0; 4], vec![0.0; 4]);
    let err = group_norm_silu_forward(&s, &x, &g, &g, &mut y, &mut m, &mut r).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("group_norm_silu_forward: groups 4 must be ≥ 1 and divide channels 6"),
        "{err}"
    );
    let s = GroupNormShape { groups: 3, ..s };
    let err =
        group_norm_silu_forward(&s, &x, &g, &g[..5], &mut y, &mut m[..3], &mut r[..3]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "group_norm_silu_forward: beta has 5 elements but its shape implies 6"
    );
    let (mut gx, mut gg, mut gb) = (vec![0.0; 12], vec![0.0; 6], vec![0.0; 6]);
    let err = group_norm_silu_backward(
        &s,
        &x,
        &g,
        &g[..4],
        &m[..3],
        &r[..3],
        &x,
        &mut gx,
        &mut gg,
        &mut gb,
    )
    .unwrap_err();
    assert!(err.message.contains("beta has 4 elements"), "{err}");
}
