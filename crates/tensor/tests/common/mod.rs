//! Shared strategies for the tensor property tests: random shapes, and tensors of a given shape built as contiguous,
//! permuted, narrowed or broadcast views, each with an ndarray mirror (f64) built by the same view operations.

#![allow(dead_code)]

use diffuse_tensor::{Device, Tensor};
use ndarray::{ArrayD, Axis, IxDyn, Slice};
use proptest::prelude::*;

/// Ranks 0..=4, dimensions 0..=4 with 1 common (size-1 and empty dimensions are the awkward cases).
pub fn shape(max_rank: usize) -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(
        prop_oneof![2 => Just(1usize), 1 => Just(0usize), 6 => 2usize..5],
        0..=max_rank,
    )
}

/// Like `shape`, but no empty dimensions (for reductions that need an element).
pub fn nonempty_shape(max_rank: usize) -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(prop_oneof![1 => Just(1usize), 3 => 2usize..6], 1..=max_rank)
}

fn values(n: usize) -> impl Strategy<Value = Vec<f32>> {
    prop::collection::vec(-3.0f32..3.0, n)
}

fn numel(s: &[usize]) -> usize {
    s.iter().product()
}

/// How the test tensor is laid out in memory.
#[derive(Clone, Debug)]
pub enum ViewKind {
    Contiguous,
    /// base.permute(perm) where base has the permuted shape.
    Permuted(Vec<usize>),
    /// base has `extra` more elements along `dim`; the view starts at `start`.
    Narrowed {
        dim: usize,
        extra: usize,
        start: usize,
    },
    /// base has size 1 along the marked dimensions and is broadcast to the shape.
    Broadcast(Vec<bool>),
}

pub fn view_kind(shape: Vec<usize>) -> impl Strategy<Value = ViewKind> {
    let rank = shape.len();
    let perm = Just((0..rank).collect::<Vec<usize>>()).prop_shuffle();
    let narrow = (0..rank.max(1), 1usize..3)
        .prop_flat_map(|(dim, extra)| (Just(dim), Just(extra), 0..=extra));
    let ones = prop::collection::vec(any::<bool>(), rank);
    prop_oneof![
        Just(ViewKind::Contiguous),
        perm.prop_map(ViewKind::Permuted),
        narrow.prop_map(move |(dim, extra, start)| if rank == 0 {
            ViewKind::Contiguous
        } else {
            ViewKind::Narrowed { dim, extra, start }
        }),
        ones.prop_map(ViewKind::Broadcast),
    ]
}

/// A tensor of exactly `shape`, laid out by a random view kind, with its f64 mirror.
pub fn tensor_of(shape: Vec<usize>) -> impl Strategy<Value = (Tensor, ArrayD<f64>)> {
    view_kind(shape.clone()).prop_flat_map(move |kind| {
        let base_shape = base_shape(&shape, &kind);
        let shape = shape.clone();
        values(numel(&base_shape)).prop_map(move |data| build(&shape, &base_shape, &kind, data))
    })
}

pub fn any_tensor(max_rank: usize) -> impl Strategy<Value = (Tensor, ArrayD<f64>)> {
    shape(max_rank).prop_flat_map(tensor_of)
}

fn base_shape(shape: &[usize], kind: &ViewKind) -> Vec<usize> {
    match kind {
        ViewKind::Contiguous => shape.to_vec(),
        ViewKind::Permuted(p) => {
            let mut b = vec![0; shape.len()];
            for (i, &d) in p.iter().enumerate() {
                b[d] = shape[i];
            }
            b
        }
        ViewKind::Narrowed { dim, extra, .. } => {
            let mut b = shape.to_vec();
            b[*dim] += extra;
            b
        }
        ViewKind::Broadcast(ones) => shape
            .iter()
            .zip(ones)
            .map(|(&n, &one)| if one { 1 } else { n })
            .collect(),
    }
}

fn build(
    shape: &[usize],
    base_shape: &[usize],
    kind: &ViewKind,
    data: Vec<f32>,
) -> (Tensor, ArrayD<f64>) {
    let arr = ArrayD::from_shape_vec(
        IxDyn(base_shape),
        data.iter().map(|&x| f64::from(x)).collect(),
    )
    .unwrap();
    let base = Tensor::from_vec(data, base_shape, Device::Cpu).unwrap();
    let (t, a) = match kind {
        ViewKind::Contiguous => (base, arr),
        ViewKind::Permuted(p) => (base.permute(p).unwrap(), arr.permuted_axes(IxDyn(p))),
        ViewKind::Narrowed { dim, start, .. } => {
            let len = shape[*dim];
            (
                base.narrow(*dim, *start, len).unwrap(),
                arr.slice_axis(Axis(*dim), Slice::from(*start..*start + len))
                    .to_owned(),
            )
        }
        ViewKind::Broadcast(_) => (
            base.broadcast_to(shape).unwrap(),
            arr.broadcast(IxDyn(shape)).unwrap().to_owned(),
        ),
    };
    assert_eq!(t.shape(), shape);
    (t, a.as_standard_layout().to_owned())
}

/// Asserts |got − want| ≤ abs + rel·|want| element-wise, treating equal infinities and NaN pairs as equal.
pub fn assert_close(
    got: &[f32],
    want: &ArrayD<f64>,
    abs: f64,
    rel: f64,
) -> Result<(), TestCaseError> {
    let want: Vec<f64> = want.iter().copied().collect();
    prop_assert_eq!(got.len(), want.len());
    for (i, (&g, &w)) in got.iter().zip(&want).enumerate() {
        let g = f64::from(g);
        let same_special = (g.is_nan() && w.is_nan()) || (g.is_infinite() && g == w);
        prop_assert!(
            same_special || (g - w).abs() <= abs + rel * w.abs(),
            "element {}: got {}, want {}",
            i,
            g,
            w
        );
    }
    Ok(())
}

/// Draws one value of `strategy` deterministically from `seed` (for tests whose shapes depend on each other).
pub fn draw<S: Strategy>(strategy: S, seed: u64) -> S::Value {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::{RngAlgorithm, TestRng, TestRunner};
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let mut runner = TestRunner::new_with_rng(
        Default::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &bytes),
    );
    strategy
        .new_tree(&mut runner)
        .expect("strategy produces a value")
        .current()
}
