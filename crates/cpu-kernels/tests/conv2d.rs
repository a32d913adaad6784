//! conv2d forward and backward against a direct f64 reference: the forward element by element, the gradients against
//! central finite differences of the reference forward, and all three against the adjoint identities.
//!
//! Tolerance: an output (or gradient) element is a T-term f32 sum computed by GEMM, plus at most two more roundings
//! (bias add / col2im accumulation). As for GEMM we allow |got − exact| ≤ 2·(T + 3)·2^-24·M, where M is the same
//! sum taken over absolute values (computed exactly by running the f64 reference on |x|, |w|, |b|, |dy|).
//! Finite differences of the f64 reference are exact up to ~1e-14 here because the convolution is linear in each of
//! its arguments, so they serve as the exact gradient.
//!
//! Winograd F(2×2, 3×3) rounds differently; its tolerance is derived at [`winograd_tolerance`].

mod common;

use common::{assert_within, random_vec, with_threads, F32_UNIT_ROUNDOFF};
use diffuse_cpu_kernels::conv2d::{
    conv2d_backward_input, conv2d_backward_input_with, conv2d_backward_weight,
    conv2d_backward_weight_with, conv2d_forward, conv2d_forward_add_with, conv2d_forward_with,
    Conv2dAddends, Conv2dAlgorithm, Conv2dShape, DIRECT_MAX_CHANNELS, WINOGRAD_MIN_CHANNELS,
};
use proptest::prelude::*;

/// Direct convolution in f64: the textbook seven loops.
fn conv_ref(s: &Conv2dShape, x: &[f64], w: &[f64], b: Option<&[f64]>) -> Vec<f64> {
    let (cg, og) = (s.in_channels / s.groups, s.out_channels / s.groups);
    let (oh_n, ow_n) = (s.out_h(), s.out_w());
    let mut y = vec![0.0; s.output_len()];
    for n in 0..s.batch {
        for co in 0..s.out_channels {
            let g = co / og;
            for oh in 0..oh_n {
                for ow in 0..ow_n {
                    let mut sum = b.map_or(0.0, |b| b[co]);
                    for c in 0..cg {
                        for kh in 0..s.kernel_h {
                            for kw in 0..s.kernel_w {
                                let ih = (oh * s.stride.0 + kh * s.dilation.0) as isize
                                    - s.padding.0 as isize;
                                let iw = (ow * s.stride.1 + kw * s.dilation.1) as isize
                                    - s.padding.1 as isize;
                                if ih < 0
                                    || iw < 0
                                    || ih >= s.in_h as isize
                                    || iw >= s.in_w as isize
                                {
                                    continue;
                                }
                                let ci = g * cg + c;
                                let xv = x[((n * s.in_channels + ci) * s.in_h + ih as usize)
                                    * s.in_w
                                    + iw as usize];
                                let wv = w[((co * cg + c) * s.kernel_h + kh) * s.kernel_w + kw];
                                sum += xv * wv;
                            }
                        }
                    }
                    y[((n * s.out_channels + co) * oh_n + oh) * ow_n + ow] = sum;
                }
            }
        }
    }
    y
}

fn to_f64(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| f64::from(x)).collect()
}

fn abs(v: &[f64]) -> Vec<f64> {
    v.iter().map(|x| x.abs()).collect()
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Tolerances `2·(terms + 3)·2^-24·magnitude` (plus a floor for finite-difference noise around exact zeros).
fn tolerance(terms: usize, magnitude: &[f64]) -> Vec<f64> {
    magnitude
        .iter()
        .map(|m| 2.0 * (terms as f64 + 3.0) * F32_UNIT_ROUNDOFF * m + 1e-9)
        .collect()
}

/// `∂/∂v_i ⟨f(v), dy⟩` for every i by central differences of the f64 function `f`.
fn finite_differences(v: &[f64], dy: &[f64], f: impl Fn(&[f64]) -> Vec<f64>) -> Vec<f64> {
    let h = 0.5;
    let mut probe = v.to_vec();
    (0..v.len())
        .map(|i| {
            probe[i] = v[i] + h;
            let up = dot(&f(&probe), dy);
            probe[i] = v[i] - h;
            let down = dot(&f(&probe), dy);
            probe[i] = v[i];
            (up - down) / (2.0 * h)
        })
        .collect()
}

/// Random data for one shape.
struct Data {
    x: Vec<f32>,
    w: Vec<f32>,
    b: Vec<f32>,
    dy: Vec<f32>,
}

impl Data {
    fn new(s: &Conv2dShape, seed: u64) -> Self {
        Self {
            x: random_vec(s.input_len(), seed),
            w: random_vec(s.weight_len(), seed + 1),
            b: random_vec(s.out_channels, seed + 2),
            dy: random_vec(s.output_len(), seed + 3),
        }
    }
}

/// Shapes over every awkward case: batch 1, one channel, depthwise and grouped, 1×1 and non-square kernels, odd sizes,
/// stride 2, padding 0 and 2, dilation 2. `max_side` bounds the image sides.
fn shapes(max_side: usize) -> impl Strategy<Value = Conv2dShape> {
    (
        (1usize..=3, 1usize..=3, 1usize..=3, 1usize..=3),
        (1..=max_side, 1..=max_side, 1usize..=3, 1usize..=3),
        (
            (1usize..=2, 1usize..=2),
            (0usize..=2, 0usize..=2),
            (1usize..=2, 1usize..=2),
        ),
    )
        .prop_map(
            |(
                (batch, groups, cg, og),
                (in_h, in_w, kernel_h, kernel_w),
                (stride, padding, dilation),
            )| {
                Conv2dShape {
                    batch,
                    in_channels: groups * cg,
                    in_h,
                    in_w,
                    out_channels: groups * og,
                    kernel_h,
                    kernel_w,
                    stride,
                    padding,
                    dilation,
                    groups,
                }
            },
        )
        .prop_filter("the dilated kernel must fit the padded input", |s| {
            s.validate().is_ok()
        })
}

fn forward(s: &Conv2dShape, d: &Data, bias: bool) -> Vec<f32> {
    let mut y = vec![f32::NAN; s.output_len()];
    conv2d_forward(s, &d.x, &d.w, bias.then_some(&d.b[..]), &mut y).unwrap();
    y
}

fn backward_input(s: &Conv2dShape, d: &Data) -> Vec<f32> {
    let mut dx = vec![f32::NAN; s.input_len()];
    conv2d_backward_input(s, &d.dy, &d.w, &mut dx).unwrap();
    dx
}

fn backward_weight(s: &Conv2dShape, d: &Data) -> (Vec<f32>, Vec<f32>) {
    let (mut dw, mut db) = (
        vec![f32::NAN; s.weight_len()],
        vec![f32::NAN; s.out_channels],
    );
    conv2d_backward_weight(s, &d.x, &d.dy, &mut dw, Some(&mut db)).unwrap();
    (dw, db)
}

/// The forward pass (with or without bias) against the f64 reference.
fn check_forward(s: &Conv2dShape, bias: bool, seed: u64) {
    let d = Data::new(s, seed);
    let (x, w, b) = (to_f64(&d.x), to_f64(&d.w), to_f64(&d.b));
    let b = bias.then_some(&b[..]);
    let want = conv_ref(s, &x, &w, b);
    let magnitude = conv_ref(s, &abs(&x), &abs(&w), b.map(abs).as_deref());
    let tol = tolerance(
        s.in_channels / s.groups * s.kernel_h * s.kernel_w,
        &magnitude,
    );
    assert_within(
        &forward(s, &d, bias),
        &want,
        &tol,
        &format!("forward {s:?}"),
    );
}

/// All three gradients against central finite differences of the f64 reference forward.
fn check_backward_by_finite_differences(s: &Conv2dShape, seed: u64) {
    let d = Data::new(s, seed);
    let (x, w, dy) = (to_f64(&d.x), to_f64(&d.w), to_f64(&d.dy));
    let (ax, aw, ady) = (abs(&x), abs(&w), abs(&dy));

    let want_dx = finite_differences(&x, &dy, |x| conv_ref(s, x, &w, None));
    let magnitude_dx = finite_differences(&ax, &ady, |x| conv_ref(s, x, &aw, None));
    let terms_dx = s.out_channels / s.groups * s.kernel_h * s.kernel_w;
    assert_within(
        &backward_input(s, &d),
        &want_dx,
        &tolerance(terms_dx, &magnitude_dx),
        &format!("grad_input {s:?}"),
    );

    let want_dw = finite_differences(&w, &dy, |w| conv_ref(s, &x, w, None));
    let magnitude_dw = finite_differences(&aw, &ady, |w| conv_ref(s, &ax, w, None));
    let (dw, db) = backward_weight(s, &d);
    let terms_dw = s.batch * s.out_h() * s.out_w();
    assert_within(
        &dw,
        &want_dw,
        &tolerance(terms_dw, &magnitude_dw),
        &format!("grad_weight {s:?}"),
    );

    let b = vec![0.0; s.out_channels];
    let want_db = finite_differences(&b, &dy, |b| conv_ref(s, &x, &w, Some(b)));
    let magnitude_db = finite_differences(&b, &ady, |b| conv_ref(s, &x, &w, Some(b)));
    assert_within(
        &db,
        &want_db,
        &tolerance(terms_dw, &magnitude_db),
        &format!("grad_bias {s:?}"),
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn conv2d_forward_matches_f64_reference(s in shapes(9), bias in any::<bool>(), seed in any::<u64>()) {
        check_forward(&s, bias, seed);
    }

    /// ⟨conv(x, w), dy⟩ = ⟨x, backward_input(dy)⟩ = ⟨w, backward_weight(dy)⟩ and Σ dy = ⟨1, grad_bias⟩ on larger shapes.
    #[test]
    fn conv2d_backward_kernels_are_adjoint_to_forward(s in shapes(12), seed in any::<u64>()) {
        let d = Data::new(&s, seed);
        let y = to_f64(&forward(&s, &d, false));
        let dy = to_f64(&d.dy);
        let dx = to_f64(&backward_input(&s, &d));
        let (dw, db) = backward_weight(&s, &d);
        let lhs = dot(&y, &dy);
        // Every side is the same sum of |x·w·dy| terms, each f32 side rounded along a reduction no longer than
        // (total terms); dot products of f32 results are taken in f64.
        let magnitude = dot(&conv_ref(&s, &abs(&to_f64(&d.x)), &abs(&to_f64(&d.w)), None), &abs(&dy));
        let terms = s.batch * s.out_h() * s.out_w() + s.weight_len();
        let tol = 2.0 * (terms as f64 + 3.0) * F32_UNIT_ROUNDOFF * magnitude + 1e-9;
        for (what, rhs) in [("input", dot(&to_f64(&d.x), &dx)), ("weight", dot(&to_f64(&d.w), &to_f64(&dw)))] {
            prop_assert!((lhs - rhs).abs() <= tol, "{what}: {lhs} vs {rhs} (tolerance {tol:e}) for {s:?}");
        }
        // Each bias gradient is summed in f64 and rounded once to f32: relative error 2^-24 per channel.
        let bias_sum: f64 = to_f64(&db).iter().sum();
        let dy_sum: f64 = dy.iter().sum();
        let bias_tol = 2.0 * F32_UNIT_ROUNDOFF * abs(&dy).iter().sum::<f64>() + 1e-9;
        prop_assert!((bias_sum - dy_sum).abs() <= bias_tol, "bias: {bias_sum} vs {dy_sum}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn conv2d_backward_matches_finite_differences(s in shapes(6), seed in any::<u64>()) {
        check_backward_by_finite_differences(&s, seed);
    }
}

/// Images with at least 256 output positions get one GEMM each (smaller ones are stacked, as in the property tests);
/// a pointwise convolution of such images skips im2col altogether.
#[test]
fn conv2d_of_large_images_one_gemm_per_image_matches_reference() {
    let pointwise = Conv2dShape {
        batch: 2,
        in_channels: 3,
        in_h: 16,
        in_w: 17,
        out_channels: 4,
        kernel_h: 1,
        kernel_w: 1,
        stride: (1, 1),
        padding: (0, 0),
        dilation: (1, 1),
        groups: 1,
    };
    let depthwise = Conv2dShape {
        in_channels: 2,
        in_h: 16,
        in_w: 16,
        out_channels: 2,
        kernel_h: 3,
        kernel_w: 3,
        padding: (1, 1),
        groups: 2,
        ..pointwise
    };
    let strided = Conv2dShape {
        batch: 1,
        in_h: 33,
        in_w: 34,
        stride: (2, 2),
        dilation: (2, 1),
        groups: 1,
        ..depthwise
    };
    for s in [pointwise, depthwise, strided] {
        assert!(
            s.out_h() * s.out_w() >= 256,
            "{s:?} must fill a GEMM on its own"
        );
        check_forward(&s, true, 21);
        check_backward_by_finite_differences(&s, 22);
    }
}

/// Shape with the fields every test below starts from: one 3×3 convolution of a small image.
fn base() -> Conv2dShape {
    Conv2dShape {
        batch: 2,
        in_channels: 4,
        in_h: 5,
        in_w: 5,
        out_channels: 6,
        kernel_h: 3,
        kernel_w: 3,
        stride: (1, 1),
        padding: (1, 1),
        dilation: (1, 1),
        groups: 2,
    }
}

#[test]
fn conv2d_results_are_bit_identical_for_any_thread_count() {
    let s = Conv2dShape {
        batch: 5,
        in_channels: 16,
        in_h: 17,
        in_w: 15,
        out_channels: 24,
        ..base()
    };
    let d = Data::new(&s, 11);
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            (
                forward(&s, &d, true),
                backward_input(&s, &d),
                backward_weight(&s, &d),
            )
        })
    };
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    let (y1, dx1, (dw1, db1)) = run(1);
    let (y2, dx2, (dw2, db2)) = run(2);
    assert_eq!(bits(&y1), bits(&y2), "forward");
    assert_eq!(bits(&dx1), bits(&dx2), "backward input");
    assert_eq!(bits(&dw1), bits(&dw2), "backward weight");
    assert_eq!(bits(&db1), bits(&db2), "backward bias");
}

#[test]
fn conv2d_with_empty_batch_is_a_no_op() {
    let s = Conv2dShape { batch: 0, ..base() };
    assert_eq!((s.input_len(), s.output_len()), (0, 0));
    let w = vec![1.0; s.weight_len()];
    conv2d_forward(&s, &[], &w, None, &mut []).unwrap();
    conv2d_backward_input(&s, &[], &w, &mut []).unwrap();
    let (mut dw, mut db) = (vec![f32::NAN; s.weight_len()], vec![f32::NAN; 6]);
    conv2d_backward_weight(&s, &[], &[], &mut dw, Some(&mut db)).unwrap();
    assert!(
        dw.iter().chain(&db).all(|&v| v == 0.0),
        "gradients of an empty batch are zero"
    );
}

#[test]
fn conv2d_shape_reports_output_geometry() {
    let s = Conv2dShape {
        in_h: 7,
        in_w: 8,
        stride: (2, 3),
        padding: (2, 0),
        dilation: (2, 1),
        ..base()
    };
    // h: (7 + 4 − 5) / 2 + 1 = 4; w: (8 − 3) / 3 + 1 = 2.
    assert_eq!((s.out_h(), s.out_w()), (4, 2));
    assert_eq!(
        (s.input_len(), s.weight_len(), s.output_len()),
        (2 * 4 * 56, 6 * 2 * 9, 2 * 6 * 8)
    );
}

#[test]
fn conv2d_shape_validation_names_the_bad_field() {
    let cases = [
        (
            Conv2dShape {
                in_channels: 0,
                ..base()
            },
            "in_channels is 0",
        ),
        (Conv2dShape { in_w: 0, ..base() }, "in_w is 0"),
        (
            Conv2dShape {
                kernel_h: 0,
                ..base()
            },
            "kernel_h is 0",
        ),
        (
            Conv2dShape {
                stride: (1, 0),
                ..base()
            },
            "stride.1 (w) is 0",
        ),
        (
            Conv2dShape {
                dilation: (0, 1),
                ..base()
            },
            "dilation.0 (h) is 0",
        ),
        (
            Conv2dShape {
                groups: 0,
                ..base()
            },
            "groups is 0",
        ),
        (
            Conv2dShape {
                groups: 3,
                ..base()
            },
            "in_channels = 4 is not divisible by groups = 3",
        ),
        (
            Conv2dShape {
                groups: 4,
                ..base()
            },
            "out_channels = 6 is not divisible by groups = 4",
        ),
        (
            Conv2dShape {
                kernel_w: 8,
                ..base()
            },
            "kernel_w = 8 with dilation 1 spans 8 positions, more than the padded in_w of 7",
        ),
        (
            Conv2dShape {
                dilation: (4, 1),
                ..base()
            },
            "kernel_h = 3 with dilation 4 spans 9",
        ),
        (
            Conv2dShape {
                padding: (usize::MAX, 0),
                ..base()
            },
            "extent overflows",
        ),
        (
            Conv2dShape {
                batch: usize::MAX / 4,
                ..base()
            },
            "input length overflows",
        ),
    ];
    for (shape, expected) in cases {
        let err = shape.validate().expect_err(expected);
        assert_eq!(err.op, "conv2d");
        assert!(
            err.message.contains(expected),
            "{:?}: got {:?}, expected {expected:?}",
            shape,
            err.message
        );
    }
}

#[test]
fn conv2d_kernels_reject_buffers_of_the_wrong_length() {
    let s = base();
    let d = Data::new(&s, 1);
    let mut y = vec![0.0; s.output_len()];
    let err = conv2d_forward(&s, &d.x[1..], &d.w, None, &mut y).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "conv2d_forward: input has {} elements but its shape implies {}",
            s.input_len() - 1,
            s.input_len()
        )
    );
    let err = conv2d_forward(&s, &d.x, &d.w, Some(&d.b[1..]), &mut y).unwrap_err();
    assert!(err.message.starts_with("bias has 5 elements"), "{err}");
    let err = conv2d_forward(&s, &d.x, &d.w, None, &mut y[1..]).unwrap_err();
    assert!(err.message.starts_with("output has"), "{err}");
    let mut dx = vec![0.0; s.input_len()];
    let err = conv2d_backward_input(&s, &d.dy, &d.w[1..], &mut dx).unwrap_err();
    assert_eq!(
        (err.op, err.message.starts_with("weight has")),
        ("conv2d_backward_input", true),
        "{err}"
    );
    let mut dw = vec![0.0; s.weight_len()];
    let mut db = vec![0.0; 5];
    let err = conv2d_backward_weight(&s, &d.x, &d.dy, &mut dw, Some(&mut db)).unwrap_err();
    assert_eq!(
        (err.op, err.message.starts_with("grad_bias has 5")),
        ("conv2d_backward_weight", true),
        "{err}"
    );
    let bad = Conv2dShape { groups: 3, ..s };
    let err = conv2d_backward_weight(&bad, &d.x, &d.dy, &mut dw, None).unwrap_err();
    assert_eq!(err.op, "conv2d_backward_weight");
}

/// Tolerances for Winograd F(2×2, 3×3) (`algo` = `Winograd`) or F(4×4, 3×3) (`Winograd4`) computing the stride-1
/// 3×3 convolution `s` of `x` (f64 copies of the f32 inputs), with reduction length `C = s.in_channels`.
///
/// F(2×2, 3×3): every transform entry is 0, ±1 or ±½, so (with γ_k = k·2^-24 and |·| taken entrywise): U = G·g·Gᵀ is
/// rounded at most 4 times (two 3-term sums; halving is exact), V = Bᵀ·d·B twice, the GEMM's C products and sum C
/// times, the output transform 4 times and the bias once: the error is at most
/// γ_{C+11}·Σ_c |Aᵀ|·(|G||g||Gᵀ| ⊙ |Bᵀ||d||B|)·|A| (first order). In 1-D that magnitude, for output 0, is
/// |g0|(|d0| + |d2|) + ½‖g‖₁·2(|d1| + |d2|) ≤ 2·‖g‖₁·‖d‖₁ over the output's own 3-window d0..d2 (output 1 likewise over
/// d1..d3), and the 2-D one is the product of two such factors: at most 4·‖w[o, c]‖₁·‖x[c, window]‖₁. Direct
/// summation's bound has Σ|w·x| over the window instead, smaller by up to 9× (Winograd mixes every tap with every
/// window value), so the tolerance is `2·(C + 12)·2^-24·(4·Σ_c ‖w[o, c]‖₁·‖x[c, window]‖₁ + |b|)`, doubled as the
/// other tolerances are. Measured over the forward passes of the Winograd tests (74 shapes, 1–70 channels), the
/// largest error is 1.02·2^-24·Σ_c ‖w‖₁‖x‖₁, at least 100 times inside the tolerance, and 9.2·2^-24·Σ|w·x| when
/// measured against direct summation's magnitude.
///
/// F(4×4, 3×3): U takes at most 10 roundings (a 1-D transform rounds each value up to 5 times: three scalings by ⅙,
/// 1/12 or 1/24 and two sums), V at most 6 (3 per 1-D pass: a fused multiply-add, then up to two more), the output
/// transform 6 and the bias one more: γ_{C+23}. Per axis, `max_{i,k,m} Σ_ξ |Aᵀ_iξ|·|G_ξk|·|Bᵀ_ξm| = 32/3` (output 3,
/// whose row of Aᵀ holds the 8s), over the tile's 6-window rather than the output's own, so the magnitude is at most
/// `(32/3)²·‖w[o, c]‖₁·‖x[c, tile block]‖₁ ≤ 114·…` with the block the 6×6 input block of the output's 4×4 tile, and
/// the tolerance `2·(C + 24)·2^-24·(114·Σ_c ‖w[o, c]‖₁·‖x[c, tile block]‖₁ + |b|)`.
fn winograd_tolerance(
    algo: Conv2dAlgorithm,
    s: &Conv2dShape,
    x: &[f64],
    w: &[f64],
    b: Option<&[f64]>,
) -> Vec<f64> {
    let (c_n, o_n) = (s.in_channels, s.out_channels);
    let (factor, roundings) = winograd_error_constants(algo);
    let blocks = winograd_blocks(algo, s, x);
    let plane = s.out_h() * s.out_w();
    let w_norm: Vec<f64> = w
        .chunks_exact(9)
        .map(|g| g.iter().map(|v| v.abs()).sum())
        .collect();
    let mut tol = vec![0.0; s.output_len()];
    for n in 0..s.batch {
        for o in 0..o_n {
            let t = &mut tol[(n * o_n + o) * plane..][..plane];
            for c in 0..c_n {
                let block = &blocks[(n * c_n + c) * plane..][..plane];
                for (t, &x) in t.iter_mut().zip(block) {
                    *t += factor * w_norm[o * c_n + c] * x;
                }
            }
            let bias = b.map_or(0.0, |b| b[o].abs());
            for t in t.iter_mut() {
                *t = 2.0 * (c_n as f64 + roundings) * F32_UNIT_ROUNDOFF * (*t + bias) + 1e-9;
            }
        }
    }
    tol
}

/// The magnitude factor and the roundings beyond the reduction's of [`winograd_tolerance`].
fn winograd_error_constants(algo: Conv2dAlgorithm) -> (f64, f64) {
    match algo {
        Conv2dAlgorithm::Winograd => (4.0, 12.0),
        Conv2dAlgorithm::Winograd4 => (114.0, 24.0),
        other => panic!("{other:?} is not a Winograd algorithm"),
    }
}

/// `‖x[c, block]‖₁` for every output position of every image and input channel (`[batch][C][out_h][out_w]`): the
/// output's own 3×3 window for F(2×2, 3×3), the 6×6 input block of its 4×4 tile for F(4×4, 3×3), zeros outside the
/// image.
fn winograd_blocks(algo: Conv2dAlgorithm, s: &Conv2dShape, x: &[f64]) -> Vec<f64> {
    let c_n = s.in_channels;
    if algo == Conv2dAlgorithm::Winograd {
        // A depthwise convolution of |x| with a kernel of ones.
        let window = Conv2dShape {
            out_channels: c_n,
            groups: c_n,
            ..*s
        };
        return conv_ref(&window, &abs(x), &vec![1.0; window.weight_len()], None);
    }
    let (in_plane, out_plane) = (s.in_h * s.in_w, s.out_h() * s.out_w());
    let mut blocks = vec![0.0; s.batch * c_n * out_plane];
    for (block, image) in blocks
        .chunks_exact_mut(out_plane)
        .zip(x.chunks_exact(in_plane))
    {
        for oh in 0..s.out_h() {
            for ow in 0..s.out_w() {
                let (top, left) = (4 * (oh / 4), 4 * (ow / 4));
                let mut sum = 0.0;
                for r in top..top + 6 {
                    for q in left..left + 6 {
                        let (ih, iw) = (r.wrapping_sub(s.padding.0), q.wrapping_sub(s.padding.1));
                        if ih < s.in_h && iw < s.in_w {
                            sum += image[ih * s.in_w + iw].abs();
                        }
                    }
                }
                block[oh * s.out_w() + ow] = sum;
            }
        }
    }
    blocks
}

/// Tolerances for Winograd's weight gradient of the stride-1 3×3 convolution `s`, summed over `T = N·tiles` tiles.
///
/// `dw[o, c] = Gᵀ·[Σ_t (A·dy_t·Aᵀ) ⊙ (Bᵀ·x_t·B)]·G` with `dy_t` the 2×2 output-gradient block and `x_t` the 4×4 input
/// block of tile t. Rounding: the two tile transforms twice each, the GEMM T times (chunks accumulate in order), the
/// output transform 4 times: γ_{T+8} times the magnitude `Σ_t |Gᵀ|(|A||dy_t||Aᵀ| ⊙ |Bᵀ||x_t||B|)|G|`. Per axis,
/// `Σ_ξ |G_ξk|·|A_ξi|·|Bᵀ_ξm| ≤ 2` for every tap k, block row i and input row m, so the magnitude is at most
/// `4·Σ_t ‖dy_t[o]‖₁·‖x_t[c]‖₁`; the tolerance is `2·(T + 9)·2^-24` times that.
fn winograd_weight_tolerance(s: &Conv2dShape, x: &[f64], dy: &[f64]) -> Vec<f64> {
    let (th, tw) = (s.out_h().div_ceil(2), s.out_w().div_ceil(2));
    // Σ|·| over the block of tile (i, j): rows 2i − pad .. + size, columns likewise, inside the plane.
    let block = |plane: &[f64],
                 (h, w): (usize, usize),
                 pad: (usize, usize),
                 size: usize,
                 (i, j): (usize, usize)| {
        let mut sum = 0.0;
        for r in 0..size {
            for q in 0..size {
                let (row, col) = (
                    (2 * i + r).checked_sub(pad.0),
                    (2 * j + q).checked_sub(pad.1),
                );
                if let (Some(row), Some(col)) = (row, col) {
                    if row < h && col < w {
                        sum += plane[row * w + col].abs();
                    }
                }
            }
        }
        sum
    };
    let (in_plane, out_plane) = (s.in_h * s.in_w, s.out_h() * s.out_w());
    let mut magnitude = vec![0.0; s.out_channels * s.in_channels];
    for n in 0..s.batch {
        for i in 0..th {
            for j in 0..tw {
                let xs: Vec<f64> = (0..s.in_channels)
                    .map(|c| {
                        let plane = &x[(n * s.in_channels + c) * in_plane..][..in_plane];
                        block(plane, (s.in_h, s.in_w), s.padding, 4, (i, j))
                    })
                    .collect();
                for o in 0..s.out_channels {
                    let plane = &dy[(n * s.out_channels + o) * out_plane..][..out_plane];
                    let e = block(plane, (s.out_h(), s.out_w()), (0, 0), 2, (i, j));
                    for (c, xs) in xs.iter().enumerate() {
                        magnitude[o * s.in_channels + c] += 4.0 * e * xs;
                    }
                }
            }
        }
    }
    let terms = (s.batch * th * tw) as f64;
    magnitude
        .iter()
        .flat_map(|&m| [2.0 * (terms + 9.0) * F32_UNIT_ROUNDOFF * m + 1e-9; 9])
        .collect()
}

/// The weight gradient `dw[o, c, kh, kw] = Σ_{n, oh, ow} dy[n, o, oh, ow] · x[n, c, oh + kh − ph, ow + kw − pw]` of a
/// stride-1, one-group convolution, in f64.
fn weight_gradient_ref(s: &Conv2dShape, x: &[f64], dy: &[f64]) -> Vec<f64> {
    let (oh_n, ow_n) = (s.out_h(), s.out_w());
    let mut dw = vec![0.0; s.weight_len()];
    for n in 0..s.batch {
        for o in 0..s.out_channels {
            for c in 0..s.in_channels {
                for kh in 0..s.kernel_h {
                    for kw in 0..s.kernel_w {
                        let mut sum = 0.0;
                        for oh in 0..oh_n {
                            for ow in 0..ow_n {
                                let (ih, iw) = (
                                    (oh + kh).checked_sub(s.padding.0),
                                    (ow + kw).checked_sub(s.padding.1),
                                );
                                let (Some(ih), Some(iw)) = (ih, iw) else {
                                    continue;
                                };
                                if ih < s.in_h && iw < s.in_w {
                                    sum += dy[((n * s.out_channels + o) * oh_n + oh) * ow_n + ow]
                                        * x[((n * s.in_channels + c) * s.in_h + ih) * s.in_w + iw];
                                }
                            }
                        }
                        dw[((o * s.in_channels + c) * s.kernel_h + kh) * s.kernel_w + kw] += sum;
                    }
                }
            }
        }
    }
    dw
}

/// The stride-1 3×3 convolution that computes the input gradient of `s`: `dy` convolved with the kernel rotated by
/// 180° and transposed (`w'[c, o] = rot180(w[o, c])`), padding `2 − p`.
fn backward_input_as_forward(s: &Conv2dShape, w: &[f64]) -> (Conv2dShape, Vec<f64>) {
    let t = Conv2dShape {
        in_channels: s.out_channels,
        in_h: s.out_h(),
        in_w: s.out_w(),
        out_channels: s.in_channels,
        padding: (2 - s.padding.0, 2 - s.padding.1),
        ..*s
    };
    let mut w_t = vec![0.0; w.len()];
    for o in 0..s.out_channels {
        for c in 0..s.in_channels {
            for k in 0..9 {
                w_t[(c * s.out_channels + o) * 9 + 8 - k] = w[(o * s.in_channels + c) * 9 + k];
            }
        }
    }
    (t, w_t)
}

/// Winograd's forward pass and gradients against the f64 reference: the forward element by element, the input
/// gradient against the reference of its equivalent forward convolution and the weight gradient against a direct
/// f64 sum (both exact, as finite differences are, and far cheaper on these sizes) and, if
/// `finite_differences_too`, both gradients against central finite differences of the forward.
fn check_winograd(s: &Conv2dShape, bias: bool, seed: u64, finite_differences_too: bool) {
    let d = Data::new(s, seed);
    for algo in WINOGRAD {
        check_winograd_passes(algo, s, &d, bias, finite_differences_too);
    }
    check_winograd_weight_gradient(s, &d, finite_differences_too);
}

/// Both Winograd tilings.
const WINOGRAD: [Conv2dAlgorithm; 2] = [Conv2dAlgorithm::Winograd, Conv2dAlgorithm::Winograd4];

/// [`check_winograd`]'s forward pass and input gradient for one tiling (`algo`).
fn check_winograd_passes(
    algo: Conv2dAlgorithm,
    s: &Conv2dShape,
    d: &Data,
    bias: bool,
    finite_differences_too: bool,
) {
    let (x, w, b, dy) = (to_f64(&d.x), to_f64(&d.w), to_f64(&d.b), to_f64(&d.dy));
    let b = bias.then_some(&b[..]);
    let mut y = vec![f32::NAN; s.output_len()];
    conv2d_forward_with(algo, s, &d.x, &d.w, bias.then_some(&d.b[..]), &mut y).unwrap();
    let tol = winograd_tolerance(algo, s, &x, &w, b);
    assert_within(
        &y,
        &conv_ref(s, &x, &w, b),
        &tol,
        &format!("{algo:?} forward {s:?}"),
    );

    let mut dx = vec![f32::NAN; s.input_len()];
    conv2d_backward_input_with(algo, s, &d.dy, &d.w, &mut dx).unwrap();
    let (t, w_t) = backward_input_as_forward(s, &w);
    let tol = winograd_tolerance(algo, &t, &dy, &w_t, None);
    let what = format!("{algo:?} grad_input {s:?}");
    assert_within(&dx, &conv_ref(&t, &dy, &w_t, None), &tol, &what);
    if finite_differences_too {
        let want = finite_differences(&x, &dy, |x| conv_ref(s, x, &w, None));
        assert_within(&dx, &want, &tol, &what);
    }
}

/// [`check_winograd`]'s weight and bias gradients: F(2×2, 3×3)'s transposed algorithm, which both tilings run (so
/// `Winograd4` must give its bits), against the f64 references (and finite differences) and im2col's bias gradient.
fn check_winograd_weight_gradient(s: &Conv2dShape, d: &Data, finite_differences_too: bool) {
    let (x, w, dy) = (to_f64(&d.x), to_f64(&d.w), to_f64(&d.dy));
    let gradients = |algo| {
        let (mut dw, mut db) = (
            vec![f32::NAN; s.weight_len()],
            vec![f32::NAN; s.out_channels],
        );
        conv2d_backward_weight_with(algo, s, &d.x, &d.dy, &mut dw, Some(&mut db)).unwrap();
        (dw, db)
    };
    let (dw, db) = gradients(Conv2dAlgorithm::Winograd);
    let (dw4, db4) = gradients(Conv2dAlgorithm::Winograd4);
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&dw4), bits(&dw), "Winograd4 grad_weight {s:?}");
    assert_eq!(bits(&db4), bits(&db), "Winograd4 grad_bias {s:?}");
    let tol = winograd_weight_tolerance(s, &x, &dy);
    let what = format!("grad_weight {s:?}");
    assert_within(&dw, &weight_gradient_ref(s, &x, &dy), &tol, &what);
    if finite_differences_too {
        let want = finite_differences(&w, &dy, |w| conv_ref(s, &x, w, None));
        assert_within(&dw, &want, &tol, &what);
    }
    let (mut dw_im2col, mut db_im2col) = (vec![0.0; s.weight_len()], vec![0.0; s.out_channels]);
    let im2col = Conv2dAlgorithm::Im2col;
    conv2d_backward_weight_with(im2col, s, &d.x, &d.dy, &mut dw_im2col, Some(&mut db_im2col))
        .unwrap();
    // Both algorithms sum the bias gradient in f64, in different orders (`conv2d/bias_gradient.rs`): each is within
    // L·2^-53·Σ|dy| of the exact sum before its one rounding to f32 (2^-24 relative).
    let plane = s.out_h() * s.out_w();
    for (o, (&winograd, &im2col)) in db.iter().zip(&db_im2col).enumerate() {
        let terms = dy
            .chunks_exact(s.out_channels * plane)
            .flat_map(|image| &image[o * plane..][..plane]);
        let (sum, abs) = terms.fold((0.0, 0.0), |(sum, abs): (f64, f64), &v| {
            (sum + v, abs + v.abs())
        });
        let tol = (s.batch * plane) as f64 * abs * 2f64.powi(-53) + sum.abs() * 2f64.powi(-24);
        for (algorithm, got) in [("Winograd", winograd), ("im2col", im2col)] {
            assert!(
                (f64::from(got) - sum).abs() <= tol,
                "grad_bias[{o}] by {algorithm} {s:?}: {got} against {sum}"
            );
        }
    }
}

/// Winograd-eligible shapes: 3×3 kernel, stride 1, one group; batch 1–3, 1 to `max_channels` channels (not multiples
/// of any tile size in particular), sides 1 to `max_side` (odd and even, so partial tiles at both edges), padding 0–2
/// per axis.
fn winograd_shapes(max_channels: usize, max_side: usize) -> impl Strategy<Value = Conv2dShape> {
    (
        (1usize..=3, 1..=max_channels, 1..=max_channels),
        (1..=max_side, 1..=max_side, 0usize..=2, 0usize..=2),
    )
        .prop_map(
            |((batch, in_channels, out_channels), (in_h, in_w, pad_h, pad_w))| Conv2dShape {
                batch,
                in_channels,
                in_h,
                in_w,
                out_channels,
                kernel_h: 3,
                kernel_w: 3,
                stride: (1, 1),
                padding: (pad_h, pad_w),
                dilation: (1, 1),
                groups: 1,
            },
        )
        .prop_filter("the kernel must fit the padded input", |s| {
            s.validate().is_ok()
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn conv2d_winograd_matches_f64_reference(
        s in winograd_shapes(20, 13),
        bias in any::<bool>(),
        seed in any::<u64>(),
    ) {
        check_winograd(&s, bias, seed, false);
    }

    #[test]
    fn conv2d_winograd_backward_matches_finite_differences(s in winograd_shapes(3, 7), seed in any::<u64>()) {
        check_winograd(&s, false, seed, true);
    }
}

/// The awkward sizes by name: 1×1 (only with padding), 1×5, 3×3, 7×7 and 13×9 images, padding 0, 1 and 2, with one
/// channel in and out, and with 3 → 5 channels.
#[test]
fn conv2d_winograd_handles_odd_sides_paddings_and_single_channels() {
    for (in_h, in_w) in [(1, 1), (1, 5), (3, 3), (7, 7), (13, 9)] {
        for padding in [(0, 0), (1, 1), (2, 2), (0, 2), (2, 1)] {
            for (in_channels, out_channels) in [(1, 1), (3, 5)] {
                let s = Conv2dShape {
                    batch: 1,
                    in_channels,
                    in_h,
                    in_w,
                    out_channels,
                    padding,
                    groups: 1,
                    ..base()
                };
                if s.validate().is_ok() {
                    check_winograd(&s, true, (in_h * 31 + in_w) as u64, true);
                }
            }
        }
    }
}

/// Wide channels (the reduction is long) and images large enough to be cut into bands of tile rows.
#[test]
fn conv2d_winograd_of_wide_and_large_convolutions_matches_reference() {
    let wide = Conv2dShape {
        batch: 2,
        in_channels: 70,
        in_h: 9,
        in_w: 8,
        out_channels: 21,
        groups: 1,
        ..base()
    };
    let banded = Conv2dShape {
        batch: 1,
        in_channels: 2,
        in_h: 41,
        in_w: 38,
        out_channels: 3,
        padding: (2, 0),
        groups: 1,
        ..base()
    };
    // More than 256 channels each way: the transformed weights span two of the GEMM's k-blocks in both the forward
    // pass (depth C) and the input gradient (depth O), and their rows end off a register tile.
    let deep = Conv2dShape {
        batch: 1,
        in_channels: 260,
        in_h: 5,
        in_w: 6,
        out_channels: 259,
        groups: 1,
        ..base()
    };
    // Three 24×24 images, 144 tiles each: two images per chunk, so two chunks, whose weight-gradient sums run in two
    // halves of the batch and are added.
    let chunked = Conv2dShape {
        batch: 3,
        in_channels: 3,
        in_h: 24,
        in_w: 24,
        out_channels: 2,
        groups: 1,
        ..base()
    };
    for s in [wide, banded, deep, chunked] {
        check_winograd(&s, true, 5, false);
    }
}

#[test]
fn conv2d_winograd_results_are_bit_identical_for_any_thread_count() {
    let stacked = Conv2dShape {
        batch: 21,
        in_channels: 17,
        in_h: 7,
        in_w: 7,
        out_channels: 19,
        groups: 1,
        ..base()
    };
    let banded = Conv2dShape {
        batch: 3,
        in_h: 40,
        in_w: 37,
        ..stacked
    };
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    for (s, algo) in [stacked, banded]
        .into_iter()
        .flat_map(|s| WINOGRAD.map(|a| (s, a)))
    {
        let d = Data::new(&s, 3);
        let run = |threads: usize| {
            with_threads(threads, || {
                let (mut y, mut dx) = (vec![0.0; s.output_len()], vec![0.0; s.input_len()]);
                let mut dw = vec![0.0; s.weight_len()];
                conv2d_forward_with(algo, &s, &d.x, &d.w, Some(&d.b), &mut y).unwrap();
                conv2d_backward_input_with(algo, &s, &d.dy, &d.w, &mut dx).unwrap();
                conv2d_backward_weight_with(algo, &s, &d.x, &d.dy, &mut dw, None).unwrap();
                (bits(&y), bits(&dx), bits(&dw))
            })
        };
        let one = run(1);
        assert!(one == run(2) && one == run(3), "{algo:?} {s:?}");
    }
}

/// `Auto` runs Winograd F(4×4, 3×3) on 3×3 stride-1 convolutions with at least `WINOGRAD_MIN_CHANNELS` channels each
/// way (its weight gradient is F(2×2, 3×3)'s), and im2col otherwise (checked bit for bit against the forced
/// algorithms).
#[test]
fn conv2d_auto_picks_winograd_only_where_it_applies_and_pays() {
    let wide = Conv2dShape {
        batch: 2,
        in_channels: WINOGRAD_MIN_CHANNELS,
        in_h: 6,
        in_w: 7,
        out_channels: WINOGRAD_MIN_CHANNELS + 1,
        groups: 1,
        ..base()
    };
    let narrow = Conv2dShape {
        in_channels: WINOGRAD_MIN_CHANNELS - 1,
        ..wide
    };
    // A 7×7 image (the lanes across tile rows), one that F(2×2, 3×3) would tile more tightly (17 columns), a wide one.
    let sides = [(7, 7), (17, 17), (5, 30)].map(|(in_h, in_w)| Conv2dShape { in_h, in_w, ..wide });
    let strided = Conv2dShape {
        stride: (2, 1),
        ..wide
    };
    let grouped = Conv2dShape {
        groups: 2,
        in_channels: 2 * WINOGRAD_MIN_CHANNELS,
        out_channels: 2 * WINOGRAD_MIN_CHANNELS,
        ..wide
    };
    let winograd = [wide].into_iter().chain(sides);
    let cases = winograd.map(|s| (s, Conv2dAlgorithm::Winograd4)).chain([
        (narrow, Conv2dAlgorithm::Im2col),
        (strided, Conv2dAlgorithm::Im2col),
        (grouped, Conv2dAlgorithm::Im2col),
    ]);
    for (s, expected) in cases {
        assert_eq!(s.supports_winograd(), s.stride == (1, 1) && s.groups == 1);
        let d = Data::new(&s, 9);
        let forward = |algo| {
            let mut y = vec![0.0; s.output_len()];
            conv2d_forward_with(algo, &s, &d.x, &d.w, Some(&d.b), &mut y).unwrap();
            y
        };
        let backward = |algo| {
            let mut dx = vec![0.0; s.input_len()];
            conv2d_backward_input_with(algo, &s, &d.dy, &d.w, &mut dx).unwrap();
            dx
        };
        let weight = |algo| {
            let mut dw = vec![0.0; s.weight_len()];
            conv2d_backward_weight_with(algo, &s, &d.x, &d.dy, &mut dw, None).unwrap();
            dw
        };
        assert_eq!(forward(Conv2dAlgorithm::Auto), forward(expected), "{s:?}");
        assert_eq!(backward(Conv2dAlgorithm::Auto), backward(expected), "{s:?}");
        assert_eq!(weight(Conv2dAlgorithm::Auto), weight(expected), "{s:?}");
    }
}

#[test]
fn conv2d_winograd_refuses_shapes_it_cannot_compute() {
    let cases = [
        (
            Conv2dShape {
                kernel_w: 2,
                ..base()
            },
            "got a 3×2 kernel",
        ),
        (
            Conv2dShape {
                stride: (1, 2),
                ..base()
            },
            "got stride (1, 2)",
        ),
        (
            Conv2dShape {
                dilation: (2, 1),
                in_h: 9,
                ..base()
            },
            "got dilation (2, 1)",
        ),
        (
            Conv2dShape {
                padding: (3, 1),
                ..base()
            },
            "got padding (3, 1)",
        ),
        (base(), "got groups = 2"),
    ];
    for ((s, expected), algo) in cases.into_iter().flat_map(|c| WINOGRAD.map(|a| (c, a))) {
        let d = Data::new(&s, 1);
        let mut y = vec![0.0; s.output_len()];
        let err = conv2d_forward_with(algo, &s, &d.x, &d.w, None, &mut y).unwrap_err();
        assert_eq!(err.op, "conv2d_forward");
        assert!(err.message.contains(expected), "{s:?}: {err}");
        let mut dx = vec![0.0; s.input_len()];
        let err = conv2d_backward_input_with(algo, &s, &d.dy, &d.w, &mut dx).unwrap_err();
        assert_eq!(err.op, "conv2d_backward_input");
        assert!(err.message.contains(expected), "{s:?}: {err}");
        let mut dw = vec![0.0; s.weight_len()];
        let err = conv2d_backward_weight_with(algo, &s, &d.x, &d.dy, &mut dw, None).unwrap_err();
        assert_eq!(err.op, "conv2d_backward_weight");
        assert!(err.message.contains(expected), "{s:?}: {err}");
    }
}

/// The fused addends (`conv2d/addends.rs`): bias, a per-image-and-channel addend and a residual, each present or not
/// (`present`), on top of the products, by `algo`, against the f64 reference plus the addends. The addends take at
/// most three more roundings (bias + channel, onto the products, + residual), inside either tolerance: im2col's with
/// two more terms and the addends' magnitudes, Winograd's plus `2·(C + r)·2^-24` times the addends' magnitudes (r = 12 or 24, the roundings of its tiling).
fn check_forward_add(s: &Conv2dShape, present: [bool; 3], algo: Conv2dAlgorithm, seed: u64) {
    let d = Data::new(s, seed);
    let channel = random_vec(s.batch * s.out_channels, seed + 4);
    let residual = random_vec(s.output_len(), seed + 5);
    let [with_bias, with_channel, with_residual] = present;
    let addends = Conv2dAddends {
        bias: with_bias.then_some(&d.b[..]),
        channel: with_channel.then_some(&channel[..]),
        residual: with_residual.then_some(&residual[..]),
    };
    let mut y = vec![f32::NAN; s.output_len()];
    conv2d_forward_add_with(algo, s, &d.x, &d.w, addends, &mut y).unwrap();

    let plane = s.out_h() * s.out_w();
    let terms = |i: usize| {
        let (n, o) = (i / plane / s.out_channels, i / plane % s.out_channels);
        [
            with_bias.then(|| d.b[o]),
            with_channel.then(|| channel[n * s.out_channels + o]),
            with_residual.then(|| residual[i]),
        ]
        .into_iter()
        .flatten()
        .map(f64::from)
    };
    let (x, w) = (to_f64(&d.x), to_f64(&d.w));
    let want: Vec<f64> = conv_ref(s, &x, &w, None)
        .iter()
        .enumerate()
        .map(|(i, v)| v + terms(i).sum::<f64>())
        .collect();
    let added: Vec<f64> = (0..s.output_len())
        .map(|i| terms(i).map(f64::abs).sum())
        .collect();
    let tol: Vec<f64> = if WINOGRAD.contains(&algo) {
        let c = s.in_channels as f64;
        let (_, roundings) = winograd_error_constants(algo);
        winograd_tolerance(algo, s, &x, &w, None)
            .iter()
            .zip(&added)
            .map(|(t, a)| t + 2.0 * (c + roundings) * F32_UNIT_ROUNDOFF * a)
            .collect()
    } else {
        let magnitude: Vec<f64> = conv_ref(s, &abs(&x), &abs(&w), None)
            .iter()
            .zip(&added)
            .map(|(m, a)| m + a)
            .collect();
        let patch = s.in_channels / s.groups * s.kernel_h * s.kernel_w;
        tolerance(patch + 2, &magnitude)
    };
    assert_within(&y, &want, &tol, &format!("{algo:?} {present:?} {s:?}"));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn conv2d_forward_add_matches_f64_reference(
        s in shapes(9),
        present in any::<[bool; 3]>(),
        seed in any::<u64>(),
    ) {
        check_forward_add(&s, present, Conv2dAlgorithm::Im2col, seed);
    }

    #[test]
    fn conv2d_winograd_forward_add_matches_f64_reference(
        s in winograd_shapes(20, 13),
        present in any::<[bool; 3]>(),
        seed in any::<u64>(),
    ) {
        for algo in WINOGRAD {
            check_forward_add(&s, present, algo, seed);
        }
    }
}

/// Batches cut into several chunks of several images (im2col: ⌈256 / 49⌉ = 6 images of 7×7 per GEMM, so 13 images
/// are chunks of 6, 6 and 1; Winograd: 16 tiles per 7×7 image, 16 images per chunk, so 35 are 16, 16 and 3), where
/// each image must take its own per-channel addend and residual; also a single 1×1 image, and a 1×1 pointwise kernel
/// without padding.
#[test]
fn conv2d_forward_add_finds_each_images_addends_in_every_chunk() {
    let square = |batch, channels, side, kernel, padding| Conv2dShape {
        batch,
        in_channels: channels,
        in_h: side,
        in_w: side,
        out_channels: channels + 1,
        kernel_h: kernel,
        kernel_w: kernel,
        stride: (1, 1),
        padding: (padding, padding),
        dilation: (1, 1),
        groups: 1,
    };
    for algo in [Conv2dAlgorithm::Im2col, Conv2dAlgorithm::Winograd] {
        for s in [
            square(13, 4, 7, 3, 1),
            square(35, 3, 7, 3, 1),
            square(1, 1, 1, 3, 1),
        ] {
            check_forward_add(&s, [true; 3], algo, 11);
            check_forward_add(&s, [false, true, true], algo, 12);
        }
    }
    check_forward_add(
        &square(3, 2, 5, 1, 0),
        [true; 3],
        Conv2dAlgorithm::Im2col,
        13,
    );
}

#[test]
fn conv2d_forward_add_rejects_addends_of_the_wrong_length() {
    let s = base();
    let d = Data::new(&s, 3);
    let (channel, residual) = (
        vec![0.0; s.batch * s.out_channels],
        vec![0.0; s.output_len()],
    );
    let mut y = vec![0.0; s.output_len()];
    let run = |addends, y: &mut [f32]| {
        conv2d_forward_add_with(Conv2dAlgorithm::Auto, &s, &d.x, &d.w, addends, y).unwrap_err()
    };
    let err = run(
        Conv2dAddends {
            channel: Some(&channel[1..]),
            ..Conv2dAddends::default()
        },
        &mut y,
    );
    assert!(err.message.contains("channel addend has"), "{err}");
    let err = run(
        Conv2dAddends {
            residual: Some(&residual[..residual.len() - 1]),
            ..Conv2dAddends::default()
        },
        &mut y,
    );
    assert!(err.message.contains("residual has"), "{err}");
}

/// Shapes the direct convolution computes: stride 1, one group, any kernel up to 4×4 with padding below it; batch
/// 1–3, 1 to 11 channels on each side (so output-channel blocks of 8, 4, 2 and 1 all occur), sides 1 to `max_side`
/// (position counts off every block of 32, 64 and 128).
fn direct_shapes(max_side: usize) -> impl Strategy<Value = Conv2dShape> {
    (
        (1usize..=3, 1usize..=11, 1usize..=11),
        (1..=max_side, 1..=max_side, 1usize..=4, 1usize..=4),
        (0usize..=3, 0usize..=3),
    )
        .prop_map(
            |((batch, in_channels, out_channels), (in_h, in_w, kernel_h, kernel_w), (ph, pw))| {
                Conv2dShape {
                    batch,
                    in_channels,
                    in_h,
                    in_w,
                    out_channels,
                    kernel_h,
                    kernel_w,
                    stride: (1, 1),
                    padding: (ph.min(kernel_h - 1), pw.min(kernel_w - 1)),
                    dilation: (1, 1),
                    groups: 1,
                }
            },
        )
        .prop_filter("the kernel must fit the padded input", |s| {
            s.validate().is_ok()
        })
}

/// The direct algorithm's three passes against the f64 references (the input gradient as the forward convolution
/// it is, the weight gradient as a direct sum): each an f32 sum of the same terms as im2col's GEMM, in another order,
/// within the same bound; the forward with all three addends.
fn check_direct(s: &Conv2dShape, seed: u64) {
    let algo = Conv2dAlgorithm::Direct;
    check_forward_add(s, [true; 3], algo, seed);
    check_forward_add(s, [false, false, true], algo, seed + 1);
    let d = Data::new(s, seed + 2);
    let (x, w, dy) = (to_f64(&d.x), to_f64(&d.w), to_f64(&d.dy));

    let mut dx = vec![f32::NAN; s.input_len()];
    conv2d_backward_input_with(algo, s, &d.dy, &d.w, &mut dx).unwrap();
    let want = finite_differences(&x, &dy, |x| conv_ref(s, x, &w, None));
    let magnitude = finite_differences(&abs(&x), &abs(&dy), |x| conv_ref(s, x, &abs(&w), None));
    let terms = s.out_channels * s.kernel_h * s.kernel_w;
    assert_within(
        &dx,
        &want,
        &tolerance(terms, &magnitude),
        &format!("grad_input {s:?}"),
    );

    let (mut dw, mut db) = (
        vec![f32::NAN; s.weight_len()],
        vec![f32::NAN; s.out_channels],
    );
    conv2d_backward_weight_with(algo, s, &d.x, &d.dy, &mut dw, Some(&mut db)).unwrap();
    let want = weight_gradient_ref(s, &x, &dy);
    let magnitude = weight_gradient_ref(s, &abs(&x), &abs(&dy));
    let terms = s.batch * s.out_h() * s.out_w();
    assert_within(
        &dw,
        &want,
        &tolerance(terms, &magnitude),
        &format!("grad_weight {s:?}"),
    );
    let plane = s.out_h() * s.out_w();
    for (o, &got) in db.iter().enumerate() {
        let terms = dy
            .chunks_exact(s.out_channels * plane)
            .flat_map(|image| &image[o * plane..][..plane]);
        let (sum, abs) = terms.fold((0.0, 0.0), |(sum, abs): (f64, f64), &v| {
            (sum + v, abs + v.abs())
        });
        let tol = (s.batch * plane) as f64 * abs * 2f64.powi(-53) + sum.abs() * 2f64.powi(-24);
        assert!(
            (f64::from(got) - sum).abs() <= tol,
            "grad_bias[{o}] {s:?}: {got} against {sum}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn conv2d_direct_matches_f64_reference(s in direct_shapes(13), seed in any::<u64>()) {
        check_direct(&s, seed);
    }
}

/// The `fashion-vae` layers the direct algorithm runs under `Auto` (batch 2 of each): 1 → 32 and 32 → 1 channels at
/// 28×28, 64 → 8 and 4 → 64 at 7×7 (3×3, padding 1), and the 8 → 8 pointwise quant convolution; and the edge cases
/// batch 1, one channel in and out, a 1×1 image and a kernel as large as the padded input.
#[test]
fn conv2d_direct_handles_autoencoder_layers_and_edge_cases() {
    let square = |batch, in_channels, side, out_channels, kernel, padding| Conv2dShape {
        batch,
        in_channels,
        in_h: side,
        in_w: side,
        out_channels,
        kernel_h: kernel,
        kernel_w: kernel,
        stride: (1, 1),
        padding: (padding, padding),
        dilation: (1, 1),
        groups: 1,
    };
    for (i, s) in [
        square(2, 1, 28, 32, 3, 1),
        square(2, 32, 28, 1, 3, 1),
        square(2, 64, 7, 8, 3, 1),
        square(2, 4, 7, 64, 3, 1),
        square(2, 8, 7, 8, 1, 0),
        square(1, 1, 1, 1, 3, 1),
        square(1, 1, 5, 1, 5, 0),
        square(1, 3, 2, 9, 3, 2),
    ]
    .iter()
    .enumerate()
    {
        check_direct(s, 40 + i as u64);
    }
}

/// `Auto` picks the direct algorithm for stride-1 convolutions with at most `DIRECT_MAX_CHANNELS` output channels
/// (bit-identical to asking for it), and `Direct` refuses the shapes it cannot compute.
#[test]
fn conv2d_direct_is_chosen_for_few_channels_and_refuses_other_shapes() {
    let s = Conv2dShape {
        batch: 2,
        in_channels: 20,
        in_h: 9,
        in_w: 11,
        out_channels: DIRECT_MAX_CHANNELS,
        groups: 1,
        ..base()
    };
    let d = Data::new(&s, 5);
    let mut auto = vec![0.0; s.output_len()];
    let mut direct = vec![0.0; s.output_len()];
    conv2d_forward(&s, &d.x, &d.w, Some(&d.b), &mut auto).unwrap();
    conv2d_forward_with(
        Conv2dAlgorithm::Direct,
        &s,
        &d.x,
        &d.w,
        Some(&d.b),
        &mut direct,
    )
    .unwrap();
    assert_eq!(auto, direct);
    for unsupported in [
        Conv2dShape {
            stride: (2, 1),
            ..s
        },
        Conv2dShape {
            dilation: (1, 2),
            ..s
        },
        Conv2dShape {
            groups: 2,
            in_channels: 4,
            out_channels: 4,
            ..s
        },
        Conv2dShape {
            padding: (3, 1),
            ..s
        },
    ] {
        let mut y = vec![0.0; unsupported.output_len()];
        let x = vec![0.0; unsupported.input_len()];
        let w = vec![0.0; unsupported.weight_len()];
        let result =
            conv2d_forward_with(Conv2dAlgorithm::Direct, &unsupported, &x, &w, None, &mut y);
        assert!(result.is_err(), "{unsupported:?} must be refused");
    }
}

/// The direct algorithm's results do not depend on the number of threads.
#[test]
fn conv2d_direct_is_bit_identical_for_any_thread_count() {
    let s = Conv2dShape {
        batch: 5,
        in_channels: 3,
        in_h: 17,
        in_w: 15,
        out_channels: 13,
        groups: 1,
        ..base()
    };
    let d = Data::new(&s, 17);
    let algo = Conv2dAlgorithm::Direct;
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let mut y = vec![0.0; s.output_len()];
            let mut dx = vec![0.0; s.input_len()];
            let (mut dw, mut db) = (vec![0.0; s.weight_len()], vec![0.0; s.out_channels]);
            conv2d_forward_with(algo, &s, &d.x, &d.w, Some(&d.b), &mut y).unwrap();
            conv2d_backward_input_with(algo, &s, &d.dy, &d.w, &mut dx).unwrap();
            conv2d_backward_weight_with(algo, &s, &d.x, &d.dy, &mut dw, Some(&mut db)).unwrap();
            [y, dx, dw, db].map(|v| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>())
        })
    };
    assert_eq!(run(1), run(2));
}
