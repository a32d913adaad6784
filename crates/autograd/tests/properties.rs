//! Backward rules against finite differences over random small shapes: broadcast operands (missing leading axes and
//! size-1 axes), non-contiguous leaves (transposed and narrowed views), reductions over random axis sets, and batched
//! matmul with broadcast batches. Tolerance as in `common`.

mod common;

use common::*;
use diffuse_tensor::Tensor;
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
}
