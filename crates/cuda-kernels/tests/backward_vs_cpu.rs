//! The backward kernels (conv2d to input, weight and bias; attention to q, k, v) held against their CPU twins in
//! `diffuse-cpu-kernels`, which are themselves checked against finite differences of the forward in f64. Shapes are
//! random and include the awkward ones: batch 1, one channel, stride 2, padding 0 and 2, dilation 2, groups, sizes
//! that are not multiples of the 128-wide GEMM tiles or the 32-row attention tiles, fully masked attention rows.
//!
//! The tests run under `diffuse-gpu-test`'s harness: without a CUDA driver or device each is reported ignored, with
//! the reason; on a device that cannot run the kernels each fails with the driver's message.

mod common;

use common::{absolute, cpu_conv_shape, download, poisoned, runner, upload, values};

use diffuse_cpu_kernels::attention as cpu_attention;
use diffuse_cpu_kernels::conv2d as cpu_conv;
use diffuse_cuda_kernels::attention::{self, AttentionShape};
use diffuse_cuda_kernels::attention_backward::attention_backward;
use diffuse_cuda_kernels::conv::Conv2dShape;
use diffuse_cuda_kernels::conv_backward::{conv2d_backward_input, conv2d_backward_weight};
use diffuse_cuda_kernels::{DeviceBuffer, Gpu};
use proptest::prelude::*;

/// Elementwise `|got - want| <= bound[i]`, naming the first offender.
fn assert_within(
    what: &str,
    got: &[f32],
    want: &[f32],
    bound: impl Fn(usize) -> f64,
) -> Result<(), TestCaseError> {
    prop_assert_eq!(got.len(), want.len(), "{}: lengths differ", what);
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let err = (f64::from(g) - f64::from(w)).abs();
        prop_assert!(
            err <= bound(i),
            "{}: element {} is {} but the CPU kernel says {} (bound {})",
            what,
            i,
            g,
            w,
            bound(i)
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------- conv2d

/// Random convolutions: batch 1..3, 1..3 groups of 1..4 input channels, 1..12 pixels a side (so batch H W crosses the
/// 128-wide tile edge), 1x1 and 3x3 kernels, stride 1..3 (1, 4 or 9 stride phases), padding 0..2, dilation 1 and 2.
fn conv_case() -> impl Strategy<Value = (Conv2dShape, u64)> {
    (
        (1usize..4, 1usize..4, 1usize..5, 1usize..13, 1usize..13),
        (
            prop_oneof![Just(1usize), Just(3)],
            1usize..4,
            0usize..3,
            1usize..3,
            1usize..4,
        ),
        any::<u64>(),
    )
        .prop_map(
            |((batch, groups, cpg, in_h, in_w), (kernel, stride, padding, dilation, opg), seed)| {
                let shape = Conv2dShape {
                    batch,
                    in_channels: groups * cpg,
                    in_h,
                    in_w,
                    out_channels: groups * opg,
                    kernel_h: kernel,
                    kernel_w: kernel,
                    stride,
                    padding,
                    dilation,
                    groups,
                };
                (shape, seed)
            },
        )
        .prop_filter("the kernel fits the padded input", |(s, _)| {
            s.output_hw().is_some()
        })
}

/// Lengths of x, the weight and y.
fn conv_lens(s: &Conv2dShape) -> (usize, usize, usize) {
    let (oh, ow) = s.output_hw().expect("valid shape");
    (
        s.batch * s.in_channels * s.in_h * s.in_w,
        s.out_channels * (s.in_channels / s.groups) * s.kernel_h * s.kernel_w,
        s.batch * s.out_channels * oh * ow,
    )
}

/// Both sides sum the same `k` products in f32, in different orders: each is within `(k + 1) 2^-24 Σ|terms|` of the
/// exact sum, so they differ by at most twice that. `magnitude` is Σ|terms|, computed by the CPU kernel on |inputs|.
fn sum_bound(k: usize, magnitude: f32) -> f64 {
    2.0 * (k as f64 + 2.0) * f64::from(f32::EPSILON) / 2.0 * (f64::from(magnitude) + 1e-30)
}

fn check_backward_input(gpu: &Gpu, s: &Conv2dShape, seed: u64) -> Result<(), TestCaseError> {
    let (x_len, w_len, y_len) = conv_lens(s);
    let (w_host, dy_host) = (values(seed ^ 1, w_len), values(seed ^ 2, y_len));
    let mut dx = poisoned(gpu, x_len);
    conv2d_backward_input(
        gpu,
        s,
        &upload(gpu, &dy_host),
        &upload(gpu, &w_host),
        &mut dx,
    )
    .unwrap();
    let cpu = cpu_conv_shape(s);
    let (mut want, mut magnitude) = (vec![0.0; x_len], vec![0.0; x_len]);
    cpu_conv::conv2d_backward_input(&cpu, &dy_host, &w_host, &mut want).unwrap();
    cpu_conv::conv2d_backward_input(
        &cpu,
        &absolute(&dy_host),
        &absolute(&w_host),
        &mut magnitude,
    )
    .unwrap();
    let k = s.out_channels / s.groups * s.kernel_h * s.kernel_w;
    assert_within("grad_input", &download(gpu, &dx), &want, |i| {
        sum_bound(k, magnitude[i])
    })
}

fn check_backward_weight(
    gpu: &Gpu,
    s: &Conv2dShape,
    seed: u64,
    with_bias: bool,
) -> Result<(), TestCaseError> {
    let (x_len, w_len, y_len) = conv_lens(s);
    let (x_host, dy_host) = (values(seed ^ 3, x_len), values(seed ^ 4, y_len));
    let (mut dw, mut db) = (poisoned(gpu, w_len), poisoned(gpu, s.out_channels));
    conv2d_backward_weight(
        gpu,
        s,
        &upload(gpu, &x_host),
        &upload(gpu, &dy_host),
        &mut dw,
        with_bias.then_some(&mut db),
    )
    .unwrap();
    let cpu = cpu_conv_shape(s);
    let (mut want, mut magnitude) = (vec![0.0; w_len], vec![0.0; w_len]);
    let (mut want_db, mut magnitude_db) = (vec![0.0; s.out_channels], vec![0.0; s.out_channels]);
    cpu_conv::conv2d_backward_weight(&cpu, &x_host, &dy_host, &mut want, Some(&mut want_db))
        .unwrap();
    cpu_conv::conv2d_backward_weight(
        &cpu,
        &absolute(&x_host),
        &absolute(&dy_host),
        &mut magnitude,
        Some(&mut magnitude_db),
    )
    .unwrap();
    let (oh, ow) = s.output_hw().unwrap();
    let rows = s.batch * oh * ow;
    assert_within("grad_weight", &download(gpu, &dw), &want, |i| {
        sum_bound(rows, magnitude[i])
    })?;
    if with_bias {
        assert_within("grad_bias", &download(gpu, &db), &want_db, |i| {
            sum_bound(rows, magnitude_db[i])
        })?;
    }
    Ok(())
}

fn conv2d_backward_input_matches_the_cpu_kernel(gpu: &Gpu) {
    runner()
        .run(&conv_case(), |(s, seed)| {
            check_backward_input(gpu, &s, seed)
        })
        .unwrap();
}

fn conv2d_backward_weight_and_bias_match_the_cpu_kernel(gpu: &Gpu) {
    runner()
        .run(&(conv_case(), any::<bool>()), |((s, seed), bias)| {
            check_backward_weight(gpu, &s, seed, bias)
        })
        .unwrap();
}

/// Shapes past one 128 x 128 tile in every GEMM dimension, and a reduction long enough to be split across blocks.
fn wide_shapes() -> Vec<Conv2dShape> {
    let base = Conv2dShape {
        batch: 1,
        in_channels: 130,
        in_h: 9,
        in_w: 7,
        out_channels: 131,
        kernel_h: 3,
        kernel_w: 3,
        stride: 1,
        padding: 1,
        dilation: 1,
        groups: 1,
    };
    vec![
        base,
        Conv2dShape {
            batch: 5,
            in_channels: 6,
            in_h: 33,
            in_w: 31,
            out_channels: 4,
            groups: 2,
            stride: 2,
            padding: 0,
            ..base
        },
        Conv2dShape {
            batch: 8,
            in_channels: 3,
            in_h: 32,
            in_w: 32,
            out_channels: 5,
            ..base
        },
    ]
}

fn conv2d_backward_matches_the_cpu_kernel_past_one_tile_and_with_a_split_reduction(gpu: &Gpu) {
    for (i, s) in wide_shapes().iter().enumerate() {
        check_backward_input(gpu, s, i as u64).unwrap();
        check_backward_weight(gpu, s, i as u64, true).unwrap();
    }
}

fn conv2d_backward_weight_gives_the_same_bits_every_run(gpu: &Gpu) {
    let s = wide_shapes()[2];
    let (x_len, w_len, y_len) = conv_lens(&s);
    let (x, dy) = (
        upload(gpu, &values(7, x_len)),
        upload(gpu, &values(8, y_len)),
    );
    let runs: Vec<Vec<f32>> = (0..3)
        .map(|_| {
            let mut dw = poisoned(gpu, w_len);
            conv2d_backward_weight(gpu, &s, &x, &dy, &mut dw, None::<&mut DeviceBuffer>).unwrap();
            download(gpu, &dw)
        })
        .collect();
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&runs[0]), bits(&runs[1]));
    assert_eq!(bits(&runs[0]), bits(&runs[2]));
}

fn conv2d_backward_of_an_empty_batch_is_an_empty_sum(gpu: &Gpu) {
    let s = Conv2dShape {
        batch: 0,
        ..wide_shapes()[1]
    };
    let (_, w_len, _) = conv_lens(&s);
    let empty = upload(gpu, &[]);
    let (mut dw, mut db) = (poisoned(gpu, w_len), poisoned(gpu, s.out_channels));
    conv2d_backward_weight(gpu, &s, &empty, &empty, &mut dw, Some(&mut db)).unwrap();
    assert!(download(gpu, &dw).iter().all(|&x| x == 0.0));
    assert!(download(gpu, &db).iter().all(|&x| x == 0.0));
    let mut dx = upload(gpu, &[]);
    conv2d_backward_input(gpu, &s, &empty, &upload(gpu, &values(1, w_len)), &mut dx).unwrap();
}

fn conv2d_backward_refuses_buffers_of_the_wrong_length(gpu: &Gpu) {
    let s = wide_shapes()[0];
    let (x_len, w_len, y_len) = conv_lens(&s);
    let (x, w, dy) = (
        poisoned(gpu, x_len),
        poisoned(gpu, w_len),
        poisoned(gpu, y_len),
    );
    let mut short = poisoned(gpu, x_len - 1);
    let err = conv2d_backward_input(gpu, &s, &dy, &w, &mut short).unwrap_err();
    assert!(err.message.contains("grad_input"), "{err}");
    let mut dw = poisoned(gpu, w_len);
    let mut db = poisoned(gpu, s.out_channels + 1);
    let err = conv2d_backward_weight(gpu, &s, &x, &dy, &mut dw, Some(&mut db)).unwrap_err();
    assert!(err.message.contains("grad_bias"), "{err}");
    let bad = Conv2dShape { groups: 4, ..s };
    let err = conv2d_backward_input(gpu, &bad, &dy, &w, &mut short).unwrap_err();
    assert!(err.message.contains("groups"), "{err}");
}

// ------------------------------------------------------------------------------------------------------- attention

/// Which (query, key) pairs the bias masks with -inf.
#[derive(Debug, Clone, Copy)]
enum Mask {
    None,
    /// Key j is visible to query i when j <= i + (kv_len - q_len); query 0 always sees key 0.
    Causal,
    /// Query row 1 sees nothing: its output is 0 and it has no gradient.
    SecondRowBlind,
}

impl Mask {
    fn bias(self, q_len: usize, kv_len: usize) -> Option<Vec<f32>> {
        let visible = |i: usize, j: usize| match self {
            Mask::None => true,
            Mask::Causal => j + q_len <= i + kv_len || j == 0,
            Mask::SecondRowBlind => i != 1,
        };
        if let Mask::None = self {
            return None;
        }
        Some(
            (0..q_len * kv_len)
                .map(|e| {
                    if visible(e / kv_len, e % kv_len) {
                        0.0
                    } else {
                        f32::NEG_INFINITY
                    }
                })
                .collect(),
        )
    }
}

/// Sequences, heads (side by side in every row), lengths, head sizes up to the kernels' 128, and rows of q and of
/// k, v dense or wider than their heads (a fused projection's rows, read in place).
fn attention_case() -> impl Strategy<Value = (AttentionShape, Mask, u64)> {
    (
        (
            1usize..3,
            1usize..4,
            prop_oneof![Just(0usize), Just(3)],
            prop_oneof![Just(0usize), Just(5)],
        ),
        prop_oneof![1usize..9, 30usize..40, 60usize..70],
        prop_oneof![1usize..9, 30usize..40, 60usize..70],
        prop_oneof![
            Just(1usize),
            Just(8),
            Just(31),
            Just(64),
            Just(100),
            Just(128)
        ],
        prop_oneof![
            Just(Mask::None),
            Just(Mask::Causal),
            Just(Mask::SecondRowBlind)
        ],
        any::<u64>(),
    )
        .prop_map(
            |((batch, heads, q_pad, kv_pad), q_len, kv_len, head_dim, mask, seed)| {
                let scale = 1.0 / (head_dim as f32).sqrt();
                let dense = AttentionShape::dense(batch, heads, q_len, kv_len, head_dim, scale);
                let shape = AttentionShape {
                    q_row_stride: dense.inner() + q_pad,
                    kv_row_stride: dense.inner() + kv_pad,
                    ..dense
                };
                (shape, mask, seed)
            },
        )
}

fn attention_forward_and_backward_match_the_cpu_kernels(gpu: &Gpu) {
    // Both sides compute in f32 with a ~2^-21-accurate exp. Scores are O(1) (scale = 1/sqrt(head_dim), entries in
    // [-1, 1)), probabilities are at most 1 and every gradient is a sum of at most 70 terms of size O(1): the two
    // differ by a few hundred ulps of the largest term. 1e-4 of max(1, |want|) holds that with room.
    runner()
        .run(&attention_case(), |(s, mask, seed)| {
            let (q_rows, kv_rows, inner) = (s.batch * s.q_len, s.batch * s.kv_len, s.inner());
            let (q_elems, kv_elems, out_elems) = (
                q_rows * s.q_row_stride,
                kv_rows * s.kv_row_stride,
                q_rows * inner,
            );
            let (q, k, v, grad_out) = (
                values(seed, q_elems),
                values(seed ^ 1, kv_elems),
                values(seed ^ 2, kv_elems),
                values(seed ^ 3, out_elems),
            );
            let bias = mask.bias(s.q_len, s.kv_len);
            let (mut want_out, mut want_lse) =
                (vec![0.0; out_elems], vec![0.0; s.problems() * s.q_len]);
            cpu_attention::attention_forward(
                &s,
                &q,
                &k,
                &v,
                bias.as_deref(),
                &mut want_out,
                &mut want_lse,
            )
            .unwrap();
            // Gradients start as NaN in the head columns (a forgotten element cannot pass) and 7 past them (where
            // both kernels must leave them).
            let canvas = |len: usize, stride: usize| -> Vec<f32> {
                (0..len)
                    .map(|i| if i % stride < inner { f32::NAN } else { 7.0 })
                    .collect()
            };
            let (mut want_dq, mut want_dk, mut want_dv) = (
                canvas(q_elems, s.q_row_stride),
                canvas(kv_elems, s.kv_row_stride),
                canvas(kv_elems, s.kv_row_stride),
            );
            cpu_attention::attention_backward(
                &s,
                &q,
                &k,
                &v,
                bias.as_deref(),
                &want_out,
                &want_lse,
                &grad_out,
                &mut want_dq,
                &mut want_dk,
                &mut want_dv,
            )
            .unwrap();

            let (dq_dev, dk_dev, dv_dev) = (upload(gpu, &q), upload(gpu, &k), upload(gpu, &v));
            let bias_dev = bias.as_deref().map(|b| upload(gpu, b));
            let (mut out, mut lse) = (
                poisoned(gpu, out_elems),
                poisoned(gpu, s.problems() * s.q_len),
            );
            attention::attention_forward(
                gpu,
                &s,
                &dq_dev,
                &dk_dev,
                &dv_dev,
                bias_dev.as_ref(),
                &mut out,
                &mut lse,
            )
            .unwrap();
            let (mut dq, mut dk, mut dv) = (
                upload(gpu, &canvas(q_elems, s.q_row_stride)),
                upload(gpu, &canvas(kv_elems, s.kv_row_stride)),
                upload(gpu, &canvas(kv_elems, s.kv_row_stride)),
            );
            attention_backward(
                gpu,
                &s,
                &dq_dev,
                &dk_dev,
                &dv_dev,
                bias_dev.as_ref(),
                &out,
                &lse,
                &upload(gpu, &grad_out),
                &mut dq,
                &mut dk,
                &mut dv,
            )
            .unwrap();
            let tol = |want: &[f32]| {
                let want = want.to_vec();
                move |i: usize| 1e-4 * f64::from(want[i].abs()).max(1.0)
            };
            assert_within("out", &download(gpu, &out), &want_out, tol(&want_out))?;
            let got_lse = download(gpu, &lse);
            for (i, (&g, &w)) in got_lse.iter().zip(&want_lse).enumerate() {
                prop_assert!(
                    g == w
                        || (f64::from(g) - f64::from(w)).abs()
                            <= 1e-4 * f64::from(w.abs()).max(1.0),
                    "lse[{}] is {} but the CPU kernel says {}",
                    i,
                    g,
                    w
                );
            }
            assert_within("grad_q", &download(gpu, &dq), &want_dq, tol(&want_dq))?;
            assert_within("grad_k", &download(gpu, &dk), &want_dk, tol(&want_dk))?;
            assert_within("grad_v", &download(gpu, &dv), &want_dv, tol(&want_dv))
        })
        .unwrap();
}

fn attention_backward_without_queries_zeroes_the_key_and_value_gradients(gpu: &Gpu) {
    let s = AttentionShape::dense(2, 1, 0, 3, 4, 0.5);
    let empty = upload(gpu, &[]);
    let kv = upload(gpu, &values(1, 24));
    let (mut dq, mut dk, mut dv) = (upload(gpu, &[]), poisoned(gpu, 24), poisoned(gpu, 24));
    attention_backward(
        gpu,
        &s,
        &empty,
        &kv,
        &kv,
        None::<&DeviceBuffer>,
        &empty,
        &empty,
        &empty,
        &mut dq,
        &mut dk,
        &mut dv,
    )
    .unwrap();
    assert!(download(gpu, &dk).iter().all(|&x| x == 0.0));
    assert!(download(gpu, &dv).iter().all(|&x| x == 0.0));
}

fn attention_backward_refuses_a_bias_of_the_wrong_length(gpu: &Gpu) {
    let s = AttentionShape::dense(2, 1, 3, 5, 4, 0.5);
    let (q, kv, lse) = (poisoned(gpu, 24), poisoned(gpu, 40), poisoned(gpu, 6));
    // a per-head bias ([batch_heads, q_len, kv_len]) is not the CPU convention ([q_len, kv_len]) and is refused
    let bias = poisoned(gpu, 2 * 15);
    let (mut dq, mut dk, mut dv) = (poisoned(gpu, 24), poisoned(gpu, 40), poisoned(gpu, 40));
    let err = attention_backward(
        gpu,
        &s,
        &q,
        &kv,
        &kv,
        Some(&bias),
        &q,
        &lse,
        &q,
        &mut dq,
        &mut dk,
        &mut dv,
    )
    .unwrap_err();
    assert!(err.message.contains("bias"), "{err}");
}

fn main() {
    let tests = diffuse_gpu_test::on_gpu![
        conv2d_backward_input_matches_the_cpu_kernel,
        conv2d_backward_weight_and_bias_match_the_cpu_kernel,
        conv2d_backward_matches_the_cpu_kernel_past_one_tile_and_with_a_split_reduction,
        conv2d_backward_weight_gives_the_same_bits_every_run,
        conv2d_backward_of_an_empty_batch_is_an_empty_sum,
        conv2d_backward_refuses_buffers_of_the_wrong_length,
        attention_forward_and_backward_match_the_cpu_kernels,
        attention_backward_without_queries_zeroes_the_key_and_value_gradients,
        attention_backward_refuses_a_bias_of_the_wrong_length,
    ];
    diffuse_gpu_test::run(|| Gpu::new(0), tests);
}
