//! Backward rules against finite differences over random small shapes: broadcast operands (missing leading axes and
//! size-1 axes), non-contiguous leaves (transposed and narrowed views), reductions over random axis sets, and batched
//! matmul with broadcast batches, and the heavy operations over random geometry (convolution stride, padding 0..=2,
//! dilation and groups; normalisation and attention sizes including 1). Tolerance as in `common`.

mod common;

use common::*;
use diffuse_tensor::{Conv2dParams, Tensor};
use proptest::prelude::*;

/// A tensor of `shape` stored transposed (last two axes swapped) or as a narrow of a wider buffer, so that the leaf
/// handed to the graph is not contiguous.
fn strided(shape: &[usize], seed: u64, how: u8) -> Tensor {
    let r = shape.len();
    match (how % 3, r) {
        (1, 2..) => {
            let mut stored = shape.to_vec();
            stored.swap(r - 2, r - 1);
            randn(&stored, seed).transpose(r - 2, r - 1).unwrap()
        }
        (2, 1..) => {
            let mut wider = shape.to_vec();
            wider[r - 1] += 2;
            randn(&wider, seed).narrow(r - 1, 1, shape[r - 1]).unwrap()
        }
        _ => randn(shape, seed),
    }
}

/// Noise (σ = 0.3) on a ramp `0, 1, 2, …` over every axis but the first, so that each normalised group or row has a
/// standard deviation of order 1. Normalisation is ill-conditioned when its values nearly coincide: the gradient
/// grows like rstd and the third derivative like rstd³, and a step of 1e-2 no longer resolves it (the kernels are
/// right there too; the finite difference is not).
fn spread(shape: &[usize], seed: u64) -> Tensor {
    let per_item: usize = shape[1..].iter().product();
    let ramp = Tensor::arange(0.0, per_item as f32, 1.0, CPU)
        .unwrap()
        .reshape(&shape[1..])
        .unwrap();
    randn(shape, seed)
        .mul_scalar(0.3)
        .unwrap()
        .add(&ramp)
        .unwrap()
}

fn small_shape() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(1usize..4, 1..4)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn broadcasting_binary_ops_match_finite_differences(
        shape in small_shape(),
        drop in 0usize..3,
        ones in prop::collection::vec(any::<bool>(), 3),
        op in 0u8..4,
        how in 0u8..3,
        seed in 0u64..1000,
    ) {
        let keep = shape.len() - drop.min(shape.len() - 1);
        let b_shape: Vec<usize> = shape[shape.len() - keep..]
            .iter()
            .zip(&ones)
            .map(|(&n, &one)| if one { 1 } else { n })
            .collect();
        let a = strided(&shape, seed, how);
        let b = uniform(&b_shape, seed + 7, 0.5, 1.5);
        check_gradients(&[&a, &b], |v| match op {
            0 => v[0].add(&v[1]),
            1 => v[1].sub(&v[0]),
            2 => v[0].mul(&v[1]),
            _ => v[0].div(&v[1]),
        });
    }

    #[test]
    fn unary_chains_and_reductions_over_random_axes_match_finite_differences(
        shape in small_shape(),
        axes in prop::collection::vec(any::<bool>(), 3),
        keepdim in any::<bool>(),
        how in 0u8..3,
        seed in 0u64..1000,
    ) {
        let dims: Vec<usize> = (0..shape.len()).filter(|&d| axes[d]).collect();
        let x = strided(&shape, seed, how);
        check_gradients(&[&x], |v| v[0].tanh()?.mul(&v[0].silu()?)?.mean(&dims, keepdim)?.exp());
    }

    #[test]
    fn batched_matmul_with_broadcast_batches_matches_finite_differences(
        (m, k, n) in (1usize..4, 1usize..4, 1usize..4),
        batch in prop::collection::vec(1usize..3, 0..3),
        a_one in any::<bool>(),
        (how_a, how_b) in (0u8..3, 0u8..3),
        seed in 0u64..1000,
    ) {
        let mut a_shape: Vec<usize> = batch.iter().map(|&s| if a_one { 1 } else { s }).collect();
        a_shape.extend([m, k]);
        let mut b_shape = batch.clone();
        b_shape.extend([k, n]);
        let (a, b) = (strided(&a_shape, seed, how_a), strided(&b_shape, seed + 3, how_b));
        check_gradients(&[&a, &b], |v| v[0].matmul(&v[1]));
    }

    /// A batched input through a rank-2 weight, as a linear layer: the weight's gradient is one product over all
    /// the input's rows (contiguous, transposed or narrowed inputs).
    #[test]
    fn batched_input_times_rank2_weight_matches_finite_differences(
        (m, k, n) in (1usize..4, 1usize..4, 1usize..4),
        batch in prop::collection::vec(1usize..3, 1..3),
        (how_a, how_w) in (0u8..3, 0u8..3),
        seed in 0u64..1000,
    ) {
        let mut a_shape = batch.clone();
        a_shape.extend([m, k]);
        let (a, w) = (strided(&a_shape, seed, how_a), strided(&[k, n], seed + 5, how_w));
        check_gradients(&[&a, &w], |v| v[0].matmul(&v[1]));
    }

    /// A linear layer's `x·Wᵀ + b` through `matmul_bias` (the bias added in the GEMM's output stage): the input,
    /// weight and bias gradients, the bias's summed over every row of every batch.
    #[test]
    fn matmul_bias_matches_finite_differences(
        (m, k, n) in (1usize..4, 1usize..4, 1usize..4),
        batch in prop::collection::vec(1usize..3, 0..3),
        (how_a, how_w) in (0u8..3, 0u8..3),
        seed in 0u64..1000,
    ) {
        let mut a_shape = batch.clone();
        a_shape.extend([m, k]);
        let (a, w) = (strided(&a_shape, seed, how_a), strided(&[n, k], seed + 5, how_w));
        let bias = randn(&[n], seed + 7);
        check_gradients(&[&a, &w, &bias], |v| v[0].matmul_bias(&v[1].transpose(0, 1)?, &v[2]));
    }

    #[test]
    fn conv2d_over_random_geometry_matches_finite_differences(
        (batch, group_in, group_out, groups) in (1usize..3, 1usize..3, 1usize..3, 1usize..3),
        (kh, kw) in (1usize..4, 1usize..4),
        (h, w) in (3usize..7, 3usize..7),
        (sh, sw, ph, pw, dh, dw) in (1usize..3, 1usize..3, 0usize..3, 0usize..3, 1usize..3, 1usize..3),
        with_bias in any::<bool>(),
        seed in 0u64..1000,
    ) {
        let p = Conv2dParams { stride: (sh, sw), padding: (ph, pw), dilation: (dh, dw), groups };
        // Skip geometries whose dilated kernel does not fit the padded input (no output).
        prop_assume!(dh * (kh - 1) < h + 2 * ph && dw * (kw - 1) < w + 2 * pw);
        let x = randn(&[batch, group_in * groups, h, w], seed);
        let wt = randn(&[group_out * groups, group_in, kh, kw], seed + 1);
        let b = randn(&[group_out * groups], seed + 2);
        if with_bias {
            check_gradients(&[&x, &wt, &b], |v| v[0].conv2d(&v[1], Some(&v[2]), &p));
        } else {
            check_gradients(&[&x, &wt], |v| v[0].conv2d(&v[1], None, &p));
        }
    }

    #[test]
    fn normalisation_and_attention_over_random_sizes_match_finite_differences(
        (batch, groups, per_group, spatial) in (1usize..3, 1usize..3, 1usize..3, 1usize..5),
        (n, heads, lq, lk, d) in (1usize..3, 1usize..4, 1usize..4, 1usize..4, 1usize..5),
        seed in 0u64..1000,
    ) {
        let c = groups * per_group;
        let x = spread(&[batch, c, spatial], seed);
        let (gamma, beta) = (randn(&[c], seed + 1), randn(&[c], seed + 2));
        // A group of one or two elements normalises to (nearly) 0 or ±1 whatever its values; keep three or more.
        if per_group * spatial >= 3 {
            check_gradients(&[&x, &gamma, &beta], |v| v[0].group_norm(groups, &v[1], &v[2], 1e-5));
        }
        let rows = spread(&[batch, spatial + 2], seed + 3);
        let (g1, b1) = (randn(&[spatial + 2], seed + 4), randn(&[spatial + 2], seed + 5));
        check_gradients(&[&rows, &g1, &b1], |v| v[0].layer_norm(&v[1], &v[2], 1e-5));
        // `heads` heads of `d` side by side in every row.
        let q = randn(&[n, lq, heads * d], seed + 6);
        let k = randn(&[n, lk, heads * d], seed + 7);
        let vv = randn(&[n, lk, heads * d], seed + 8);
        check_gradients(&[&q, &k, &vv], |v| v[0].attention(&v[1], &v[2], heads, 1.0 / (d as f32).sqrt()));
    }
}
