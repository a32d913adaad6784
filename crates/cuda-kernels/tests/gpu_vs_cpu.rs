//! Every GPU kernel held against a naive f64 reference (in `reference/` or written out in the test; the stronger check,
//! with a bound derived from the reduction length) and, where `diffuse-cpu-kernels` has the same operation (Philox
//! fills, softmax, sgemm, conv2d forward), against its CPU twin too, over random shapes that include the awkward ones:
//! length 1, lengths that are not a multiple of any tile or vector width, offsets that start mid-block. The backward
//! kernels are held against their CPU twins in `backward_vs_cpu.rs`.
//!
//! The tests run under `diffuse-gpu-test`'s harness: without a CUDA driver or device each is reported ignored, with
//! the reason; on a device that cannot run the kernels each fails with the driver's message.

mod reference;

mod common;

use common::{cpu_conv_shape, download, runner, runner_of, upload, zeros};

use diffuse_cpu_kernels as cpu_kernels;
use diffuse_cuda_kernels::adamw::{self, AdamWConfig};
use diffuse_cuda_kernels::attention::{self, AttentionShape};
use diffuse_cuda_kernels::conv::{self, Conv2dShape};
use diffuse_cuda_kernels::elementwise::{self, BinaryOp, Operand, UnaryOp};
use diffuse_cuda_kernels::gemm::{self, MatrixLayout};
use diffuse_cuda_kernels::group_norm::{self, GroupNormShape};
use diffuse_cuda_kernels::noise::{self, StepCoefficients};
use diffuse_cuda_kernels::{pack_bf16, philox, reduce, softmax};
use diffuse_cuda_kernels::{DeviceBuffer, Gpu};
use half::bf16;
use proptest::prelude::*;

/// |got - want| <= tol * max(1, |want|) elementwise, with the first offender named.
fn assert_close(what: &str, got: &[f32], want: &[f32], tol: f64) -> Result<(), TestCaseError> {
    prop_assert_eq!(got.len(), want.len(), "{}: lengths differ", what);
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let (g, w) = (f64::from(g), f64::from(w));
        let ok = (g - w).abs() <= tol * w.abs().max(1.0) || (g.is_nan() && w.is_nan());
        prop_assert!(
            ok,
            "{}: element {} is {} but the reference says {} (tol {})",
            what,
            i,
            g,
            w,
            tol
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------- philox

fn fill_uniform_reproduces_the_cpu_stream_bit_for_bit(gpu: &Gpu) {
    runner()
        .run(
            &(any::<u64>(), 0u64..64, 1usize..3000),
            |(seed, offset, len)| {
                let mut out = zeros(gpu, len);
                philox::fill_uniform(gpu, seed, offset, &mut out).unwrap();
                let got = download(gpu, &out);
                let mut cpu = vec![0.0f32; len];
                cpu_kernels::philox::fill_uniform(seed, offset, &mut cpu);
                prop_assert_eq!(&got, &cpu);
                prop_assert_eq!(got, reference::philox::uniforms(seed, offset, len));
                Ok(())
            },
        )
        .unwrap();
}

fn fill_normal_matches_the_cpu_stream(gpu: &Gpu) {
    // The uniforms are bit-exact; the GPU's cos.approx/sin.approx (absolute error <= 2^-20.9 on [-pi, pi]) times
    // r <= 5.9, plus a few f32 roundings in ln and 2*pi*u, bound the difference by ~5e-6 absolute.
    runner()
        .run(
            &(any::<u64>(), 0u64..64, 1usize..3000),
            |(seed, offset, len)| {
                let mut out = zeros(gpu, len);
                philox::fill_normal(gpu, seed, offset, &mut out).unwrap();
                let got = download(gpu, &out);
                let mut cpu = vec![0.0f32; len];
                cpu_kernels::philox::fill_normal(seed, offset, &mut cpu);
                assert_close("fill_normal vs the CPU kernel", &got, &cpu, 1e-5)?;
                assert_close(
                    "fill_normal",
                    &got,
                    &reference::philox::normals(seed, offset, len),
                    1e-5,
                )
            },
        )
        .unwrap();
}

fn fill_normal_with_a_huge_offset_uses_the_high_counter_word(gpu: &Gpu) {
    let offset = (1u64 << 34) + 3;
    let mut out = zeros(gpu, 7);
    philox::fill_normal(gpu, 42, offset, &mut out).unwrap();
    assert_close(
        "fill_normal",
        &download(gpu, &out),
        &reference::philox::normals(42, offset, 7),
        1e-5,
    )
    .unwrap();
}

// ----------------------------------------------------------------------------------------------------- elementwise

/// A random operand for `shape`: each dimension is either broadcast (stride 0) or stored, stored dimensions are laid
/// out row-major, and one of them may run backwards (negative stride, offset at its far end). Returns the buffer
/// length, the strides and the offset.
fn operand_strategy(shape: Vec<usize>) -> impl Strategy<Value = (usize, Vec<isize>, usize)> {
    let rank = shape.len();
    (
        proptest::collection::vec(any::<bool>(), rank),
        0..rank.max(1) + 1,
    )
        .prop_map(move |(broadcast, flip)| {
            let mut strides = vec![0isize; rank];
            let mut len = 1usize;
            for d in (0..rank).rev() {
                if !broadcast[d] {
                    strides[d] = len as isize;
                    len *= shape[d];
                }
            }
            let mut offset = 0;
            if flip < rank && strides[flip] != 0 {
                offset = (shape[flip] - 1) * strides[flip] as usize;
                strides[flip] = -strides[flip];
            }
            (len, strides, offset)
        })
}

/// Reads the operand in output order (the naive reference of the strided walk).
fn gather(values: &[f32], shape: &[usize], strides: &[isize], offset: usize) -> Vec<f32> {
    let numel: usize = shape.iter().product();
    (0..numel)
        .map(|mut i| {
            let mut at = offset as isize;
            for d in (0..shape.len()).rev() {
                at += (i % shape[d]) as isize * strides[d];
                i /= shape[d];
            }
            values[at as usize]
        })
        .collect()
}

fn shape_strategy() -> impl Strategy<Value = Vec<usize>> {
    proptest::collection::vec(1usize..7, 0..5)
}

fn unary_reference(op: UnaryOp, x: f32) -> f32 {
    let x = f64::from(x);
    let y = match op {
        UnaryOp::Neg => -x,
        UnaryOp::Exp => x.exp(),
        UnaryOp::Log => x.ln(),
        UnaryOp::Sqrt => x.sqrt(),
        UnaryOp::Rsqrt => 1.0 / x.sqrt(),
        UnaryOp::Abs => x.abs(),
        UnaryOp::Silu => x / (1.0 + (-x).exp()),
        UnaryOp::Gelu => 0.5 * x * (1.0 + reference::erf(x / std::f64::consts::SQRT_2)),
        UnaryOp::GeluTanh => {
            x / (1.0
                + (-2.0 * (2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x.powi(3))).exp())
        }
        UnaryOp::Tanh => x.tanh(),
        UnaryOp::Sigmoid => 1.0 / (1.0 + (-x).exp()),
        UnaryOp::Powf(p) => x.powf(f64::from(p)),
        UnaryOp::Clamp { lo, hi } => x.clamp(f64::from(lo), f64::from(hi)),
        UnaryOp::Square => x * x,
        UnaryOp::Recip => 1.0 / x,
        UnaryOp::Relu => x.max(0.0),
        UnaryOp::Affine { mul, add } => x * f64::from(mul) + f64::from(add),
    };
    y as f32
}

fn unary_op_strategy() -> impl Strategy<Value = UnaryOp> {
    prop_oneof![
        Just(UnaryOp::Neg),
        Just(UnaryOp::Exp),
        Just(UnaryOp::Log),
        Just(UnaryOp::Sqrt),
        Just(UnaryOp::Rsqrt),
        Just(UnaryOp::Abs),
        Just(UnaryOp::Silu),
        Just(UnaryOp::Gelu),
        Just(UnaryOp::GeluTanh),
        Just(UnaryOp::Tanh),
        Just(UnaryOp::Sigmoid),
        (-3.0f32..3.0).prop_map(UnaryOp::Powf),
        Just(UnaryOp::Clamp { lo: -0.5, hi: 0.75 }),
        Just(UnaryOp::Square),
        Just(UnaryOp::Recip),
        Just(UnaryOp::Relu),
        Just(UnaryOp::Affine {
            mul: -1.5,
            add: 0.25
        }),
    ]
}

fn unary_maps_on_strided_broadcast_operands_match_the_reference(gpu: &Gpu) {
    let case = shape_strategy().prop_flat_map(|shape| {
        (
            Just(shape.clone()),
            operand_strategy(shape),
            unary_op_strategy(),
        )
    });
    // Inputs in [-8, 8] (positive (0.01, 8] for log, sqrt, rsqrt, powf). The GPU's transcendentals are within ~1e-6
    // relative of the correctly rounded value, and gelu's erfc within 1.5e-7 absolute: 1e-5 relative (absolute
    // below 1) holds all of them.
    runner()
        .run(
            &(case, any::<u64>()),
            |((shape, (len, strides, offset), op), seed)| {
                let positive = matches!(
                    op,
                    UnaryOp::Log | UnaryOp::Sqrt | UnaryOp::Rsqrt | UnaryOp::Powf(_)
                );
                let host: Vec<f32> = reference::philox::uniforms(seed, 0, len)
                    .iter()
                    .map(|u| {
                        if positive {
                            0.01 + 7.99 * u
                        } else {
                            16.0 * u - 8.0
                        }
                    })
                    .collect();
                let x = upload(gpu, &host);
                let numel = shape.iter().product();
                let mut out = zeros(gpu, numel);
                elementwise::unary(
                    gpu,
                    op,
                    &shape,
                    &x,
                    Operand::new(&strides, offset),
                    &mut out,
                )
                .unwrap();
                let want: Vec<f32> = gather(&host, &shape, &strides, offset)
                    .into_iter()
                    .map(|v| unary_reference(op, v))
                    .collect();
                assert_close(&format!("{op:?}"), &download(gpu, &out), &want, 1e-5)
            },
        )
        .unwrap();
}

fn copy_strided_makes_any_layout_contiguous_exactly(gpu: &Gpu) {
    let case =
        shape_strategy().prop_flat_map(|shape| (Just(shape.clone()), operand_strategy(shape)));
    runner()
        .run(
            &(case, any::<u64>()),
            |((shape, (len, strides, offset)), seed)| {
                let host = reference::philox::uniforms(seed, 0, len);
                let x = upload(gpu, &host);
                let mut out = zeros(gpu, shape.iter().product());
                elementwise::copy_strided(
                    gpu,
                    &shape,
                    &x,
                    Operand::new(&strides, offset),
                    &mut out,
                )
                .unwrap();
                prop_assert_eq!(download(gpu, &out), gather(&host, &shape, &strides, offset));
                Ok(())
            },
        )
        .unwrap();
}

fn binary_maps_broadcast_both_operands_exactly(gpu: &Gpu) {
    let ops = prop_oneof![
        Just(BinaryOp::Add),
        Just(BinaryOp::Sub),
        Just(BinaryOp::Mul),
        Just(BinaryOp::Div),
        Just(BinaryOp::Max),
        Just(BinaryOp::Min)
    ];
    let case = shape_strategy().prop_flat_map(|shape| {
        (
            Just(shape.clone()),
            operand_strategy(shape.clone()),
            operand_strategy(shape),
        )
    });
    // One correctly rounded f32 operation per element (add.rn, div.rn, ...): the result is bit-exact.
    runner()
        .run(
            &(case, ops, any::<u64>()),
            |((shape, (a_len, a_strides, a_off), (b_len, b_strides, b_off)), op, seed)| {
                let a_host: Vec<f32> = reference::philox::uniforms(seed, 0, a_len)
                    .iter()
                    .map(|u| 4.0 * u - 2.0)
                    .collect();
                let b_host: Vec<f32> = reference::philox::uniforms(seed, 1 << 20, b_len)
                    .iter()
                    .map(|u| 0.5 + u)
                    .collect();
                let (a, b) = (upload(gpu, &a_host), upload(gpu, &b_host));
                let mut out = zeros(gpu, shape.iter().product());
                elementwise::binary(
                    gpu,
                    op,
                    &shape,
                    &a,
                    Operand::new(&a_strides, a_off),
                    &b,
                    Operand::new(&b_strides, b_off),
                    &mut out,
                )
                .unwrap();
                let want: Vec<f32> = gather(&a_host, &shape, &a_strides, a_off)
                    .into_iter()
                    .zip(gather(&b_host, &shape, &b_strides, b_off))
                    .map(|(x, y)| match op {
                        BinaryOp::Add => x + y,
                        BinaryOp::Sub => x - y,
                        BinaryOp::Mul => x * y,
                        BinaryOp::Div => x / y,
                        BinaryOp::Max => x.max(y),
                        BinaryOp::Min => x.min(y),
                        // not drawn here: its sigmoid is not correctly rounded (gpu_vs_cpu_index.rs holds it)
                        BinaryOp::SiluBackward
                        | BinaryOp::GeluTanhBackward
                        | BinaryOp::GeluBackward => {
                            unreachable!("the activation gradients are tested with a tolerance")
                        }
                    })
                    .collect();
                prop_assert_eq!(download(gpu, &out), want);
                Ok(())
            },
        )
        .unwrap();
}

fn an_operand_that_reaches_past_its_buffer_is_refused(gpu: &Gpu) {
    let x = zeros(gpu, 5);
    let mut out = zeros(gpu, 6);
    let err = elementwise::copy_strided(gpu, &[2, 3], &x, Operand::new(&[3, 1], 0), &mut out)
        .unwrap_err();
    assert!(
        err.message
            .contains("reaches elements 0..=5 of a buffer of 5"),
        "{err}"
    );
}

// ----------------------------------------------------------------------------------------------------------- noise

fn batch_case() -> impl Strategy<Value = (usize, usize, u64, u64)> {
    (1usize..5, 1usize..700, any::<u64>(), 0u64..37)
}

fn q_sample_mixes_x0_with_the_philox_noise_of_the_cpu(gpu: &Gpu) {
    // eps is the normal stream (within 1e-5, see fill_normal); x_t adds one fma on top.
    runner()
        .run(&batch_case(), |(batch, per_sample, seed, offset)| {
            let n = batch * per_sample;
            let x0_host: Vec<f32> = reference::philox::uniforms(seed ^ 1, 0, n)
                .iter()
                .map(|u| 2.0 * u - 1.0)
                .collect();
            let ab: Vec<f32> = (0..batch).map(|b| 0.9 - 0.2 * b as f32).collect();
            let sqrt_ab: Vec<f32> = ab.iter().map(|a| a.sqrt()).collect();
            let sqrt_1mab: Vec<f32> = ab.iter().map(|a| (1.0 - a).sqrt()).collect();
            let (x0, sa, sb) = (
                upload(gpu, &x0_host),
                upload(gpu, &sqrt_ab),
                upload(gpu, &sqrt_1mab),
            );
            let (mut x_t, mut eps) = (zeros(gpu, n), zeros(gpu, n));
            noise::q_sample(gpu, &x0, &sa, &sb, seed, offset, &mut x_t, &mut eps).unwrap();
            let z = reference::philox::normals(seed, offset, n);
            let want: Vec<f32> = (0..n)
                .map(|i| sqrt_ab[i / per_sample] * x0_host[i] + sqrt_1mab[i / per_sample] * z[i])
                .collect();
            assert_close("eps", &download(gpu, &eps), &z, 1e-5)?;
            assert_close("x_t", &download(gpu, &x_t), &want, 1e-5)
        })
        .unwrap();
}

fn sampler_step_matches_the_reference_step_with_and_without_clipping(gpu: &Gpu) {
    runner()
        .run(
            &(batch_case(), any::<bool>()),
            |((batch, per_sample, seed, offset), clip)| {
                let n = batch * per_sample;
                let xt_host: Vec<f32> = reference::philox::uniforms(seed ^ 1, 0, n)
                    .iter()
                    .map(|u| 4.0 * u - 2.0)
                    .collect();
                let model_host: Vec<f32> = reference::philox::uniforms(seed ^ 2, 0, n)
                    .iter()
                    .map(|u| 4.0 * u - 2.0)
                    .collect();
                let coef_host: Vec<StepCoefficients> = (0..batch)
                    .map(|b| StepCoefficients {
                        x0_from_xt: 1.2 + 0.1 * b as f32,
                        x0_from_model: -0.7,
                        mean_from_x0: 0.3,
                        mean_from_xt: 0.6,
                        sigma: if b == 0 { 0.0 } else { 0.15 },
                    })
                    .collect();
                let (xt, model) = (upload(gpu, &xt_host), upload(gpu, &model_host));
                let coef = gpu
                    .stream()
                    .clone_htod(&noise::pack_coefficients(&coef_host))
                    .unwrap();
                let (mut x_prev, mut x0_hat) = (zeros(gpu, n), zeros(gpu, n));
                noise::sampler_step(
                    gpu,
                    &xt,
                    &model,
                    &coef,
                    clip,
                    seed,
                    offset,
                    &mut x_prev,
                    &mut x0_hat,
                )
                .unwrap();
                let z = reference::philox::normals(seed, offset, n);
                let mut want_x0 = vec![0f32; n];
                let mut want_prev = vec![0f32; n];
                for i in 0..n {
                    let c = coef_host[i / per_sample];
                    let mut x0 = c.x0_from_xt * xt_host[i] + c.x0_from_model * model_host[i];
                    if clip {
                        x0 = x0.clamp(-1.0, 1.0);
                    }
                    want_x0[i] = x0;
                    want_prev[i] =
                        c.mean_from_x0 * x0 + c.mean_from_xt * xt_host[i] + c.sigma * z[i];
                }
                assert_close("x0_hat", &download(gpu, &x0_hat), &want_x0, 1e-5)?;
                assert_close("x_prev", &download(gpu, &x_prev), &want_prev, 1e-5)
            },
        )
        .unwrap();
}

fn q_sample_refuses_x0_that_does_not_split_into_the_batch(gpu: &Gpu) {
    let (x0, s) = (zeros(gpu, 7), zeros(gpu, 2));
    let (mut x_t, mut eps) = (zeros(gpu, 7), zeros(gpu, 7));
    let err = noise::q_sample(gpu, &x0, &s, &s, 0, 0, &mut x_t, &mut eps).unwrap_err();
    assert!(
        err.message
            .contains("7 elements do not split into 2 samples"),
        "{err}"
    );
}

// ----------------------------------------------------------------------------------------------------------- adamw

fn adamw_step_matches_pytorch_semantics_in_f64(gpu: &Gpu) {
    let cfg = AdamWConfig {
        lr: 1e-2,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.05,
    };
    // A handful of f32 roundings per element on values of order 1; the quotient m/denom is well conditioned once
    // v >> eps^2, which the reference's inputs ensure (|g| >= 0.05): 1e-5 relative.
    runner()
        .run(
            &(1usize..3000, 1u64..50, any::<u64>()),
            |(n, step, seed)| {
                let u = |k: u64| reference::philox::uniforms(seed ^ k, 0, n);
                let p_host: Vec<f32> = u(1).iter().map(|x| 2.0 * x - 1.0).collect();
                let g_host: Vec<f32> = u(2)
                    .iter()
                    .map(|x| if *x < 0.5 { x - 0.55 } else { x - 0.45 })
                    .collect();
                let m_host: Vec<f32> = u(3).iter().map(|x| 0.2 * x - 0.1).collect();
                let v_host: Vec<f32> = u(4).iter().map(|x| 0.01 * x).collect();
                let (mut p, g, mut m, mut v) = (
                    upload(gpu, &p_host),
                    upload(gpu, &g_host),
                    upload(gpu, &m_host),
                    upload(gpu, &v_host),
                );
                adamw::adamw_step(gpu, &cfg, step, &mut p, &g, &mut m, &mut v).unwrap();
                let (lr, b1, b2, eps, wd) = (
                    f64::from(cfg.lr),
                    f64::from(cfg.beta1),
                    f64::from(cfg.beta2),
                    f64::from(cfg.eps),
                    f64::from(cfg.weight_decay),
                );
                let (mut want_p, mut want_m, mut want_v) =
                    (vec![0f32; n], vec![0f32; n], vec![0f32; n]);
                for i in 0..n {
                    let g = f64::from(g_host[i]);
                    let mi = b1 * f64::from(m_host[i]) + (1.0 - b1) * g;
                    let vi = b2 * f64::from(v_host[i]) + (1.0 - b2) * g * g;
                    let m_hat = mi / (1.0 - b1.powi(step as i32));
                    let v_hat = vi / (1.0 - b2.powi(step as i32));
                    let p =
                        f64::from(p_host[i]) * (1.0 - lr * wd) - lr * m_hat / (v_hat.sqrt() + eps);
                    (want_p[i], want_m[i], want_v[i]) = (p as f32, mi as f32, vi as f32);
                }
                assert_close("m", &download(gpu, &m), &want_m, 1e-5)?;
                assert_close("v", &download(gpu, &v), &want_v, 1e-5)?;
                assert_close("params", &download(gpu, &p), &want_p, 1e-5)
            },
        )
        .unwrap();
}

fn adamw_step_zero_is_refused(gpu: &Gpu) {
    let cfg = AdamWConfig {
        lr: 1e-3,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.0,
    };
    let (mut p, g, mut m, mut v) = (zeros(gpu, 3), zeros(gpu, 3), zeros(gpu, 3), zeros(gpu, 3));
    let err = adamw::adamw_step(gpu, &cfg, 0, &mut p, &g, &mut m, &mut v).unwrap_err();
    assert!(err.message.contains("step counts from 1"), "{err}");
}

// ------------------------------------------------------------------------------------------------ reduce, softmax

fn rows_case() -> impl Strategy<Value = (usize, usize, u64)> {
    (
        1usize..9,
        prop_oneof![1usize..40, 200usize..3000],
        any::<u64>(),
    )
}

fn matrix(seed: u64, len: usize, scale: f32) -> Vec<f32> {
    reference::philox::uniforms(seed, 0, len)
        .iter()
        .map(|u| scale * (2.0 * u - 1.0))
        .collect()
}

fn row_sum_and_row_max_match_the_f64_reference(gpu: &Gpu) {
    runner()
        .run(&rows_case(), |(rows, cols, seed)| {
            let host = matrix(seed, rows * cols, 3.0);
            let x = upload(gpu, &host);
            let (mut sum, mut max) = (zeros(gpu, rows), zeros(gpu, rows));
            reduce::row_sum(gpu, rows, cols, &x, &mut sum).unwrap();
            reduce::row_max(gpu, rows, cols, &x, &mut max).unwrap();
            let (sum, max) = (download(gpu, &sum), download(gpu, &max));
            for r in 0..rows {
                let row = &host[r * cols..(r + 1) * cols];
                let want: f64 = row.iter().map(|&v| f64::from(v)).sum();
                let magnitude: f64 = row.iter().map(|&v| f64::from(v).abs()).sum();
                // each partial sum passes through at most cols/256 + 8 roundings of relative size 2^-24
                let tol =
                    (cols as f64 / 256.0 + 8.0) * magnitude * f64::from(f32::EPSILON) / 2.0 + 1e-30;
                prop_assert!(
                    (f64::from(sum[r]) - want).abs() <= tol,
                    "row {} sum {} vs {}",
                    r,
                    sum[r],
                    want
                );
                prop_assert_eq!(
                    max[r],
                    row.iter().copied().fold(f32::NEG_INFINITY, f32::max)
                );
            }
            Ok(())
        })
        .unwrap();
}

fn softmax_and_log_softmax_match_the_f64_reference(gpu: &Gpu) {
    // exp within ~2^-21 relative, a cols-term sum within (cols/256 + 8) 2^-24, one rcp/lg2: 1e-5 relative for
    // softmax; log-softmax values are O(10) with ~1e-6 absolute error: 1e-5 relative (absolute below 1).
    runner()
        .run(&rows_case(), |(rows, cols, seed)| {
            let host = matrix(seed, rows * cols, 8.0);
            let x = upload(gpu, &host);
            let (mut sm, mut lsm) = (zeros(gpu, rows * cols), zeros(gpu, rows * cols));
            softmax::softmax(gpu, rows, cols, &x, &mut sm).unwrap();
            softmax::log_softmax(gpu, rows, cols, &x, &mut lsm).unwrap();
            let mut want_sm = Vec::with_capacity(rows * cols);
            let mut want_lsm = Vec::with_capacity(rows * cols);
            for row in host.chunks(cols) {
                let m = row
                    .iter()
                    .map(|&v| f64::from(v))
                    .fold(f64::NEG_INFINITY, f64::max);
                let s: f64 = row.iter().map(|&v| (f64::from(v) - m).exp()).sum();
                for &v in row {
                    want_sm.push(((f64::from(v) - m).exp() / s) as f32);
                    want_lsm.push((f64::from(v) - m - s.ln()) as f32);
                }
            }
            let got_sm = download(gpu, &sm);
            for (i, (&g, &w)) in got_sm.iter().zip(&want_sm).enumerate() {
                let ok = (f64::from(g) - f64::from(w)).abs() <= 1e-5 * f64::from(w) + 1e-12;
                prop_assert!(
                    ok,
                    "softmax element {} is {} but the reference says {}",
                    i,
                    g,
                    w
                );
            }
            let got_lsm = download(gpu, &lsm);
            assert_close("log_softmax", &got_lsm, &want_lsm, 1e-5)?;
            // the CPU kernels are within the same bounds of the f64 values, so within twice them of the GPU
            let (mut cpu_sm, mut cpu_lsm) = (vec![0.0; rows * cols], vec![0.0; rows * cols]);
            cpu_kernels::softmax::softmax(rows, cols, &host, &mut cpu_sm).unwrap();
            cpu_kernels::softmax::log_softmax(rows, cols, &host, &mut cpu_lsm).unwrap();
            for (i, (&g, &w)) in got_sm.iter().zip(&cpu_sm).enumerate() {
                let ok = (f64::from(g) - f64::from(w)).abs() <= 2e-5 * f64::from(w) + 1e-12;
                prop_assert!(
                    ok,
                    "softmax element {} is {} but the CPU kernel says {}",
                    i,
                    g,
                    w
                );
            }
            assert_close("log_softmax vs the CPU kernel", &got_lsm, &cpu_lsm, 2e-5)
        })
        .unwrap();
}

// ------------------------------------------------------------------------------------------------------ group norm

fn group_norm_case() -> impl Strategy<Value = (GroupNormShape, u64)> {
    (
        1usize..3,
        1usize..5,
        1usize..4,
        prop_oneof![
            Just(1usize),
            Just(3),
            Just(4),
            Just(16),
            Just(37),
            Just(300)
        ],
        any::<u64>(),
    )
        .prop_map(|(batch, groups, cpg, spatial, seed)| {
            (
                GroupNormShape {
                    batch,
                    channels: groups * cpg,
                    spatial,
                    groups,
                    eps: 1e-5,
                },
                seed,
            )
        })
}

/// The forward in f64: (y, mean, rstd).
fn group_norm_reference(
    s: &GroupNormShape,
    x: &[f64],
    gamma: &[f64],
    beta: &[f64],
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let cpg = s.channels / s.groups;
    let len = cpg * s.spatial;
    let (mut y, mut mean, mut rstd) = (vec![0.0; x.len()], vec![], vec![]);
    for (group, chunk) in x.chunks(len).enumerate() {
        let mu = chunk.iter().sum::<f64>() / len as f64;
        let var = chunk.iter().map(|v| (v - mu) * (v - mu)).sum::<f64>() / len as f64;
        let r = 1.0 / (var + f64::from(s.eps)).sqrt();
        for (e, v) in chunk.iter().enumerate() {
            let c = (group % s.groups) * cpg + e / s.spatial;
            y[group * len + e] = (v - mu) * r * gamma[c] + beta[c];
        }
        mean.push(mu);
        rstd.push(r);
    }
    (y, mean, rstd)
}

fn to_f32(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

fn group_norm_forward_matches_the_f64_reference(gpu: &Gpu) {
    // Welford in f32 over L <= 3600 elements: mean and variance within ~(L/256 + 8) 2^-24 relative; y within 1e-5
    // relative for |y| >= 1, 1e-5 absolute below (inputs have mean 0.5 and spread 1, so var is well away from 0).
    runner()
        .run(&group_norm_case(), |(s, seed)| {
            let n = s.batch * s.channels * s.spatial;
            let x_host = reference::philox::uniforms(seed, 0, n)
                .iter()
                .map(|u| 2.0 * u - 0.5)
                .collect::<Vec<f32>>();
            let gamma_host: Vec<f32> = (0..s.channels).map(|c| 0.5 + 0.25 * c as f32).collect();
            let beta_host: Vec<f32> = (0..s.channels).map(|c| 0.1 * c as f32 - 0.2).collect();
            let (x, gamma, beta) = (
                upload(gpu, &x_host),
                upload(gpu, &gamma_host),
                upload(gpu, &beta_host),
            );
            let (mut y, mut mean, mut rstd) = (
                zeros(gpu, n),
                zeros(gpu, s.batch * s.groups),
                zeros(gpu, s.batch * s.groups),
            );
            group_norm::group_norm_forward(
                gpu, &s, &x, &gamma, &beta, &mut y, &mut mean, &mut rstd,
            )
            .unwrap();
            let f64s = |v: &[f32]| v.iter().map(|&x| f64::from(x)).collect::<Vec<f64>>();
            let (want_y, want_mean, want_rstd) =
                group_norm_reference(&s, &f64s(&x_host), &f64s(&gamma_host), &f64s(&beta_host));
            assert_close("mean", &download(gpu, &mean), &to_f32(&want_mean), 1e-5)?;
            assert_close("rstd", &download(gpu, &rstd), &to_f32(&want_rstd), 1e-5)?;
            assert_close("y", &download(gpu, &y), &to_f32(&want_y), 1e-5)
        })
        .unwrap();
}

fn group_norm_backward_matches_finite_differences(gpu: &Gpu) {
    // loss = sum w y with fixed random w (so dy = w); the gradient of the f64 forward by central differences with
    // h = 1e-5 is accurate to ~1e-9; the f32 kernels carry ~1e-6 relative error on O(1) gradients: 1e-4 covers both.
    let small = group_norm_case().prop_filter("small enough for finite differences", |(s, _)| {
        s.spatial <= 37
    });
    runner_of(16)
        .run(&small, |(s, seed)| {
            let n = s.batch * s.channels * s.spatial;
            let x_host: Vec<f32> = reference::philox::uniforms(seed, 0, n)
                .iter()
                .map(|u| 2.0 * u - 0.5)
                .collect();
            let w_host: Vec<f32> = reference::philox::uniforms(seed ^ 7, 0, n)
                .iter()
                .map(|u| 2.0 * u - 1.0)
                .collect();
            let gamma_host: Vec<f32> = (0..s.channels).map(|c| 0.5 + 0.25 * c as f32).collect();
            let beta_host: Vec<f32> = (0..s.channels).map(|c| 0.1 * c as f32 - 0.2).collect();
            let stats = s.batch * s.groups;
            let (x, gamma, beta, dy) = (
                upload(gpu, &x_host),
                upload(gpu, &gamma_host),
                upload(gpu, &beta_host),
                upload(gpu, &w_host),
            );
            let (mut y, mut mean, mut rstd) = (zeros(gpu, n), zeros(gpu, stats), zeros(gpu, stats));
            group_norm::group_norm_forward(
                gpu, &s, &x, &gamma, &beta, &mut y, &mut mean, &mut rstd,
            )
            .unwrap();
            let (mut dx, mut dgamma, mut dbeta) = (
                zeros(gpu, n),
                zeros(gpu, s.channels),
                zeros(gpu, s.channels),
            );
            group_norm::group_norm_backward(
                gpu,
                &s,
                &x,
                &gamma,
                &mean,
                &rstd,
                &dy,
                &mut dx,
                &mut dgamma,
                &mut dbeta,
            )
            .unwrap();

            let f64s = |v: &[f32]| v.iter().map(|&x| f64::from(x)).collect::<Vec<f64>>();
            let (x64, g64, b64, w64) = (
                f64s(&x_host),
                f64s(&gamma_host),
                f64s(&beta_host),
                f64s(&w_host),
            );
            let loss = |x: &[f64], g: &[f64], b: &[f64]| -> f64 {
                group_norm_reference(&s, x, g, b)
                    .0
                    .iter()
                    .zip(&w64)
                    .map(|(y, w)| y * w)
                    .sum()
            };
            let h = 1e-5;
            let central = |f: &dyn Fn(f64) -> f64| (f(h) - f(-h)) / (2.0 * h);
            let want_dx: Vec<f64> = (0..n)
                .map(|i| {
                    central(&|d| {
                        let mut xp = x64.clone();
                        xp[i] += d;
                        loss(&xp, &g64, &b64)
                    })
                })
                .collect();
            let want_dgamma: Vec<f64> = (0..s.channels)
                .map(|c| {
                    central(&|d| {
                        let mut gp = g64.clone();
                        gp[c] += d;
                        loss(&x64, &gp, &b64)
                    })
                })
                .collect();
            let want_dbeta: Vec<f64> = (0..s.channels)
                .map(|c| {
                    central(&|d| {
                        let mut bp = b64.clone();
                        bp[c] += d;
                        loss(&x64, &g64, &bp)
                    })
                })
                .collect();
            assert_close("dx", &download(gpu, &dx), &to_f32(&want_dx), 1e-4)?;
            assert_close(
                "dgamma",
                &download(gpu, &dgamma),
                &to_f32(&want_dgamma),
                1e-4,
            )?;
            assert_close("dbeta", &download(gpu, &dbeta), &to_f32(&want_dbeta), 1e-4)
        })
        .unwrap();
}

fn group_norm_refuses_channels_that_do_not_split_into_groups(gpu: &Gpu) {
    let s = GroupNormShape {
        batch: 1,
        channels: 6,
        spatial: 4,
        groups: 4,
        eps: 1e-5,
    };
    let (x, g) = (zeros(gpu, 24), zeros(gpu, 6));
    let (mut y, mut m, mut r) = (zeros(gpu, 24), zeros(gpu, 4), zeros(gpu, 4));
    let err =
        group_norm::group_norm_forward(gpu, &s, &x, &g, &g, &mut y, &mut m, &mut r).unwrap_err();
    assert!(
        err.message
            .contains("6 channels do not split into 4 groups"),
        "{err}"
    );
}

// ------------------------------------------------------------------------------------------------------------ gemm

/// An `[rows × cols]` operand for the CPU sgemm: `v` row-major, or (`transposed`) `v` holding its `[cols × rows]`
/// transpose row-major.
fn cpu_operand(
    v: &[f32],
    cols: usize,
    transposed: bool,
    rows: usize,
) -> cpu_kernels::gemm::MatRef<'_> {
    if transposed {
        cpu_kernels::gemm::MatRef::row_major(v, rows).t()
    } else {
        cpu_kernels::gemm::MatRef::row_major(v, cols)
    }
}

fn sgemm_matches_the_f64_reference_on_ragged_and_transposed_shapes(gpu: &Gpu) {
    let size = || prop_oneof![1usize..20, 120usize..140, 250usize..300];
    runner()
        .run(
            &(
                size(),
                size(),
                prop_oneof![0usize..3, 1usize..300],
                any::<bool>(),
                any::<bool>(),
                any::<bool>(),
                any::<u64>(),
            ),
            |(m, n, k, a_t, b_t, accumulate, seed)| {
                let a_host = matrix(seed, m * k, 1.0);
                let b_host = matrix(seed ^ 3, k * n, 1.0);
                let c_host = matrix(seed ^ 5, m * n, 1.0);
                let a_layout = if a_t {
                    MatrixLayout::transposed(m)
                } else {
                    MatrixLayout::row_major(k)
                };
                let b_layout = if b_t {
                    MatrixLayout::transposed(k)
                } else {
                    MatrixLayout::row_major(n)
                };
                let (alpha, beta) = (1.5f32, if accumulate { -0.5f32 } else { 0.0 });
                let (a, b, mut c) = (
                    upload(gpu, &a_host),
                    upload(gpu, &b_host),
                    upload(gpu, &c_host),
                );
                gemm::sgemm(
                    gpu, m, n, k, alpha, &a, a_layout, &b, b_layout, beta, &mut c,
                )
                .unwrap();
                let got = download(gpu, &c);
                let mut cpu = c_host.clone();
                cpu_kernels::gemm::sgemm(
                    m,
                    n,
                    k,
                    alpha,
                    cpu_operand(&a_host, k, a_t, m),
                    cpu_operand(&b_host, n, b_t, k),
                    beta,
                    cpu_kernels::gemm::MatMut::row_major(&mut cpu, n),
                )
                .unwrap();
                let at = |l: MatrixLayout, v: &[f32], r: usize, col: usize| {
                    f64::from(v[r * l.row_stride + col * l.col_stride])
                };
                for r in 0..m {
                    for col in 0..n {
                        let (mut dot, mut magnitude) = (0.0f64, 0.0f64);
                        for x in 0..k {
                            let p = at(a_layout, &a_host, r, x) * at(b_layout, &b_host, x, col);
                            dot += p;
                            magnitude += p.abs();
                        }
                        let want = f64::from(alpha) * dot
                            + f64::from(beta) * f64::from(c_host[r * n + col]);
                        // k fused multiply-adds in f32: error <= k 2^-24 sum |a b| (times alpha), plus the epilogue
                        let tol = (k as f64 + 2.0) * f64::from(f32::EPSILON) / 2.0
                            * (1.5 * magnitude + 1.0);
                        let g = f64::from(got[r * n + col]);
                        prop_assert!(
                            (g - want).abs() <= tol,
                            "C[{}, {}] = {} but the reference says {}",
                            r,
                            col,
                            g,
                            want
                        );
                        // the CPU kernel is within the same bound of the exact value: within twice it of the GPU
                        let cpu_value = f64::from(cpu[r * n + col]);
                        prop_assert!(
                            (g - cpu_value).abs() <= 2.0 * tol,
                            "C[{}, {}] = {} but the CPU kernel says {}",
                            r,
                            col,
                            g,
                            cpu_value
                        );
                    }
                }
                Ok(())
            },
        )
        .unwrap();
}

fn sgemm_refuses_an_operand_shorter_than_its_shape(gpu: &Gpu) {
    let (a, b, mut c) = (zeros(gpu, 5), zeros(gpu, 6), zeros(gpu, 4));
    let err = gemm::sgemm(
        gpu,
        2,
        2,
        3,
        1.0,
        &a,
        MatrixLayout::row_major(3),
        &b,
        MatrixLayout::row_major(2),
        0.0,
        &mut c,
    )
    .unwrap_err();
    assert!(err.message.contains("A [2, 3]"), "{err}");
}

fn gemm_bf16_matches_the_f64_reference_on_ragged_shapes(gpu: &Gpu) {
    let multiple_of_8 = || prop_oneof![1usize..4, 15usize..18, 30usize..40].prop_map(|x| 8 * x);
    runner()
        .run(
            &(
                prop_oneof![1usize..20, 120usize..140, 250usize..270],
                multiple_of_8(),
                multiple_of_8(),
                any::<bool>(),
                any::<u64>(),
            ),
            |(m, n, k, accumulate, seed)| {
                // bf16 inputs convert exactly to f32 and their products are exact in f32, so the only error is the
                // k-term f32 accumulation: k 2^-24 sum |a b|.
                let a_host: Vec<bf16> = matrix(seed, m * k, 1.0)
                    .into_iter()
                    .map(bf16::from_f32)
                    .collect();
                let b_host: Vec<bf16> = matrix(seed ^ 3, k * n, 1.0)
                    .into_iter()
                    .map(bf16::from_f32)
                    .collect();
                let c_host = matrix(seed ^ 5, m * n, 1.0);
                let (alpha, beta) = (0.75f32, if accumulate { 2.0f32 } else { 0.0 });
                let a = gpu.stream().clone_htod(&a_host).unwrap();
                let b = gpu.stream().clone_htod(&b_host).unwrap();
                let mut c = upload(gpu, &c_host);
                gemm::gemm_bf16(gpu, m, n, k, alpha, &a, &b, beta, &mut c).unwrap();
                let got = download(gpu, &c);
                for r in 0..m {
                    for col in 0..n {
                        let (mut dot, mut magnitude) = (0.0f64, 0.0f64);
                        for x in 0..k {
                            let p = f64::from(a_host[r * k + x].to_f32())
                                * f64::from(b_host[x * n + col].to_f32());
                            dot += p;
                            magnitude += p.abs();
                        }
                        let want = f64::from(alpha) * dot
                            + f64::from(beta) * f64::from(c_host[r * n + col]);
                        let tol =
                            (k as f64 + 2.0) * f64::from(f32::EPSILON) / 2.0 * (magnitude + 2.0);
                        let g = f64::from(got[r * n + col]);
                        prop_assert!(
                            (g - want).abs() <= tol,
                            "C[{}, {}] = {} but the reference says {}",
                            r,
                            col,
                            g,
                            want
                        );
                    }
                }
                Ok(())
            },
        )
        .unwrap();
}

fn gemm_bf16_refuses_k_that_is_not_a_multiple_of_8(gpu: &Gpu) {
    let a = gpu.stream().alloc_zeros::<bf16>(12).unwrap();
    let b = gpu.stream().alloc_zeros::<bf16>(48).unwrap();
    let mut c = zeros(gpu, 32);
    let err = gemm::gemm_bf16(gpu, 4, 8, 3, 1.0, &a, &b, 0.0, &mut c).unwrap_err();
    assert!(err.message.contains("multiples of 8"), "{err}");
}

fn pack_bf16_rounds_like_half_and_pads_with_zeros(gpu: &Gpu) {
    // bit for bit against half::bf16::from_f32 (round to nearest, ties to even, NaN kept quiet), on any f32 bit
    // pattern (every other value: NaNs, infinities and subnormals included) read straight or transposed, with the
    // padding rows and columns zero; the destination starts poisoned (all ones) so an unwritten element shows.
    runner()
        .run(
            &(
                1usize..20,
                1usize..20,
                0usize..3,
                0usize..9,
                any::<u64>(),
                any::<bool>(),
            ),
            |(rows, cols, extra_rows, extra_cols, seed, transposed)| {
                let (rows_out, cols_out) =
                    (rows + extra_rows, (cols + extra_cols).next_multiple_of(2));
                let mut state = seed | 1;
                let host: Vec<f32> = (0..rows * cols)
                    .map(|i| {
                        state ^= state << 13;
                        state ^= state >> 7;
                        state ^= state << 17;
                        if i % 2 == 0 {
                            f32::from_bits(state as u32)
                        } else {
                            (state >> 40) as f32 / (1u64 << 20) as f32 - 8.0
                        }
                    })
                    .collect();
                let layout = if transposed {
                    MatrixLayout::transposed(rows)
                } else {
                    MatrixLayout::row_major(cols)
                };
                let src = upload(gpu, &host);
                let mut dst = gpu
                    .stream()
                    .clone_htod(&vec![bf16::from_bits(0xFFFF); rows_out * cols_out])
                    .unwrap();
                pack_bf16::pack_bf16(gpu, &src, rows, cols, layout, rows_out, cols_out, &mut dst)
                    .unwrap();
                let got: Vec<u16> = gpu
                    .stream()
                    .clone_dtoh(&dst)
                    .unwrap()
                    .iter()
                    .map(|h| h.to_bits())
                    .collect();
                let want: Vec<u16> = (0..rows_out)
                    .flat_map(|r| (0..cols_out).map(move |c| (r, c)))
                    .map(|(r, c)| {
                        if r < rows && c < cols {
                            bf16::from_f32(host[r * layout.row_stride + c * layout.col_stride])
                                .to_bits()
                        } else {
                            0
                        }
                    })
                    .collect();
                prop_assert_eq!(got, want);
                Ok(())
            },
        )
        .unwrap();
}

fn pack_bf16_refuses_a_padding_that_does_not_hold_the_matrix(gpu: &Gpu) {
    let src = zeros(gpu, 12);
    let mut dst = gpu.stream().alloc_zeros::<bf16>(16).unwrap();
    for (rows_out, cols_out) in [(2, 8), (4, 3)] {
        let err = pack_bf16::pack_bf16(
            gpu,
            &src,
            3,
            4,
            MatrixLayout::row_major(4),
            rows_out,
            cols_out,
            &mut dst,
        )
        .unwrap_err();
        assert!(err.message.contains("cannot be padded"), "{err}");
    }
}

// ---------------------------------------------------------------------------------------------------------- conv2d

fn conv_case() -> impl Strategy<Value = (Conv2dShape, bool, u64)> {
    (
        (1usize..3, 1usize..4, 1usize..4, 1usize..12, 1usize..12),
        (
            prop_oneof![Just(1usize), Just(3)],
            1usize..3,
            prop_oneof![Just(0usize), Just(1), Just(2)],
            1usize..3,
        ),
        any::<bool>(),
        any::<u64>(),
    )
        .prop_map(
            |(
                (batch, groups, cpg, in_h, in_w),
                (kernel, stride, padding, dilation),
                bias,
                seed,
            )| {
                let shape = Conv2dShape {
                    batch,
                    in_channels: groups * cpg,
                    in_h,
                    in_w,
                    out_channels: groups * (1 + (seed % 3) as usize),
                    kernel_h: kernel,
                    kernel_w: kernel,
                    stride,
                    padding,
                    dilation,
                    groups,
                };
                (shape, bias, seed)
            },
        )
        .prop_filter("the kernel fits the padded input", |(s, _, _)| {
            s.output_hw().is_some()
        })
}

fn conv2d_forward_matches_the_naive_f64_convolution(gpu: &Gpu) {
    runner()
        .run(&conv_case(), |(s, with_bias, seed)| {
            let (oh, ow) = s.output_hw().unwrap();
            let cg = s.in_channels / s.groups;
            let ocg = s.out_channels / s.groups;
            let x_host = matrix(seed, s.batch * s.in_channels * s.in_h * s.in_w, 1.0);
            let w_host = matrix(seed ^ 9, s.out_channels * cg * s.kernel_h * s.kernel_w, 1.0);
            let b_host = matrix(seed ^ 11, s.out_channels, 1.0);
            let (x, w, b) = (
                upload(gpu, &x_host),
                upload(gpu, &w_host),
                upload(gpu, &b_host),
            );
            let mut y = zeros(gpu, s.batch * s.out_channels * oh * ow);
            conv::conv2d_forward(gpu, &s, &x, &w, with_bias.then_some(&b), &mut y).unwrap();
            let got = download(gpu, &y);
            let cpu_shape = cpu_conv_shape(&s);
            let mut cpu = vec![0.0; got.len()];
            cpu_kernels::conv2d::conv2d_forward(
                &cpu_shape,
                &x_host,
                &w_host,
                with_bias.then_some(&b_host[..]),
                &mut cpu,
            )
            .unwrap();
            for bi in 0..s.batch {
                for oc in 0..s.out_channels {
                    let g = oc / ocg;
                    for (i, j) in (0..oh).flat_map(|i| (0..ow).map(move |j| (i, j))) {
                        let (mut sum, mut magnitude) = (0.0f64, 0.0f64);
                        for ic in 0..cg {
                            for kh in 0..s.kernel_h {
                                for kw in 0..s.kernel_w {
                                    let ih = (i * s.stride + kh * s.dilation) as isize
                                        - s.padding as isize;
                                    let iw = (j * s.stride + kw * s.dilation) as isize
                                        - s.padding as isize;
                                    if ih < 0
                                        || iw < 0
                                        || ih >= s.in_h as isize
                                        || iw >= s.in_w as isize
                                    {
                                        continue;
                                    }
                                    let xv = x_host[((bi * s.in_channels + g * cg + ic) * s.in_h
                                        + ih as usize)
                                        * s.in_w
                                        + iw as usize];
                                    let wv = w_host
                                        [((oc * cg + ic) * s.kernel_h + kh) * s.kernel_w + kw];
                                    sum += f64::from(xv) * f64::from(wv);
                                    magnitude += (f64::from(xv) * f64::from(wv)).abs();
                                }
                            }
                        }
                        if with_bias {
                            sum += f64::from(b_host[oc]);
                        }
                        let k = (cg * s.kernel_h * s.kernel_w) as f64;
                        // K fused multiply-adds and one bias add in f32: (K + 1) 2^-24 (sum |w x| + |bias|)
                        let tol = (k + 2.0) * f64::from(f32::EPSILON) / 2.0 * (magnitude + 1.0);
                        let at = ((bi * s.out_channels + oc) * oh + i) * ow + j;
                        let g_val = f64::from(got[at]);
                        // the CPU kernel is within the same bound of the exact sum: within twice it of the GPU
                        prop_assert!(
                            (g_val - f64::from(cpu[at])).abs() <= 2.0 * tol,
                            "y[{}] = {} but the CPU kernel says {}",
                            at,
                            g_val,
                            cpu[at]
                        );
                        prop_assert!(
                            (g_val - sum).abs() <= tol,
                            "y[{}, {}, {}, {}] = {} but the reference says {} ({:?})",
                            bi,
                            oc,
                            i,
                            j,
                            g_val,
                            sum,
                            s
                        );
                    }
                }
            }
            Ok(())
        })
        .unwrap();
}

/// The fused epilogue (bias, per-image-and-channel addend, residual; each present or not) against the CPU's fused
/// im2col kernel on the same data. Each is within `(K + 4)·2^-24·M` of the exact value (K products, at most three
/// additions of addends, one more rounding for the order), with `M` the same sum over absolute values (computed by the
/// CPU kernel on |x|, |w| and |addends|; its own rounding is below K·2^-24 relative), so they differ by at most twice
/// that.
fn conv2d_forward_add_matches_the_cpu_kernel(gpu: &Gpu) {
    runner()
        .run(
            &(conv_case(), any::<[bool; 3]>()),
            |((s, _, seed), present)| {
                let (oh, ow) = s.output_hw().unwrap();
                let out_len = s.batch * s.out_channels * oh * ow;
                let cg = s.in_channels / s.groups;
                let x_host = matrix(seed, s.batch * s.in_channels * s.in_h * s.in_w, 1.0);
                let w_host = matrix(seed ^ 9, s.out_channels * cg * s.kernel_h * s.kernel_w, 1.0);
                let hosts = [
                    matrix(seed ^ 11, s.out_channels, 1.0),
                    matrix(seed ^ 13, s.batch * s.out_channels, 1.0),
                    matrix(seed ^ 15, out_len, 1.0),
                ];
                let devices = hosts.each_ref().map(|h| upload(gpu, h));
                let (x, w) = (upload(gpu, &x_host), upload(gpu, &w_host));
                let [bias, channel, residual] =
                    [0, 1, 2].map(|i| present[i].then_some(&devices[i]));
                let addends = conv::Conv2dAddends {
                    bias,
                    channel,
                    residual,
                };
                let mut y = zeros(gpu, out_len);
                conv::conv2d_forward_add(gpu, &s, &x, &w, addends, &mut y).unwrap();
                let got = download(gpu, &y);

                let cpu_shape = cpu_conv_shape(&s);
                let cpu_run = |x: &[f32], w: &[f32], hosts: &[Vec<f32>; 3]| {
                    let [bias, channel, residual] =
                        [0, 1, 2].map(|i| present[i].then_some(&hosts[i][..]));
                    let addends = cpu_kernels::conv2d::Conv2dAddends {
                        bias,
                        channel,
                        residual,
                    };
                    let mut y = vec![0.0; out_len];
                    cpu_kernels::conv2d::conv2d_forward_add_with(
                        cpu_kernels::conv2d::Conv2dAlgorithm::Im2col,
                        &cpu_shape,
                        x,
                        w,
                        addends,
                        &mut y,
                    )
                    .unwrap();
                    y
                };
                let abs = |v: &[f32]| v.iter().map(|x| x.abs()).collect::<Vec<_>>();
                let cpu = cpu_run(&x_host, &w_host, &hosts);
                let magnitude = cpu_run(
                    &abs(&x_host),
                    &abs(&w_host),
                    &hosts.each_ref().map(|h| abs(h)),
                );
                let k = (cg * s.kernel_h * s.kernel_w) as f64;
                for (at, ((&g, &c), &m)) in got.iter().zip(&cpu).zip(&magnitude).enumerate() {
                    let tol =
                        2.0 * (k + 4.0) * f64::from(f32::EPSILON) / 2.0 * (f64::from(m) + 1e-6);
                    prop_assert!(
                        (f64::from(g) - f64::from(c)).abs() <= tol,
                        "y[{}] = {} but the CPU kernel says {} ({:?}, addends {:?})",
                        at,
                        g,
                        c,
                        s,
                        present
                    );
                }
                Ok(())
            },
        )
        .unwrap();
}

fn conv2d_refuses_a_kernel_larger_than_the_padded_input(gpu: &Gpu) {
    let s = Conv2dShape {
        batch: 1,
        in_channels: 1,
        in_h: 2,
        in_w: 2,
        out_channels: 1,
        kernel_h: 5,
        kernel_w: 5,
        stride: 1,
        padding: 0,
        dilation: 1,
        groups: 1,
    };
    let (x, w) = (zeros(gpu, 4), zeros(gpu, 25));
    let mut y = zeros(gpu, 1);
    let err = conv::conv2d_forward(gpu, &s, &x, &w, None::<&DeviceBuffer>, &mut y).unwrap_err();
    assert!(err.message.contains("does not fit"), "{err}");
}

// ------------------------------------------------------------------------------------------------------- attention

fn attention_forward_matches_the_f64_reference_with_and_without_a_causal_bias(gpu: &Gpu) {
    let case = (
        1usize..4,
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
        any::<bool>(),
        any::<u64>(),
    );
    // Scores are O(sqrt(head_dim) scale) = O(1); exp within ~2^-21, a kv_len-term online sum, one rcp: 1e-5 relative
    // (absolute below 1) on out (a convex combination of v in [-1, 1]) and on lse.
    runner()
        .run(
            &case,
            |(batch_heads, q_len, kv_len, head_dim, causal, seed)| {
                let s = AttentionShape::dense(
                    batch_heads,
                    1,
                    q_len,
                    kv_len,
                    head_dim,
                    1.0 / (head_dim as f32).sqrt(),
                );
                let q_host = matrix(seed, batch_heads * q_len * head_dim, 1.0);
                let k_host = matrix(seed ^ 1, batch_heads * kv_len * head_dim, 1.0);
                let v_host = matrix(seed ^ 2, batch_heads * kv_len * head_dim, 1.0);
                // causal: key j is visible to query i when j <= i + (kv_len - q_len), and row 0 always sees key 0
                let visible = |i: usize, j: usize| !causal || j + q_len <= i + kv_len || j == 0;
                let bias_host: Vec<f32> = (0..q_len * kv_len)
                    .map(|e| {
                        if visible(e / kv_len, e % kv_len) {
                            0.0
                        } else {
                            f32::NEG_INFINITY
                        }
                    })
                    .collect();
                let (q, k, v, b) = (
                    upload(gpu, &q_host),
                    upload(gpu, &k_host),
                    upload(gpu, &v_host),
                    upload(gpu, &bias_host),
                );
                let (mut out, mut lse) = (
                    zeros(gpu, batch_heads * q_len * head_dim),
                    zeros(gpu, batch_heads * q_len),
                );
                attention::attention_forward(
                    gpu,
                    &s,
                    &q,
                    &k,
                    &v,
                    causal.then_some(&b),
                    &mut out,
                    &mut lse,
                )
                .unwrap();
                let (mut want_out, mut want_lse) = (Vec::new(), Vec::new());
                for h in 0..batch_heads {
                    for i in 0..q_len {
                        let scores: Vec<f64> = (0..kv_len)
                            .map(|j| {
                                if !visible(i, j) {
                                    return f64::NEG_INFINITY;
                                }
                                let dot: f64 = (0..head_dim)
                                    .map(|c| {
                                        f64::from(q_host[(h * q_len + i) * head_dim + c])
                                            * f64::from(k_host[(h * kv_len + j) * head_dim + c])
                                    })
                                    .sum();
                                dot * f64::from(s.scale)
                            })
                            .collect();
                        let m = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                        let l: f64 = scores.iter().map(|x| (x - m).exp()).sum();
                        for c in 0..head_dim {
                            let o: f64 = (0..kv_len)
                                .map(|j| {
                                    (scores[j] - m).exp()
                                        * f64::from(v_host[(h * kv_len + j) * head_dim + c])
                                })
                                .sum();
                            want_out.push((o / l) as f32);
                        }
                        want_lse.push((m + l.ln()) as f32);
                    }
                }
                assert_close("out", &download(gpu, &out), &want_out, 1e-5)?;
                assert_close("lse", &download(gpu, &lse), &want_lse, 1e-5)
            },
        )
        .unwrap();
}

fn attention_refuses_a_head_dim_above_128(gpu: &Gpu) {
    let s = AttentionShape::dense(1, 1, 1, 1, 129, 1.0);
    let x = zeros(gpu, 129);
    let (mut out, mut lse) = (zeros(gpu, 129), zeros(gpu, 1));
    let err = attention::attention_forward(
        gpu,
        &s,
        &x,
        &x,
        &x,
        None::<&DeviceBuffer>,
        &mut out,
        &mut lse,
    )
    .unwrap_err();
    assert!(err.message.contains("head_dim 129"), "{err}");
}

// ----------------------------------------------------------------------------------------------- caching allocator

fn a_returned_buffer_is_handed_out_again_for_a_request_in_its_bucket(gpu: &Gpu) {
    use cudarc::driver::DevicePtr;
    let first = gpu.take_buffer(1100).unwrap();
    let address = first.view().device_ptr(gpu.stream()).0;
    gpu.give_back_buffer(first);
    let mut second = gpu.take_buffer(1200).unwrap(); // 1100 and 1200 both round to the 1280 bucket
    assert_eq!(second.view().device_ptr(gpu.stream()).0, address);
    assert_eq!(second.len(), 1200);
    philox::fill_uniform(gpu, 1, 0, &mut second.view_mut()).unwrap();
    assert_eq!(
        gpu.stream().clone_dtoh(&second.view()).unwrap(),
        reference::philox::uniforms(1, 0, 1200)
    );
    gpu.give_back_buffer(second);
}

// ----------------------------------------------------------------------------------------------------------- empty

fn an_empty_buffer_owns_no_device_memory(gpu: &Gpu) {
    use cudarc::driver::DevicePtr;
    // address 0 is never handed out by the driver: an empty buffer at 0 was never allocated
    let address = |b: &DeviceBuffer| b.device_ptr(gpu.stream()).0;
    assert_eq!(address(&zeros(gpu, 0)), 0);
    assert_eq!(address(&upload(gpu, &[])), 0);
    let cached = gpu.pool().lock().unwrap().cached_bytes();
    let empty = gpu.take_buffer(0).unwrap();
    assert_eq!((address(&empty), empty.len()), (0, 0));
    gpu.give_back_buffer(empty);
    assert_eq!(
        gpu.pool().lock().unwrap().cached_bytes(),
        cached,
        "an empty buffer gave the pool an allocation"
    );
    assert_eq!(download(gpu, &zeros(gpu, 0)), Vec::<f32>::new());
}

fn empty_inputs_are_accepted_and_launch_nothing(gpu: &Gpu) {
    let (empty, mut empty_out) = (zeros(gpu, 0), zeros(gpu, 0));
    philox::fill_normal(gpu, 1, 0, &mut empty_out).unwrap();
    elementwise::unary(
        gpu,
        UnaryOp::Exp,
        &[0, 3],
        &empty,
        Operand::new(&[3, 1], 0),
        &mut empty_out,
    )
    .unwrap();
    reduce::row_sum(gpu, 0, 5, &empty, &mut empty_out).unwrap();
    softmax::softmax(gpu, 3, 0, &empty, &mut empty_out).unwrap();
    gemm::sgemm(
        gpu,
        0,
        4,
        3,
        1.0,
        &empty,
        MatrixLayout::row_major(3),
        &zeros(gpu, 12),
        MatrixLayout::row_major(4),
        0.0,
        &mut empty_out,
    )
    .unwrap();
    gpu.synchronize().unwrap();
}

fn sgemm_with_k_zero_scales_c_by_beta(gpu: &Gpu) {
    let mut c = upload(gpu, &[1.0, -2.0, 3.0, 4.0]);
    let empty = zeros(gpu, 0);
    gemm::sgemm(
        gpu,
        2,
        2,
        0,
        1.0,
        &empty,
        MatrixLayout::row_major(0),
        &empty,
        MatrixLayout::row_major(2),
        0.5,
        &mut c,
    )
    .unwrap();
    assert_eq!(download(gpu, &c), vec![0.5, -1.0, 1.5, 2.0]);
}

fn main() {
    let tests = diffuse_gpu_test::on_gpu![
        fill_uniform_reproduces_the_cpu_stream_bit_for_bit,
        fill_normal_matches_the_cpu_stream,
        fill_normal_with_a_huge_offset_uses_the_high_counter_word,
        unary_maps_on_strided_broadcast_operands_match_the_reference,
        copy_strided_makes_any_layout_contiguous_exactly,
        binary_maps_broadcast_both_operands_exactly,
        an_operand_that_reaches_past_its_buffer_is_refused,
        q_sample_mixes_x0_with_the_philox_noise_of_the_cpu,
        sampler_step_matches_the_reference_step_with_and_without_clipping,
        q_sample_refuses_x0_that_does_not_split_into_the_batch,
        adamw_step_matches_pytorch_semantics_in_f64,
        adamw_step_zero_is_refused,
        row_sum_and_row_max_match_the_f64_reference,
        softmax_and_log_softmax_match_the_f64_reference,
        group_norm_forward_matches_the_f64_reference,
        group_norm_backward_matches_finite_differences,
        group_norm_refuses_channels_that_do_not_split_into_groups,
        sgemm_matches_the_f64_reference_on_ragged_and_transposed_shapes,
        sgemm_refuses_an_operand_shorter_than_its_shape,
        gemm_bf16_matches_the_f64_reference_on_ragged_shapes,
        gemm_bf16_refuses_k_that_is_not_a_multiple_of_8,
        pack_bf16_rounds_like_half_and_pads_with_zeros,
        pack_bf16_refuses_a_padding_that_does_not_hold_the_matrix,
        conv2d_forward_matches_the_naive_f64_convolution,
        conv2d_forward_add_matches_the_cpu_kernel,
        conv2d_refuses_a_kernel_larger_than_the_padded_input,
        attention_forward_matches_the_f64_reference_with_and_without_a_causal_bias,
        attention_refuses_a_head_dim_above_128,
        a_returned_buffer_is_handed_out_again_for_a_request_in_its_bucket,
        an_empty_buffer_owns_no_device_memory,
        empty_inputs_are_accepted_and_launch_nothing,
        sgemm_with_k_zero_scales_c_by_beta,
    ];
    diffuse_gpu_test::run(|| Gpu::new(0), tests);
}
