//! The bf16 convolution (`conv_bf16.rs`: `kernels/conv2d_bf16.ptx` around `gemm_bf16`) held against the f32 CPU
//! convolution in `diffuse-cpu-kernels` (im2col + GEMM, plain sums), forward and both gradients, within the bf16
//! bound. Shapes are random and include batch 1, one channel, stride 2, no padding, dilation 2, sizes off every 8- and
//! 128-wide edge, and small chunk budgets so that the batch is cut into several chunks (the weight gradient then
//! accumulates them with beta = 1).
//!
//! The bound, per element with Σ|terms| = m (computed by the CPU kernel on |inputs|): the bf16 side is within
//! (2⁻⁸ + (R + 2)·2⁻²⁴)·m of the exact sum (each factor rounded to bf16 costs at most 2⁻⁹ of itself, so a term
//! < 2⁻⁸ + 2⁻¹⁸ of itself; R f32 additions on the longest path: K for the forward, OC + KH·KW for the input gradient,
//! the pixels plus the chunks for the weight gradient), the CPU side within (R_cpu + 1)·2⁻²⁴·m; the test allows the sum.
//!
//! The tests run under `diffuse-gpu-test`'s harness: without a CUDA driver or device each is reported ignored, with
//! the reason; on a device that cannot run the kernels each fails with the driver's message.

mod common;

use common::{absolute, cpu_conv_shape, download, poisoned, runner, upload, values};

use diffuse_cpu_kernels::conv2d::{self as cpu_conv, Conv2dAlgorithm};
use diffuse_cuda_kernels::conv::Conv2dShape;
use diffuse_cuda_kernels::conv_bf16::{
    conv2d_backward_input_bf16, conv2d_backward_weight_bf16, conv2d_forward_bf16, Plan,
};
use diffuse_cuda_kernels::{DeviceBuffer, Gpu};
use proptest::prelude::*;

const CPU: Conv2dAlgorithm = Conv2dAlgorithm::Im2col;

/// `|got - want| <= (2⁻⁸ + (additions + 3)·2⁻²⁴)·magnitude[i]` for every element, naming the first offender.
/// `additions` counts both sides' f32 additions (see the module docs).
fn assert_within_bf16(
    what: &str,
    got: &[f32],
    want: &[f32],
    magnitude: &[f32],
    additions: usize,
) -> Result<(), TestCaseError> {
    prop_assert_eq!(got.len(), want.len(), "{}: lengths differ", what);
    let unit = f64::from(f32::EPSILON) / 2.0;
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let bound =
            (2f64.powi(-8) + (additions as f64 + 3.0) * unit) * (f64::from(magnitude[i]) + 1e-30);
        let err = (f64::from(g) - f64::from(w)).abs();
        prop_assert!(
            err <= bound,
            "{}: element {} is {} but the f32 CPU kernel says {} (bf16 bound {})",
            what,
            i,
            g,
            w,
            bound
        );
    }
    Ok(())
}

/// Random ungrouped convolutions: batch 1..4, 1..5 input and 1..10 output channels (OC₈ padding and K₈ padding
/// both reached), 1..13 pixels a side, 1x1 and 3x3 kernels, stride 1..3, padding 0..2, dilation 1 and 2; and a chunk
/// budget of one element (one sample per chunk) or the default (one chunk).
fn conv_case() -> impl Strategy<Value = (Conv2dShape, bool, u64)> {
    (
        (1usize..4, 1usize..5, 1usize..13, 1usize..13, 1usize..10),
        (
            prop_oneof![Just(1usize), Just(3)],
            1usize..4,
            0usize..3,
            1usize..3,
        ),
        any::<bool>(),
        any::<u64>(),
    )
        .prop_map(
            |(
                (batch, in_channels, in_h, in_w, out_channels),
                (kernel, stride, padding, dilation),
                chunked,
                seed,
            )| {
                let shape = Conv2dShape {
                    batch,
                    in_channels,
                    in_h,
                    in_w,
                    out_channels,
                    kernel_h: kernel,
                    kernel_w: kernel,
                    stride,
                    padding,
                    dilation,
                    groups: 1,
                };
                (shape, chunked, seed)
            },
        )
        .prop_filter("the kernel fits the padded input", |(s, _, _)| {
            s.output_hw().is_some()
        })
}

fn plan_of(s: &Conv2dShape, chunked: bool) -> Plan {
    if chunked {
        Plan::with_chunk_elements("test", s, 1).unwrap()
    } else {
        Plan::new("test", s).unwrap()
    }
}

/// The forward, the input gradient and the weight and bias gradients of one convolution against the CPU.
fn check_all(gpu: &Gpu, s: &Conv2dShape, chunked: bool, seed: u64) -> Result<(), TestCaseError> {
    let plan = plan_of(s, chunked);
    let (oh, ow) = (plan.out_h, plan.out_w);
    let (x_len, w_len) = (
        s.batch * s.in_channels * s.in_h * s.in_w,
        s.out_channels * plan.k,
    );
    let y_len = s.batch * s.out_channels * oh * ow;
    let (x, w, b, dy) = (
        values(seed ^ 1, x_len),
        values(seed ^ 2, w_len),
        values(seed ^ 3, s.out_channels),
        values(seed ^ 4, y_len),
    );
    let (xd, wd, bd, dyd) = (
        upload(gpu, &x),
        upload(gpu, &w),
        upload(gpu, &b),
        upload(gpu, &dy),
    );
    let cpu = cpu_conv_shape(s);
    let taps = s.kernel_h * s.kernel_w;
    let pixels = s.batch * oh * ow;
    let chunks = plan.chunks().count();

    let mut y = poisoned(gpu, y_len);
    conv2d_forward_bf16(
        gpu,
        &plan,
        &xd.view(),
        &wd.view(),
        Some(&bd.view()),
        &mut y.view_mut(),
    )
    .unwrap();
    let (mut want, mut magnitude) = (vec![0.0; y_len], vec![0.0; y_len]);
    cpu_conv::conv2d_forward_with(CPU, &cpu, &x, &w, Some(&b), &mut want).unwrap();
    cpu_conv::conv2d_forward_with(
        CPU,
        &cpu,
        &absolute(&x),
        &absolute(&w),
        Some(&absolute(&b)),
        &mut magnitude,
    )
    .unwrap();
    assert_within_bf16("y", &download(gpu, &y), &want, &magnitude, 2 * plan.k + 1)?;

    let mut dx = poisoned(gpu, x_len);
    conv2d_backward_input_bf16(gpu, &plan, &dyd.view(), &wd.view(), &mut dx.view_mut()).unwrap();
    let (mut want, mut magnitude) = (vec![0.0; x_len], vec![0.0; x_len]);
    cpu_conv::conv2d_backward_input_with(CPU, &cpu, &dy, &w, &mut want).unwrap();
    cpu_conv::conv2d_backward_input_with(CPU, &cpu, &absolute(&dy), &absolute(&w), &mut magnitude)
        .unwrap();
    let additions = s.out_channels + taps + s.out_channels * taps;
    assert_within_bf16(
        "grad_input",
        &download(gpu, &dx),
        &want,
        &magnitude,
        additions,
    )?;

    let (mut dw, mut db) = (poisoned(gpu, w_len), poisoned(gpu, s.out_channels));
    conv2d_backward_weight_bf16(
        gpu,
        &plan,
        &xd.view(),
        &dyd.view(),
        &mut dw.view_mut(),
        Some(&mut db.view_mut()),
    )
    .unwrap();
    let (mut want, mut magnitude) = (vec![0.0; w_len], vec![0.0; w_len]);
    let (mut want_db, mut magnitude_db) = (vec![0.0; s.out_channels], vec![0.0; s.out_channels]);
    cpu_conv::conv2d_backward_weight_with(CPU, &cpu, &x, &dy, &mut want, Some(&mut want_db))
        .unwrap();
    cpu_conv::conv2d_backward_weight_with(
        CPU,
        &cpu,
        &absolute(&x),
        &absolute(&dy),
        &mut magnitude,
        Some(&mut magnitude_db),
    )
    .unwrap();
    assert_within_bf16(
        "grad_weight",
        &download(gpu, &dw),
        &want,
        &magnitude,
        2 * pixels + chunks,
    )?;
    // the bias gradient is f32 on both sides: well inside the bf16 allowance, but a wrong sum is far outside it
    assert_within_bf16(
        "grad_bias",
        &download(gpu, &db),
        &want_db,
        &magnitude_db,
        2 * pixels,
    )
}

fn bf16_convolution_matches_the_f32_cpu_kernels_within_the_bf16_bound(gpu: &Gpu) {
    runner()
        .run(&conv_case(), |(s, chunked, seed)| {
            check_all(gpu, &s, chunked, seed)
        })
        .unwrap();
}

/// Past one 128 x 128 GEMM tile in every dimension the products have (OC = 130 rows; K = 144 and the pixels as
/// columns or reduction), the U-Net's 3x3 'same' shape and its stride-2 downsampler, each in one and in several chunks.
fn bf16_convolution_matches_past_one_tile_and_across_chunks(gpu: &Gpu) {
    let base = Conv2dShape {
        batch: 3,
        in_channels: 16,
        in_h: 14,
        in_w: 13,
        out_channels: 130,
        kernel_h: 3,
        kernel_w: 3,
        stride: 1,
        padding: 1,
        dilation: 1,
        groups: 1,
    };
    let downsample = Conv2dShape {
        stride: 2,
        out_channels: 24,
        ..base
    };
    for (index, s) in [base, downsample].iter().enumerate() {
        for chunked in [false, true] {
            check_all(gpu, s, chunked, 40 + index as u64).unwrap();
        }
    }
}

/// An empty batch writes nothing forward and a zero weight gradient (the empty sum), as the f32 kernels do.
fn bf16_convolution_of_an_empty_batch_is_an_empty_sum(gpu: &Gpu) {
    let s = Conv2dShape {
        batch: 0,
        in_channels: 3,
        in_h: 5,
        in_w: 5,
        out_channels: 4,
        kernel_h: 3,
        kernel_w: 3,
        stride: 1,
        padding: 1,
        dilation: 1,
        groups: 1,
    };
    let plan = Plan::new("test", &s).unwrap();
    let (empty, w) = (upload(gpu, &[]), upload(gpu, &values(5, 4 * 27)));
    let mut y = upload(gpu, &[]);
    conv2d_forward_bf16(
        gpu,
        &plan,
        &empty.view(),
        &w.view(),
        None,
        &mut y.view_mut(),
    )
    .unwrap();
    let (mut dw, mut db) = (poisoned(gpu, 4 * 27), poisoned(gpu, 4));
    conv2d_backward_weight_bf16(
        gpu,
        &plan,
        &empty.view(),
        &empty.view(),
        &mut dw.view_mut(),
        Some(&mut db.view_mut()),
    )
    .unwrap();
    assert!(download(gpu, &dw).iter().all(|&v| v == 0.0));
    assert!(download(gpu, &db).iter().all(|&v| v == 0.0));
}

fn bf16_convolution_refuses_buffers_of_the_wrong_length(gpu: &Gpu) {
    let s = Conv2dShape {
        batch: 2,
        in_channels: 3,
        in_h: 5,
        in_w: 5,
        out_channels: 4,
        kernel_h: 3,
        kernel_w: 3,
        stride: 1,
        padding: 1,
        dilation: 1,
        groups: 1,
    };
    let plan = Plan::new("test", &s).unwrap();
    let (x, w, y) = (
        zeros_of(gpu, 150),
        zeros_of(gpu, 4 * 27),
        zeros_of(gpu, 200),
    );
    let short = zeros_of(gpu, 149);
    let mut out = zeros_of(gpu, 200);
    let err = conv2d_forward_bf16(
        gpu,
        &plan,
        &short.view(),
        &w.view(),
        None,
        &mut out.view_mut(),
    )
    .unwrap_err();
    assert!(err.message.contains("x"), "{err}");
    let mut dx = zeros_of(gpu, 151);
    let err = conv2d_backward_input_bf16(gpu, &plan, &y.view(), &w.view(), &mut dx.view_mut())
        .unwrap_err();
    assert!(err.message.contains("grad_input"), "{err}");
    let mut dw = zeros_of(gpu, 4 * 27 - 1);
    let err =
        conv2d_backward_weight_bf16(gpu, &plan, &x.view(), &y.view(), &mut dw.view_mut(), None)
            .unwrap_err();
    assert!(err.message.contains("grad_weight"), "{err}");
}

fn zeros_of(gpu: &Gpu, len: usize) -> DeviceBuffer {
    upload(gpu, &vec![0.0; len])
}

fn main() {
    let tests = diffuse_gpu_test::on_gpu![
        bf16_convolution_matches_the_f32_cpu_kernels_within_the_bf16_bound,
        bf16_convolution_matches_past_one_tile_and_across_chunks,
        bf16_convolution_of_an_empty_batch_is_an_empty_sum,
        bf16_convolution_refuses_buffers_of_the_wrong_length,
    ];
    diffuse_gpu_test::run(|| Gpu::new(0), tests);
}
