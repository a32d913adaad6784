//! `Tensor::matmul` against an f64 reference over random shapes: batch dimensions broadcast against each other
//! (size 1 against n, missing leading dimensions), operands given as contiguous tensors, transposed views of a stored
//! transpose, or broadcast views. Tolerance: each output is a k-term f32 dot product (k ≤ 9, |x| < 3), so the rounding
//! error is below k·2⁻²⁴·Σ|a·b| ≤ 9·6e-8·81 ≈ 4.4e-5; 1e-4 absolute plus 1e-5 relative covers it.

use diffuse_tensor::{DType, Device, Tensor};
use proptest::prelude::*;

/// A tensor of `shape` built one of three ways: contiguous, as the transpose of a stored `[.., n, m]`, or broadcast
/// from a size-1 leading dimension. Returns the tensor and its row-major values.
fn operand(shape: &[usize], how: u8, data: &[f32]) -> (Tensor, Vec<f32>) {
    let r = shape.len();
    let n: usize = shape.iter().product();
    let values: Vec<f32> = data.iter().cycle().take(n).copied().collect();
    let contiguous = Tensor::from_vec(values.clone(), shape, Device::Cpu).unwrap();
    match how % 3 {
        0 => (contiguous, values),
        1 => {
            let mut stored = shape.to_vec();
            stored.swap(r - 2, r - 1);
            let t = contiguous
                .transpose(r - 2, r - 1)
                .unwrap()
                .contiguous()
                .unwrap();
            let t = t.reshape(&stored).unwrap().transpose(r - 2, r - 1).unwrap();
            assert!(!t.is_contiguous() || shape[r - 1] == 1 || shape[r - 2] == 1);
            (t, values)
        }
        _ => {
            let mut one = shape.to_vec();
            one[0] = 1;
            let m: usize = one.iter().product();
            let base: Vec<f32> = values[..m].to_vec();
            let t = Tensor::from_vec(base.clone(), &one, Device::Cpu)
                .unwrap()
                .broadcast_to(shape)
                .unwrap();
            let full: Vec<f32> = base.iter().cycle().take(n).copied().collect();
            (t, full)
        }
    }
}

/// Row-major index of `idx` (already reduced for broadcasting) in `shape`.
fn offset(shape: &[usize], idx: &[usize]) -> usize {
    shape
        .iter()
        .zip(idx)
        .fold(0, |acc, (&s, &i)| acc * s + if s == 1 { 0 } else { i })
}

fn reference(
    a: &[f32],
    a_shape: &[usize],
    b: &[f32],
    b_shape: &[usize],
    batch: &[usize],
) -> Vec<f64> {
    let (ra, rb) = (a_shape.len(), b_shape.len());
    let (m, k, n) = (a_shape[ra - 2], a_shape[ra - 1], b_shape[rb - 1]);
    let count: usize = batch.iter().product();
    let mut out = Vec::with_capacity(count * m * n);
    for flat in 0..count {
        let mut idx = vec![0; batch.len()];
        let mut rest = flat;
        for d in (0..batch.len()).rev() {
            idx[d] = rest % batch[d];
            rest /= batch[d];
        }
        let ia = offset(&a_shape[..ra - 2], &idx[batch.len() - (ra - 2)..]) * m * k;
        let ib = offset(&b_shape[..rb - 2], &idx[batch.len() - (rb - 2)..]) * k * n;
        for i in 0..m {
            for j in 0..n {
                let s: f64 = (0..k)
                    .map(|p| f64::from(a[ia + i * k + p]) * f64::from(b[ib + p * n + j]))
                    .sum();
                out.push(s);
            }
        }
    }
    out
}

fn dims() -> impl Strategy<Value = usize> {
    prop_oneof![1 => Just(1usize), 3 => 2usize..10]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn matmul_matches_reference_with_broadcast_batches_and_transposed_views(
        (m, k, n) in (dims(), dims(), dims()),
        batch in prop::collection::vec(prop_oneof![Just(1usize), 2usize..4], 0..3),
        a_ones in prop::collection::vec(any::<bool>(), 3),
        drop_a in 0usize..3,
        (how_a, how_b) in (0u8..3, 0u8..3),
        data in prop::collection::vec(-3.0f32..3.0, 64),
    ) {
        // a keeps a suffix of the batch dims (some forced to 1); b keeps all of them.
        let keep = batch.len().saturating_sub(drop_a);
        let mut a_shape: Vec<usize> = batch[batch.len() - keep..]
            .iter()
            .zip(&a_ones)
            .map(|(&s, &one)| if one { 1 } else { s })
            .collect();
        a_shape.extend([m, k]);
        let mut b_shape = batch.clone();
        b_shape.extend([k, n]);
        let (how_a, how_b) = (
            if a_shape.len() > 2 { how_a } else { how_a % 2 },
            if b_shape.len() > 2 { how_b } else { how_b % 2 },
        );
        let (a, av) = operand(&a_shape, how_a, &data);
        let (b, bv) = operand(&b_shape, how_b, &data[7..]);
        let got = a.matmul(&b).unwrap();
        let mut out_shape = batch.clone();
        out_shape.extend([m, n]);
        prop_assert_eq!(got.shape(), &out_shape[..]);
        let want = reference(&av, &a_shape, &bv, &b_shape, &batch);
        for (i, (&g, &w)) in got.to_vec().unwrap().iter().zip(&want).enumerate() {
            prop_assert!((f64::from(g) - w).abs() <= 1e-4 + 1e-5 * w.abs(), "element {}: {} vs {}", i, g, w);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// A batched input times a rank-2 weight (a linear layer) is computed as one product over all the input's rows
    /// when they lie at one stride; it must equal the per-batch products bit for bit (the GEMM's sum order does not
    /// depend on the row count), for contiguous inputs, inputs at an offset (a narrow of the first axis), rows wider
    /// than k (a narrow of the last axis), and inputs whose rows do not lie at one stride (a transposed view, a batch
    /// broadcast from one).
    #[test]
    fn batched_times_rank2_equals_the_per_batch_products_bit_for_bit(
        batch in prop::collection::vec(1usize..4, 1..3),
        (m, k, n) in (dims(), dims(), (1usize..40)),
        how in 0u8..5,
        data in prop::collection::vec(-3.0f32..3.0, 64),
    ) {
        let mut shape = batch.clone();
        shape.extend([m, k]);
        let r = shape.len();
        let numel: usize = shape.iter().product();
        let values = |len: usize| -> Vec<f32> { data.iter().cycle().take(len).copied().collect() };
        let a = match how {
            0 => Tensor::from_vec(values(numel), &shape, Device::Cpu).unwrap(),
            1 => {
                let mut wider = shape.clone();
                wider[0] += 2;
                let t = Tensor::from_vec(values(wider.iter().product()), &wider, Device::Cpu).unwrap();
                t.narrow(0, 1, shape[0]).unwrap()
            }
            2 => {
                let mut wider = shape.clone();
                wider[r - 1] += 3;
                let t = Tensor::from_vec(values(wider.iter().product()), &wider, Device::Cpu).unwrap();
                t.narrow(r - 1, 2, k).unwrap()
            }
            3 => {
                let mut stored = shape.clone();
                stored.swap(r - 2, r - 1);
                Tensor::from_vec(values(numel), &stored, Device::Cpu).unwrap().transpose(r - 2, r - 1).unwrap()
            }
            _ => {
                let mut one = shape.clone();
                one[0] = 1;
                Tensor::from_vec(values(one.iter().product()), &one, Device::Cpu)
                    .unwrap()
                    .broadcast_to(&shape)
                    .unwrap()
            }
        };
        let w = Tensor::from_vec(values(k * n)[..].iter().rev().copied().collect(), &[k, n], Device::Cpu).unwrap();
        let got = a.matmul(&w).unwrap();
        let mut out_shape = batch.clone();
        out_shape.extend([m, n]);
        prop_assert_eq!(got.shape(), &out_shape[..]);
        let rows = a.reshape(&[numel / k / m, m, k]).unwrap();
        let mut want = Vec::new();
        for i in 0..numel / k / m {
            let one = rows.narrow(0, i, 1).unwrap().reshape(&[m, k]).unwrap();
            want.extend(one.matmul(&w).unwrap().to_vec().unwrap());
        }
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        prop_assert_eq!(bits(&got.to_vec().unwrap()), bits(&want));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// `matmul_bias` (the output starts as the bias and the GEMM accumulates onto it) against the f64 reference plus
    /// the bias, for a batched input through a transposed weight as a linear layer holds it (rows at one stride: one
    /// product over all rows) and for batched weights (one product per batch), inputs contiguous, transposed or
    /// broadcast. The bias adds one rounding to the product's (k ≤ 9, |x| < 3), inside the same tolerance.
    #[test]
    fn matmul_bias_matches_the_reference_plus_the_bias_on_every_row(
        (m, k, n) in (dims(), dims(), (1usize..40)),
        batch in prop::collection::vec(prop_oneof![Just(1usize), 2usize..4], 0..3),
        shared_weight in any::<bool>(),
        how_a in 0u8..3,
        data in prop::collection::vec(-3.0f32..3.0, 64),
    ) {
        let mut a_shape = batch.clone();
        a_shape.extend([m, k]);
        let how_a = if a_shape.len() > 2 { how_a } else { how_a % 2 };
        let (a, av) = operand(&a_shape, how_a, &data);
        let mut b_shape = if shared_weight { vec![] } else { batch.clone() };
        b_shape.extend([k, n]);
        // a weight stored (n, k) and read transposed, as `Linear` does
        let (b, bv) = operand(&b_shape, 1, &data[5..]);
        let bias_values: Vec<f32> = data.iter().rev().cycle().take(n).copied().collect();
        let bias = Tensor::from_vec(bias_values.clone(), &[n], Device::Cpu).unwrap();
        let got = a.matmul_bias(&b, &bias).unwrap();
        let mut out_shape = batch.clone();
        out_shape.extend([m, n]);
        prop_assert_eq!(got.shape(), &out_shape[..]);
        let want = reference(&av, &a_shape, &bv, &b_shape, &batch);
        for (i, (&g, &w)) in got.to_vec().unwrap().iter().zip(&want).enumerate() {
            let w = w + f64::from(bias_values[i % n]);
            prop_assert!((f64::from(g) - w).abs() <= 1e-4 + 1e-5 * w.abs(), "element {}: {} vs {}", i, g, w);
        }
    }
}

#[test]
fn matmul_bias_with_an_empty_sum_is_the_bias_alone() {
    let ones = |s: &[usize]| Tensor::ones(s, DType::F32, Device::Cpu).unwrap();
    let bias = Tensor::from_vec(vec![1.0, -2.0, 0.5], &[3], Device::Cpu).unwrap();
    let c = ones(&[2, 0]).matmul_bias(&ones(&[0, 3]), &bias).unwrap();
    assert_eq!(c.to_vec().unwrap(), vec![1.0, -2.0, 0.5, 1.0, -2.0, 0.5]);
    let empty = ones(&[0, 2]).matmul_bias(&ones(&[2, 3]), &bias).unwrap();
    assert_eq!(empty.shape(), &[0, 3]);
}

#[test]
fn matmul_bias_rejects_a_bias_that_is_not_one_value_per_column() {
    let a = Tensor::zeros(&[2, 3], DType::F32, Device::Cpu).unwrap();
    let b = Tensor::zeros(&[3, 4], DType::F32, Device::Cpu).unwrap();
    for shape in [&[3][..], &[1, 4], &[]] {
        let bias = Tensor::zeros(shape, DType::F32, Device::Cpu).unwrap();
        let msg = a.matmul_bias(&b, &bias).unwrap_err().to_string();
        assert!(
            msg.contains("bias")
                && msg.contains("4 columns")
                && msg.contains(&format!("{shape:?}")),
            "{msg}"
        );
    }
}

#[test]
fn matmul_rejects_mismatched_inner_dimensions_naming_both_shapes() {
    let a = Tensor::zeros(&[2, 3], DType::F32, Device::Cpu).unwrap();
    let b = Tensor::zeros(&[4, 5], DType::F32, Device::Cpu).unwrap();
    let msg = a.matmul(&b).unwrap_err().to_string();
    assert!(msg.contains("[2, 3]") && msg.contains("[4, 5]"), "{msg}");
}

#[test]
fn matmul_with_empty_dimensions_gives_empty_or_zero_results() {
    let z = |s: &[usize]| Tensor::zeros(s, DType::F32, Device::Cpu).unwrap();
    assert_eq!(z(&[0, 3]).matmul(&z(&[3, 2])).unwrap().shape(), &[0, 2]);
    assert_eq!(
        z(&[2, 0, 3]).matmul(&z(&[3, 2])).unwrap().shape(),
        &[2, 0, 2]
    );
    assert_eq!(
        z(&[0, 2, 3]).matmul(&z(&[3, 2])).unwrap().shape(),
        &[0, 2, 2]
    );
    // k = 0: every output is an empty sum.
    let ones = |s: &[usize]| Tensor::ones(s, DType::F32, Device::Cpu).unwrap();
    let c = ones(&[2, 0]).matmul(&ones(&[0, 3])).unwrap();
    assert_eq!(c.to_vec().unwrap(), vec![0.0; 6]);
}

#[test]
fn matmul_rejects_rank_one_operands() {
    let a = Tensor::zeros(&[3], DType::F32, Device::Cpu).unwrap();
    let b = Tensor::zeros(&[3, 2], DType::F32, Device::Cpu).unwrap();
    assert!(a
        .matmul(&b)
        .unwrap_err()
        .to_string()
        .contains("two dimensions"));
}

#[test]
fn matmul_copies_batches_that_no_single_stride_walks() {
    // [1, 3, 2, 2] broadcast to [2, 3, 2, 2]: batch strides (0, 4) cannot be one stride.
    let a = Tensor::arange(0.0, 12.0, 1.0, Device::Cpu)
        .unwrap()
        .reshape(&[1, 3, 2, 2])
        .unwrap();
    let a = a.broadcast_to(&[2, 3, 2, 2]).unwrap();
    let eye = Tensor::from_vec(vec![1.0, 0.0, 0.0, 1.0], &[2, 2], Device::Cpu).unwrap();
    let got = a.matmul(&eye).unwrap().to_vec().unwrap();
    let want: Vec<f32> = (0..24).map(|i| (i % 12) as f32).collect();
    assert_eq!(got, want);
}
