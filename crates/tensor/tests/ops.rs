//! Every tensor operation against a naive ndarray reference in f64, over random shapes (size-1 and empty
//! dimensions included) and random layouts (contiguous, permuted, narrowed, broadcast views).
//!
//! Tolerances: element-wise results are one correctly-rounded-ish f32 operation on exact f32 inputs, so a few ulps
//! (4·2⁻²³ ≈ 5e-7 relative) plus 1e-6 absolute near zero. Sums of n terms accumulate in f64 and round once, so the same
//! bound holds for them; means add one more rounding.

mod common;

use common::*;
use diffuse_tensor::{DType, Device, Tensor};
use ndarray::{ArrayD, Axis, IxDyn};
use proptest::prelude::*;

const ULPS4: f64 = 5e-7;

fn erf(x: f64) -> f64 {
    // Abramowitz–Stegun 7.1.26 is too coarse for a reference; integrate exp(−t²) with Simpson's rule instead.
    let n = 2000;
    let h = x / n as f64;
    let f = |t: f64| (-t * t).exp();
    let mut s = f(0.0) + f(x);
    for i in 1..n {
        s += if i % 2 == 1 { 4.0 } else { 2.0 } * f(i as f64 * h);
    }
    s * h / 3.0 * 2.0 / std::f64::consts::PI.sqrt()
}

fn unary_reference(name: &str, x: f64) -> f64 {
    let sig = 1.0 / (1.0 + (-x).exp());
    match name {
        "neg" => -x,
        "exp" => x.exp(),
        "log" => x.ln(),
        "sqrt" => x.sqrt(),
        "rsqrt" => 1.0 / x.sqrt(),
        "abs" => x.abs(),
        "square" => x * x,
        "relu" => x.max(0.0),
        "tanh" => x.tanh(),
        "sigmoid" => sig,
        "silu" => x * sig,
        "gelu" => 0.5 * x * (1.0 + erf(x / 2f64.sqrt())),
        "powf" => x.powf(1.7),
        "clamp" => x.clamp(-0.5, 1.25),
        "affine" => x * 2.5 - 1.0,
        _ => unreachable!(),
    }
}

fn apply_unary(name: &str, t: &Tensor) -> Tensor {
    match name {
        "neg" => t.neg(),
        "exp" => t.exp(),
        "log" => t.log(),
        "sqrt" => t.sqrt(),
        "rsqrt" => t.rsqrt(),
        "abs" => t.abs(),
        "square" => t.square(),
        "relu" => t.relu(),
        "tanh" => t.tanh(),
        "sigmoid" => t.sigmoid(),
        "silu" => t.silu(),
        "gelu" => t.gelu(),
        "powf" => t.powf(1.7),
        "clamp" => t.clamp(-0.5, 1.25),
        "affine" => t.affine(2.5, -1.0),
        _ => unreachable!(),
    }
    .unwrap()
}

const UNARY: [&str; 15] = [
    "neg", "exp", "log", "sqrt", "rsqrt", "abs", "square", "relu", "tanh", "sigmoid", "silu",
    "gelu", "powf", "clamp", "affine",
];

/// Two shapes that broadcast together, each derived from a common result shape by dropping leading dimensions and
/// setting some dimensions to 1 (so broadcasting happens in every position).
fn broadcast_pair() -> impl Strategy<Value = (Vec<usize>, Vec<usize>)> {
    shape(4).prop_flat_map(|out| {
        let rank = out.len();
        let derive = move |out: Vec<usize>| {
            (0..=rank, prop::collection::vec(any::<bool>(), rank)).prop_map(move |(drop, ones)| {
                out.iter()
                    .zip(&ones)
                    .skip(drop)
                    .map(|(&n, &one)| if one { 1 } else { n })
                    .collect::<Vec<usize>>()
            })
        };
        (derive(out.clone()), derive(out))
    })
}

fn reference_broadcast(
    a: &ArrayD<f64>,
    b: &ArrayD<f64>,
    f: impl Fn(f64, f64) -> f64,
) -> ArrayD<f64> {
    let rank = a.ndim().max(b.ndim());
    let pad = |x: &ArrayD<f64>| {
        let mut s = vec![1; rank - x.ndim()];
        s.extend_from_slice(x.shape());
        x.to_shape(IxDyn(&s)).unwrap().to_owned()
    };
    let (a, b) = (pad(a), pad(b));
    let shape: Vec<usize> = (0..rank)
        .map(|d| {
            a.shape()[d].max(b.shape()[d]) * usize::from(a.shape()[d] != 0 && b.shape()[d] != 0)
        })
        .collect();
    let a = a.broadcast(IxDyn(&shape)).unwrap();
    let b = b.broadcast(IxDyn(&shape)).unwrap();
    ndarray::Zip::from(&a).and(&b).map_collect(|&x, &y| f(x, y))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn views_materialise_like_ndarray((t, a) in any_tensor(4)) {
        assert_close(&t.to_vec().unwrap(), &a, 0.0, 0.0)?;
        let c = t.contiguous().unwrap();
        prop_assert!(c.is_contiguous());
        assert_close(&c.to_vec().unwrap(), &a, 0.0, 0.0)?;
    }

    #[test]
    fn unary_ops_match_reference((t, a) in any_tensor(4), op in 0..UNARY.len()) {
        let name = UNARY[op];
        let got = apply_unary(name, &t);
        prop_assert_eq!(got.shape(), t.shape());
        // gelu's erf costs a few more ulps; the reference erf is itself accurate to ~1e-12.
        assert_close(&got.to_vec().unwrap(), &a.mapv(|x| unary_reference(name, x)), 1e-6, ULPS4 * 2.0)?;
    }

    #[test]
    fn binary_ops_broadcast_like_numpy(
        (sa, sb) in broadcast_pair(),
        op in 0..7usize,
        seed in any::<u64>(),
    ) {
        let (ta, aa) = draw(tensor_of(sa), seed ^ 1);
        let (tb, ab) = draw(tensor_of(sb), seed ^ 2);
        let (got, f): (Tensor, fn(f64, f64) -> f64) = match op {
            0 => (ta.add(&tb).unwrap(), |x, y| x + y),
            1 => (ta.sub(&tb).unwrap(), |x, y| x - y),
            2 => (ta.mul(&tb).unwrap(), |x, y| x * y),
            3 => (ta.div(&tb).unwrap(), |x, y| x / y),
            4 => (ta.maximum(&tb).unwrap(), f64::max),
            5 => (ta.minimum(&tb).unwrap(), f64::min),
            _ => (ta.silu_backward(&tb).unwrap(), |x, g| {
                let s = 1.0 / (1.0 + (-x).exp());
                g * s * (1.0 + x * (1.0 - s))
            }),
        };
        let want = reference_broadcast(&aa, &ab, f);
        prop_assert_eq!(got.shape(), want.shape());
        assert_close(&got.to_vec().unwrap(), &want, 1e-6, ULPS4)?;
    }

    #[test]
    fn reductions_match_reference((t, a) in nonempty_shape(4).prop_flat_map(tensor_of), mask in prop::collection::vec(any::<bool>(), 4), keepdim in any::<bool>()) {
        let dims: Vec<usize> = (0..t.rank()).filter(|&d| mask[d]).collect();
        let mut sum = a.clone();
        let mut max = a.clone();
        for &d in dims.iter().rev() {
            sum = sum.sum_axis(Axis(d));
            max = max.map_axis(Axis(d), |lane| lane.iter().copied().fold(f64::NEG_INFINITY, f64::max));
        }
        let count: usize = dims.iter().map(|&d| t.shape()[d]).product();
        let expect_shape: Vec<usize> = (0..t.rank()).filter_map(|d| if mask[d] { keepdim.then_some(1) } else { Some(t.shape()[d]) }).collect();
        let s = t.sum(&dims, keepdim).unwrap();
        prop_assert_eq!(s.shape(), &expect_shape[..]);
        assert_close(&s.to_vec().unwrap(), &sum, 1e-6, ULPS4)?;
        let m = t.mean(&dims, keepdim).unwrap();
        assert_close(&m.to_vec().unwrap(), &sum.mapv(|x| x / count as f64), 1e-6, 2.0 * ULPS4)?;
        assert_close(&t.max(&dims, keepdim).unwrap().to_vec().unwrap(), &max, 0.0, 0.0)?;
        let min = t.min(&dims, keepdim).unwrap().to_vec().unwrap();
        let neg_max = t.neg().unwrap().max(&dims, keepdim).unwrap().to_vec().unwrap();
        prop_assert_eq!(min, neg_max.iter().map(|x| -x).collect::<Vec<_>>());
    }

    #[test]
    fn argmax_picks_first_maximum((t, a) in nonempty_shape(3).prop_flat_map(tensor_of), dim in 0..3usize) {
        let dim = dim % t.rank();
        let got = t.argmax(dim, false).unwrap().to_vec().unwrap();
        let want = a.map_axis(Axis(dim), |lane| {
            let mut best = 0;
            for (j, &x) in lane.iter().enumerate() { if x > lane[best] { best = j; } }
            best as f64
        });
        assert_close(&got, &want, 0.0, 0.0)?;
    }

    #[test]
    fn concat_and_stack_match_reference(s in nonempty_shape(3), dim in 0..3usize, extra in 0usize..3, seed in any::<u64>()) {
        let dim = dim % s.len();
        let mut s2 = s.clone();
        s2[dim] = extra;
        let (t1, a1) = draw(tensor_of(s.clone()), seed ^ 3);
        let (t2, a2) = draw(tensor_of(s2), seed ^ 4);
        let (t3, a3) = draw(tensor_of(s.clone()), seed ^ 5);
        let got = Tensor::concat(&[&t1, &t2], dim).unwrap();
        let want = ndarray::concatenate(Axis(dim), &[a1.view(), a2.view()]).unwrap();
        prop_assert_eq!(got.shape(), want.shape());
        assert_close(&got.to_vec().unwrap(), &want, 0.0, 0.0)?;
        let stacked = Tensor::stack(&[&t1, &t3], dim).unwrap();
        let want = ndarray::stack(Axis(dim), &[a1.view(), a3.view()]).unwrap();
        prop_assert_eq!(stacked.shape(), want.shape());
        assert_close(&stacked.to_vec().unwrap(), &want, 0.0, 0.0)?;
    }

    #[test]
    fn index_select_and_its_gradient_match_reference((t, a) in nonempty_shape(3).prop_flat_map(tensor_of), dim in 0..3usize, picks in prop::collection::vec(0usize..64, 0..6)) {
        let dim = dim % t.rank();
        let n = t.shape()[dim];
        let idx: Vec<usize> = picks.iter().map(|p| p % n).collect();
        let got = t.index_select(dim, &idx).unwrap();
        let want = a.select(Axis(dim), &idx);
        prop_assert_eq!(got.shape(), want.shape());
        assert_close(&got.to_vec().unwrap(), &want, 0.0, 0.0)?;
        // The gradient of a sum of selected slices counts how often each slice was picked.
        let ones = Tensor::ones(got.shape(), DType::F32, Device::Cpu).unwrap();
        let back = ones.index_select_backward(dim, n, &idx).unwrap();
        let mut counts = ArrayD::<f64>::zeros(IxDyn(t.shape()));
        for &i in &idx { counts.index_axis_mut(Axis(dim), i).mapv_inplace(|c| c + 1.0); }
        assert_close(&back.to_vec().unwrap(), &counts, 0.0, 0.0)?;
    }

    #[test]
    fn gather_matches_reference((t, a) in nonempty_shape(3).prop_flat_map(tensor_of), dim in 0..3usize, k in 1usize..4, seed in any::<u64>()) {
        let dim = dim % t.rank();
        let mut ishape = t.shape().to_vec();
        ishape[dim] = k;
        let n: usize = ishape.iter().product();
        let index: Vec<usize> = (0..n as u64).map(|i| ((i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ seed) >> 7) as usize % t.shape()[dim]).collect();
        let got = t.gather(dim, &ishape, &index).unwrap();
        let idx = ArrayD::from_shape_vec(IxDyn(&ishape), index.clone()).unwrap();
        let want = ArrayD::from_shape_fn(IxDyn(&ishape), |pos| {
            let mut src = pos.clone();
            src[dim] = idx[&pos];
            a[src]
        });
        assert_close(&got.to_vec().unwrap(), &want, 0.0, 0.0)?;
        let back = got.gather_backward(dim, t.shape(), &index).unwrap();
        let mut want_back = ArrayD::<f64>::zeros(IxDyn(t.shape()));
        for (pos, &g) in want.indexed_iter() {
            let mut dst = pos.clone();
            dst[dim] = idx[&pos];
            want_back[dst] += g;
        }
        assert_close(&back.to_vec().unwrap(), &want_back, 1e-6, ULPS4)?;
    }

    #[test]
    fn where_select_broadcasts_three_ways((sa, sb) in broadcast_pair(), seed in any::<u64>()) {
        let (ta, aa) = draw(tensor_of(sa.clone()), seed ^ 6);
        let (tb, ab) = draw(tensor_of(sb), seed ^ 7);
        let (tc, ac) = draw(tensor_of(sa), seed ^ 8);
        let cond = tc.maximum(&Tensor::scalar(0.0, Device::Cpu).unwrap()).unwrap();
        let got = cond.where_select(&ta, &tb).unwrap();
        let both = reference_broadcast(&aa, &ab, |x, _| x);
        let other = reference_broadcast(&aa, &ab, |_, y| y);
        let c = reference_broadcast(&ac.mapv(|x| x.max(0.0)), &ab, |x, _| x);
        let want = ndarray::Zip::from(&c).and(&both).and(&other).map_collect(|&c, &x, &y| if c != 0.0 { x } else { y });
        assert_close(&got.to_vec().unwrap(), &want, 0.0, 0.0)?;
    }

    #[test]
    fn upsample_nearest2x_and_gradient_match_reference(n in 1usize..3, c in 1usize..3, h in 1usize..5, w in 1usize..5, data in prop::collection::vec(-2.0f32..2.0, 64)) {
        let src: Vec<f32> = data.iter().cycle().take(n * c * h * w).copied().collect();
        let t = Tensor::from_vec(src.clone(), &[n, c, h, w], Device::Cpu).unwrap();
        let up = t.upsample_nearest2x().unwrap();
        prop_assert_eq!(up.shape(), &[n, c, 2 * h, 2 * w]);
        let got = up.to_vec().unwrap();
        for p in 0..n * c { for y in 0..2 * h { for x in 0..2 * w {
            prop_assert_eq!(got[(p * 2 * h + y) * 2 * w + x], src[(p * h + y / 2) * w + x / 2]);
        }}}
        let back = up.upsample_nearest2x_backward().unwrap().to_vec().unwrap();
        for (b, s) in back.iter().zip(&src) { prop_assert!((b - 4.0 * s).abs() <= 4.0 * s.abs() * 1e-6); }
    }

    #[test]
    fn half_precision_rounds_once((t, a) in any_tensor(3), bf in any::<bool>()) {
        let dtype = if bf { DType::BF16 } else { DType::F16 };
        let h = t.to_dtype(dtype).unwrap();
        prop_assert_eq!(h.dtype(), dtype);
        // One rounding to 8 (bf16) or 11 (f16) significant bits, in the normal range of the inputs (|x| < 3).
        let rel = if bf { 2f64.powi(-8) } else { 2f64.powi(-11) };
        assert_close(&h.to_vec().unwrap(), &a, 6.1e-5, rel)?;
        let doubled = h.mul_scalar(2.0).unwrap();
        prop_assert_eq!(doubled.dtype(), dtype);
        assert_close(&doubled.to_vec().unwrap(), &a.mapv(|x| 2.0 * x), 1.3e-4, rel)?;
    }
}

#[test]
fn reshape_of_a_permuted_view_copies_and_keeps_order() {
    let t = Tensor::arange(0.0, 6.0, 1.0, Device::Cpu)
        .unwrap()
        .reshape(&[2, 3])
        .unwrap();
    let r = t.transpose(0, 1).unwrap().reshape(&[6]).unwrap();
    assert_eq!(r.to_vec().unwrap(), vec![0.0, 3.0, 1.0, 4.0, 2.0, 5.0]);
    let f = Tensor::zeros(&[2, 3, 4, 5], DType::F32, Device::Cpu)
        .unwrap()
        .flatten(1, 2)
        .unwrap();
    assert_eq!(f.shape(), &[2, 12, 5]);
}

#[test]
fn squeeze_unsqueeze_round_trip() {
    let t = Tensor::arange(0.0, 6.0, 1.0, Device::Cpu)
        .unwrap()
        .reshape(&[2, 3])
        .unwrap();
    let u = t.unsqueeze(1).unwrap();
    assert_eq!(u.shape(), &[2, 1, 3]);
    assert_eq!(u.squeeze(1).unwrap().to_vec().unwrap(), t.to_vec().unwrap());
    assert_eq!(t.unsqueeze(2).unwrap().shape(), &[2, 3, 1]);
}

#[test]
fn arange_and_full_create_what_they_say() {
    assert_eq!(
        Tensor::arange(1.0, 2.0, 0.25, Device::Cpu)
            .unwrap()
            .to_vec()
            .unwrap(),
        vec![1.0, 1.25, 1.5, 1.75]
    );
    assert_eq!(
        Tensor::arange(3.0, 0.0, -1.0, Device::Cpu)
            .unwrap()
            .to_vec()
            .unwrap(),
        vec![3.0, 2.0, 1.0]
    );
    let f = Tensor::full(&[2, 2], 7.5, DType::BF16, Device::Cpu).unwrap();
    assert_eq!(
        (f.dtype(), f.to_vec().unwrap()),
        (DType::BF16, vec![7.5; 4])
    );
    assert_eq!(
        Tensor::scalar(2.0, Device::Cpu)
            .unwrap()
            .to_scalar()
            .unwrap(),
        2.0
    );
}

#[test]
fn q_sample_mixes_data_and_the_philox_stream_per_sample() {
    let x0 = Tensor::from_vec(
        (0..12).map(|i| i as f32 / 6.0 - 1.0).collect(),
        &[2, 2, 3],
        Device::Cpu,
    )
    .unwrap();
    let (sa, sb) = ([0.9f32, 0.3], [0.435_889_9_f32, 0.953_939_2]);
    let (x_t, eps) = x0.q_sample(&sa, &sb, 7, 100).unwrap();
    let mut stream = vec![0.0; 12];
    diffuse_cpu_kernels::philox::fill_normal(7, 100, &mut stream);
    assert_eq!(eps.to_vec().unwrap(), stream);
    let (x, xt) = (x0.to_vec().unwrap(), x_t.to_vec().unwrap());
    for i in 0..12 {
        let b = i / 6;
        let want = f64::from(sa[b]) * f64::from(x[i]) + f64::from(sb[b]) * f64::from(stream[i]);
        assert!(
            (f64::from(xt[i]) - want).abs() <= 1e-6,
            "element {i}: {} vs {want}",
            xt[i]
        );
    }
    assert!(x0
        .q_sample(&sa[..1], &sb, 7, 0)
        .unwrap_err()
        .to_string()
        .contains("2 samples"));
}

#[test]
fn randn_is_the_philox_normal_stream_from_its_offset() {
    let t = Tensor::randn(&[2, 3], 42, 5, Device::Cpu).unwrap();
    assert_eq!(t.shape(), &[2, 3]);
    let want: Vec<f32> = (5..11)
        .map(|i| diffuse_cpu_kernels::philox::normal_at(42, i))
        .collect();
    assert_eq!(t.to_vec().unwrap(), want);
}

/// `accumulate` gives `add`'s bits, writes into an operand it owns alone (either one), and never into a buffer
/// something else still holds.
#[test]
fn accumulate_adds_in_place_only_into_an_unshared_buffer() {
    let x = Tensor::randn(&[3, 50], 1, 0, Device::Cpu).unwrap();
    let y = Tensor::randn(&[3, 50], 2, 0, Device::Cpu).unwrap();
    let sum = x.add(&y).unwrap().to_vec().unwrap();
    let (x_values, y_values) = (x.to_vec().unwrap(), y.to_vec().unwrap());

    // Both shared (the originals are still held): a new tensor, and neither input changes.
    let total = x.clone().accumulate(y.clone()).unwrap();
    assert!(!total.same_storage(&x) && !total.same_storage(&y));
    assert_eq!(total.to_vec().unwrap(), sum);
    assert_eq!(
        (x.to_vec().unwrap(), y.to_vec().unwrap()),
        (x_values.clone(), y_values)
    );

    // The left one owned alone (written in place: the unit test in src/tensor.rs checks the buffer).
    let total = x.mul_scalar(1.0).unwrap().accumulate(y.clone()).unwrap();
    assert_eq!(total.to_vec().unwrap(), sum);
    // Only the right one owned alone: the held left operand is untouched.
    let right = y.mul_scalar(1.0).unwrap();
    let total = x.clone().accumulate(right).unwrap();
    assert_eq!(total.to_vec().unwrap(), sum);
    assert_eq!(x.to_vec().unwrap(), x_values);

    // A view (a transposed operand) and a broadcast shape fall back to add.
    let t = y
        .transpose(0, 1)
        .unwrap()
        .contiguous()
        .unwrap()
        .transpose(0, 1)
        .unwrap();
    assert_eq!(
        x.mul_scalar(1.0)
            .unwrap()
            .accumulate(t)
            .unwrap()
            .to_vec()
            .unwrap(),
        sum
    );
    let row = Tensor::randn(&[1, 50], 3, 0, Device::Cpu).unwrap();
    let broadcast = x.add(&row).unwrap().to_vec().unwrap();
    assert_eq!(
        x.mul_scalar(1.0)
            .unwrap()
            .accumulate(row)
            .unwrap()
            .to_vec()
            .unwrap(),
        broadcast
    );
}
