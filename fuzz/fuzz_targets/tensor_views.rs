//! Tensors of arbitrary shape (huge dimensions allowed beside a zero one), taken through a chain of views and then
//! through operations. Every view must read exactly the elements its layout names (checked against index arithmetic
//! on the base data), and every operation must return a result or an error, never panic.
#![no_main]

use arbitrary::Arbitrary;
use diffuse_tensor::{DType, Device, Tensor};
use libfuzzer_sys::fuzz_target;

/// The most elements a base tensor may hold, so that one run stays fast.
const MAX_ELEMENTS: usize = 256;

#[derive(Arbitrary, Debug)]
struct Input {
    shape: Vec<usize>,
    views: Vec<View>,
    ops: Vec<Op>,
}

#[derive(Arbitrary, Debug)]
enum View {
    Permute(Vec<usize>),
    Transpose(usize, usize),
    Narrow {
        dim: usize,
        start: usize,
        len: usize,
    },
    BroadcastTo(Vec<usize>),
    Unsqueeze(usize),
    Squeeze(usize),
    Reshape(Vec<usize>),
    Flatten(usize, usize),
}

#[derive(Arbitrary, Debug)]
enum Op {
    AddSelf,
    AddBroadcast(Vec<usize>),
    Sum(Vec<usize>, bool),
    Mean(Vec<usize>, bool),
    Max(Vec<usize>, bool),
    Argmax(usize, bool),
    Softmax(usize),
    MatmulTransposed,
    ConcatSelf(usize),
    StackSelf(usize),
    IndexSelect(usize, Vec<usize>),
    Gather(usize, Vec<usize>, Vec<usize>),
    Upsample,
    Exp,
    Clamp(f32, f32),
    ToDtype(bool),
    Contiguous,
}

fuzz_target!(|input: Input| {
    let Ok(numel) = checked_product(&input.shape) else {
        return;
    };
    if numel > MAX_ELEMENTS {
        return;
    }
    let data: Vec<f32> = (0..numel).map(|i| i as f32).collect();
    let base = Tensor::from_vec(data.clone(), &input.shape, Device::Cpu).expect("shape fits");
    let mut t = base.clone();
    for view in &input.views {
        let next = match view {
            View::Permute(dims) => t.permute(dims),
            View::Transpose(a, b) => t.transpose(*a, *b),
            View::Narrow { dim, start, len } => t.narrow(*dim, *start, *len),
            View::BroadcastTo(shape) if checked_product(shape).is_ok_and(|n| n <= MAX_ELEMENTS) => {
                t.broadcast_to(shape)
            }
            View::BroadcastTo(_) => continue,
            View::Unsqueeze(dim) => t.unsqueeze(*dim),
            View::Squeeze(dim) => t.squeeze(*dim),
            View::Reshape(shape) => t.reshape(shape),
            View::Flatten(start, end) => t.flatten(*start, *end),
        };
        if let Ok(next) = next {
            t = next;
        }
    }
    // A reshape of a non-contiguous view copies; only views still over the base storage can be checked by its layout.
    if t.same_storage(&base) {
        check_view_reads_its_layout(&t, &data);
    }
    for op in &input.ops {
        if would_allocate_too_much(op, &t) {
            continue;
        }
        let result = match op {
            Op::AddSelf => t.add(&t),
            Op::AddBroadcast(shape) if checked_product(shape).is_ok_and(|n| n <= MAX_ELEMENTS) => {
                Tensor::zeros(shape, DType::F32, Device::Cpu).and_then(|z| t.add(&z))
            }
            Op::AddBroadcast(_) => continue,
            Op::Sum(dims, keep) => t.sum(dims, *keep),
            Op::Mean(dims, keep) => t.mean(dims, *keep),
            Op::Max(dims, keep) => t.max(dims, *keep),
            Op::Argmax(dim, keep) => t.argmax(*dim, *keep),
            Op::Softmax(dim) => t.softmax(*dim),
            Op::MatmulTransposed => t
                .transpose(t.rank().saturating_sub(2), t.rank().saturating_sub(1))
                .and_then(|tt| t.matmul(&tt)),
            Op::ConcatSelf(dim) => Tensor::concat(&[&t, &t], *dim),
            Op::StackSelf(dim) => Tensor::stack(&[&t, &t], *dim),
            Op::IndexSelect(dim, indices) if indices.len() <= MAX_ELEMENTS => {
                t.index_select(*dim, indices)
            }
            Op::IndexSelect(..) => continue,
            Op::Gather(dim, shape, index) if index.len() <= MAX_ELEMENTS => {
                t.gather(*dim, shape, index)
            }
            Op::Gather(..) => continue,
            Op::Upsample => t.upsample_nearest2x(),
            Op::Exp => t.exp(),
            Op::Clamp(lo, hi) => t.clamp(*lo, *hi),
            Op::ToDtype(half) => {
                let dtype = if *half { DType::F16 } else { DType::BF16 };
                t.to_dtype(dtype).and_then(|h| h.to_dtype(DType::F32))
            }
            Op::Contiguous => t.contiguous(),
        };
        // Only small results are kept, so that a chain of concatenations cannot grow without bound.
        if let Ok(next) = result {
            let values = next.to_vec().expect("an f32 CPU tensor reads back");
            assert_eq!(values.len(), next.numel());
            if next.numel() <= MAX_ELEMENTS {
                t = next;
            }
        }
    }
});

/// Reads every element of `view` by index arithmetic on the base data (base storage is `data`, contiguous from 0)
/// and compares with what the tensor's own copy returns.
fn check_view_reads_its_layout(view: &Tensor, data: &[f32]) {
    let got = view.to_vec().expect("an f32 CPU view reads back");
    assert_eq!(got.len(), view.numel());
    let layout = view.layout();
    let mut index = vec![0usize; view.rank()];
    for (flat, value) in got.iter().enumerate() {
        let mut rest = flat;
        for d in (0..view.rank()).rev() {
            index[d] = rest % view.shape()[d];
            rest /= view.shape()[d];
        }
        let at = layout.offset()
            + index
                .iter()
                .zip(layout.strides())
                .map(|(i, s)| i * s)
                .sum::<usize>();
        assert_eq!(
            *value, data[at],
            "element {index:?} of a view read the wrong value"
        );
    }
}

/// True when `op` on `t` would legitimately ask for a large buffer: an empty tensor may have huge dimensions, and
/// reducing or indexing away its zero one leaves a result that really has that many elements. Such calls are skipped;
/// results whose size overflows `usize` are not, since those must be refused with an error before allocating.
fn would_allocate_too_much(op: &Op, t: &Tensor) -> bool {
    let shape = t.shape();
    let without = |dims: &[usize]| -> Vec<usize> {
        (0..shape.len())
            .filter(|d| !dims.contains(d))
            .map(|d| shape[d])
            .collect()
    };
    let out: Vec<usize> = match op {
        Op::Sum(dims, _) | Op::Mean(dims, _) | Op::Max(dims, _) => without(dims),
        Op::Argmax(dim, _) => without(&[*dim]),
        Op::MatmulTransposed if shape.len() >= 2 => {
            let m = shape[shape.len() - 2];
            shape[..shape.len() - 2]
                .iter()
                .copied()
                .chain([m, m])
                .collect()
        }
        Op::IndexSelect(dim, indices) if *dim < shape.len() => {
            let mut out = shape.to_vec();
            out[*dim] = indices.len();
            out
        }
        Op::Gather(_, index_shape, _) => index_shape.clone(),
        _ => return false,
    };
    checked_product(&out).is_ok_and(|n| n > MAX_ELEMENTS * 4)
}

fn checked_product(shape: &[usize]) -> Result<usize, ()> {
    if shape.contains(&0) {
        return Ok(0);
    }
    shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or(())
}
