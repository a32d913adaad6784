//! Every tensor operation on `Device::Cuda(0)` held against the same operation on the CPU, over shapes that include
//! batch 1, one channel, size-1 and ragged dimensions, and inputs that are permuted, narrowed or broadcast views.
//! The GPU side receives its inputs through `.to_device()` and nothing else changes, which is the backend's promise.
//!
//! Tolerances (|gpu − cpu| ≤ abs + rel·|cpu|), by what separates the two computations:
//! - data movement (copies, views, concat, index, gather, upsample, where, argmax) and single correctly rounded f32
//!   operations (add, sub, mul, div, max, min, square, recip, relu, affine): exact;
//! - transcendental maps (exp, log, tanh, gelu, sigmoid, silu, pow, rsqrt): the PTX approximations are within ~1e-6
//!   relative of the correctly rounded value, so 1e-5 relative plus 1e-6 absolute near zero;
//! - sums of n terms: the CPU accumulates in f64 and rounds once, the GPU in f32 along a tree of ~(n/256 + 8) levels,
//!   so (n/256 + 8)·2⁻²⁴ relative to Σ|x| (≤ 3n here); means add one rounding;
//! - matmul, convolution and attention with k-term dot products in f32 on both sides in different orders:
//!   k·2⁻²⁴ relative to Σ|a·b|, bounded here by 2e-6·k against values of magnitude ≤ 3·3·k;
//! - normalisation (Welford against two-pass): 1e-4, the statistics' rounding amplified by rstd ≤ 1/√eps for flat rows.
//!
//! Outputs come from the caching allocator, which each test first fills with NaN buffers, so an element a kernel
//! never writes shows up as a NaN where the CPU has a number.
//!
//! The tests run under `diffuse-gpu-test`'s harness: without a CUDA driver or device each is reported ignored, with
//! the reason; on a device that cannot run the kernels each fails with the driver's message. Each test takes the
//! device it runs on (always `GPU`) and starts by poisoning its allocator.

mod common;

use common::{draw, nonempty_shape, view_kind, ViewKind};
use diffuse_cuda_kernels::alloc::bucket_len;
use diffuse_tensor::{
    set_matmul_precision, AdamWConfig, BinaryOp, Conv2dParams, DType, Device, OpenError, Precision,
    Tensor, UnaryOp,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

const GPU: Device = Device::Cuda(0);

/// The device every test runs on, or why there is none (the harness reports the tests ignored, or failed when a
/// device is there but cannot run the kernels).
fn open_cuda0() -> Result<Device, OpenError> {
    GPU.open().map(|()| GPU)
}

/// Fills the caching allocator with NaN buffers of every bucket up to 2^16 elements, four of each, so that an output
/// element a kernel forgets to write reads NaN (which no comparison below accepts against a number) rather than
/// whatever an earlier test left there.
fn poison_the_allocator() {
    let mut poisoned = Vec::new();
    let mut len = 1;
    while len <= 1 << 16 {
        let bucket = bucket_len(len);
        for _ in 0..4 {
            poisoned.push(Tensor::full(&[bucket], f32::NAN, DType::F32, GPU).unwrap());
        }
        len = bucket + 1;
    }
    // dropping them hands the NaN-filled buffers back to the pool
}

/// 32 cases per property, or `PROPTEST_CASES` when set (compute-sanitizer runs fewer).
fn runner() -> TestRunner {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(32);
    TestRunner::new(Config {
        cases,
        ..Config::default()
    })
}

/// Deterministic values in [-3, 3) (a xorshift stream; the tests need spread, not statistics).
fn values(seed: u64, len: usize) -> Vec<f32> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 24) as f32 * 6.0 - 3.0
        })
        .collect()
}

/// The shape of the buffer a view of `shape` is cut from.
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

fn cut(base: &Tensor, shape: &[usize], kind: &ViewKind) -> Tensor {
    match kind {
        ViewKind::Contiguous => base.clone(),
        ViewKind::Permuted(p) => base.permute(p).unwrap(),
        ViewKind::Narrowed { dim, start, .. } => base.narrow(*dim, *start, shape[*dim]).unwrap(),
        ViewKind::Broadcast(_) => base.broadcast_to(shape).unwrap(),
    }
}

/// The same view of the same values on the CPU and on the GPU (the GPU base arrives through `.to_device()`).
fn twins(shape: &[usize], kind: &ViewKind, seed: u64) -> (Tensor, Tensor) {
    let base_shape = base_shape(shape, kind);
    let data = values(seed, base_shape.iter().product());
    let base = Tensor::from_vec(data, &base_shape, Device::Cpu).unwrap();
    let on_gpu = base.to_device(GPU).unwrap();
    assert_eq!(on_gpu.device(), GPU);
    (cut(&base, shape, kind), cut(&on_gpu, shape, kind))
}

/// A contiguous tensor of `shape` on both devices.
fn pair(shape: &[usize], seed: u64) -> (Tensor, Tensor) {
    twins(shape, &ViewKind::Contiguous, seed)
}

/// A shape with a random view of it.
fn viewed(max_rank: usize) -> impl Strategy<Value = (Vec<usize>, ViewKind, u64)> {
    nonempty_shape(max_rank)
        .prop_flat_map(|shape| (Just(shape.clone()), view_kind(shape), any::<u64>()))
}

/// |gpu − cpu| ≤ abs + rel·|cpu| element-wise (NaN pairs and equal infinities agree), shapes equal.
fn close(what: &str, gpu: &Tensor, cpu: &Tensor, abs: f64, rel: f64) -> Result<(), TestCaseError> {
    prop_assert_eq!(gpu.shape(), cpu.shape(), "{}: shapes differ", what);
    prop_assert_eq!(gpu.device(), GPU, "{}: the result left the GPU", what);
    let (g, c) = (gpu.to_vec().unwrap(), cpu.to_vec().unwrap());
    for (i, (&x, &y)) in g.iter().zip(&c).enumerate() {
        let (x, y) = (f64::from(x), f64::from(y));
        let same_special = (x.is_nan() && y.is_nan()) || (x.is_infinite() && x == y);
        prop_assert!(
            same_special || (x - y).abs() <= abs + rel * y.abs(),
            "{}: element {} is {} on the GPU and {} on the CPU",
            what,
            i,
            x,
            y
        );
    }
    Ok(())
}

fn exact(what: &str, gpu: &Tensor, cpu: &Tensor) -> Result<(), TestCaseError> {
    close(what, gpu, cpu, 0.0, 0.0)
}

// ---- copies -------------------------------------------------------------------------------------------------------

fn to_device_and_back_returns_every_view_bit_for_bit(_: &Device) {
    poison_the_allocator();
    runner()
        .run(&viewed(4), |(shape, kind, seed)| {
            let (cpu, gpu) = twins(&shape, &kind, seed);
            prop_assert_eq!(gpu.to_vec().unwrap(), cpu.to_vec().unwrap());
            let back = gpu.to_device(Device::Cpu).unwrap();
            prop_assert_eq!(back.device(), Device::Cpu);
            prop_assert_eq!(back.to_vec().unwrap(), cpu.to_vec().unwrap());
            exact("contiguous", &gpu.contiguous().unwrap(), &cpu)
        })
        .unwrap();
    // empty and rank-0 tensors travel too
    let empty = Tensor::zeros(&[3, 0], DType::F32, Device::Cpu).unwrap();
    assert_eq!(
        empty.to_device(GPU).unwrap().to_vec().unwrap(),
        Vec::<f32>::new()
    );
    let scalar = Tensor::scalar(2.5, GPU).unwrap();
    assert_eq!(scalar.to_scalar().unwrap(), 2.5);
}

fn creation_functions_fill_the_same_values_on_the_gpu(_: &Device) {
    poison_the_allocator();
    let full = Tensor::full(&[3, 5], -1.25, DType::F32, GPU).unwrap();
    assert_eq!(full.to_vec().unwrap(), vec![-1.25; 15]);
    let range = Tensor::arange(0.0, 7.0, 1.5, GPU).unwrap();
    let want = Tensor::arange(0.0, 7.0, 1.5, Device::Cpu).unwrap();
    assert_eq!(range.to_vec().unwrap(), want.to_vec().unwrap());
    // uniform is the CPU's stream bit for bit; normal within the PTX sin/cos/log approximations
    let (u_gpu, u_cpu) = (
        Tensor::rand(&[7, 37], 11, 5, GPU).unwrap(),
        Tensor::rand(&[7, 37], 11, 5, Device::Cpu).unwrap(),
    );
    close("rand", &u_gpu, &u_cpu, 0.0, 0.0).unwrap();
    let (n_gpu, n_cpu) = (
        Tensor::randn(&[3, 101], 7, 3, GPU).unwrap(),
        Tensor::randn(&[3, 101], 7, 3, Device::Cpu).unwrap(),
    );
    close("randn", &n_gpu, &n_cpu, 1e-5, 1e-5).unwrap();
}

fn assign_writes_a_view_into_a_gpu_tensor(_: &Device) {
    poison_the_allocator();
    runner()
        .run(&viewed(3), |(shape, kind, seed)| {
            let (cpu_src, gpu_src) = twins(&shape, &kind, seed);
            let gpu_dst = Tensor::zeros(&shape, DType::F32, GPU).unwrap();
            gpu_dst.assign(&gpu_src).unwrap();
            prop_assert_eq!(gpu_dst.to_vec().unwrap(), cpu_src.to_vec().unwrap());
            Ok(())
        })
        .unwrap();
}

// ---- element-wise -------------------------------------------------------------------------------------------------

fn unary_maps_on_gpu_views_match_the_cpu(_: &Device) {
    poison_the_allocator();
    let ops = [
        UnaryOp::Neg,
        UnaryOp::Exp,
        UnaryOp::Log,
        UnaryOp::Sqrt,
        UnaryOp::Rsqrt,
        UnaryOp::Abs,
        UnaryOp::Square,
        UnaryOp::Recip,
        UnaryOp::Relu,
        UnaryOp::Tanh,
        UnaryOp::Sigmoid,
        UnaryOp::Silu,
        UnaryOp::Gelu,
        UnaryOp::Powf(1.7),
        UnaryOp::Clamp(-0.5, 0.75),
        UnaryOp::Affine(-1.5, 0.25),
    ];
    runner()
        .run(
            &(viewed(4), 0..ops.len()),
            |((shape, kind, seed), which)| {
                let op = ops[which];
                let (mut cpu, mut gpu) = twins(&shape, &kind, seed);
                if matches!(
                    op,
                    UnaryOp::Log | UnaryOp::Sqrt | UnaryOp::Rsqrt | UnaryOp::Powf(_)
                ) {
                    // positive inputs in [0.01, 3.01)
                    cpu = cpu.abs().unwrap().add_scalar(0.01).unwrap();
                    gpu = gpu.abs().unwrap().add_scalar(0.01).unwrap();
                }
                let exact_op = matches!(
                    op,
                    UnaryOp::Neg
                        | UnaryOp::Abs
                        | UnaryOp::Square
                        | UnaryOp::Recip
                        | UnaryOp::Relu
                        | UnaryOp::Clamp(..)
                        | UnaryOp::Affine(..)
                );
                let (abs, rel) = if exact_op { (0.0, 0.0) } else { (1e-6, 1e-5) };
                close(
                    &format!("{op:?}"),
                    &gpu.unary(op).unwrap(),
                    &cpu.unary(op).unwrap(),
                    abs,
                    rel,
                )
            },
        )
        .unwrap();
}

fn binary_maps_broadcast_gpu_views_like_the_cpu(_: &Device) {
    poison_the_allocator();
    let ops = [
        BinaryOp::Add,
        BinaryOp::Sub,
        BinaryOp::Mul,
        BinaryOp::Div,
        BinaryOp::Maximum,
        BinaryOp::Minimum,
        BinaryOp::SiluBackward,
    ];
    runner()
        .run(
            &(viewed(4), 0..ops.len(), any::<u64>()),
            |((shape, kind, seed), which, seed_b)| {
                let op = ops[which];
                let (a_cpu, a_gpu) = twins(&shape, &kind, seed);
                // b broadcasts along the leading dimension
                let b_shape = &shape[1.min(shape.len())..];
                let (b_cpu, b_gpu) = pair(b_shape, seed_b);
                let (abs, rel) = if op == BinaryOp::SiluBackward {
                    (1e-6, 1e-5)
                } else {
                    (0.0, 0.0)
                };
                close(
                    &format!("{op:?}"),
                    &a_gpu.binary(&b_gpu, op).unwrap(),
                    &a_cpu.binary(&b_cpu, op).unwrap(),
                    abs,
                    rel,
                )
            },
        )
        .unwrap();
}

fn where_select_with_a_broadcast_condition_matches_the_cpu(_: &Device) {
    poison_the_allocator();
    runner()
        .run(&viewed(3), |(shape, kind, seed)| {
            let (a_cpu, a_gpu) = twins(&shape, &kind, seed);
            let (b_cpu, b_gpu) = pair(&shape, seed ^ 1);
            let last = &shape[shape.len() - 1..];
            let (c_cpu, c_gpu) = pair(last, seed ^ 2);
            let (c_cpu, c_gpu) = (c_cpu.relu().unwrap(), c_gpu.relu().unwrap()); // zeros and non-zeros
            exact(
                "where",
                &c_gpu.where_select(&a_gpu, &b_gpu).unwrap(),
                &c_cpu.where_select(&a_cpu, &b_cpu).unwrap(),
            )
        })
        .unwrap();
}

// ---- reductions, softmax ------------------------------------------------------------------------------------------

fn reductions_over_any_dimension_match_the_cpu(_: &Device) {
    poison_the_allocator();
    runner()
        .run(
            &(viewed(4), any::<bool>()),
            |((shape, kind, seed), keep)| {
                let (cpu, gpu) = twins(&shape, &kind, seed);
                let dim = seed as usize % shape.len();
                let n = shape[dim] as f64;
                // (n/256 + 8) roundings relative to Σ|x| ≤ 3n (module docs)
                let sum_tol = (n / 256.0 + 8.0) * 3.0 * n * f64::from(f32::EPSILON);
                close(
                    "sum",
                    &gpu.sum(&[dim], keep).unwrap(),
                    &cpu.sum(&[dim], keep).unwrap(),
                    sum_tol,
                    0.0,
                )?;
                close(
                    "mean",
                    &gpu.mean(&[dim], keep).unwrap(),
                    &cpu.mean(&[dim], keep).unwrap(),
                    sum_tol / n,
                    f64::from(f32::EPSILON),
                )?;
                exact(
                    "max",
                    &gpu.max(&[dim], keep).unwrap(),
                    &cpu.max(&[dim], keep).unwrap(),
                )?;
                exact(
                    "min",
                    &gpu.min(&[dim], keep).unwrap(),
                    &cpu.min(&[dim], keep).unwrap(),
                )?;
                exact(
                    "argmax",
                    &gpu.argmax(dim, keep).unwrap(),
                    &cpu.argmax(dim, keep).unwrap(),
                )
            },
        )
        .unwrap();
}

fn softmax_and_its_backward_match_the_cpu(_: &Device) {
    poison_the_allocator();
    runner()
        .run(&viewed(3), |(shape, kind, seed)| {
            let (cpu, gpu) = twins(&shape, &kind, seed);
            let (g_cpu, g_gpu) = pair(&shape, seed ^ 1);
            let dim = seed as usize % shape.len();
            let n = shape[dim] as f64;
            let tol = 1e-6 + (n / 256.0 + 8.0) * 9.0 * n * f64::from(f32::EPSILON);
            let (y_cpu, y_gpu) = (cpu.softmax(dim).unwrap(), gpu.softmax(dim).unwrap());
            close("softmax", &y_gpu, &y_cpu, 1e-6, 1e-5)?;
            close(
                "softmax_backward",
                &y_gpu.softmax_backward(&g_gpu, dim).unwrap(),
                &y_cpu.softmax_backward(&g_cpu, dim).unwrap(),
                tol,
                1e-5,
            )?;
            let (l_cpu, l_gpu) = (cpu.log_softmax(dim).unwrap(), gpu.log_softmax(dim).unwrap());
            close("log_softmax", &l_gpu, &l_cpu, 1e-5, 1e-5)?;
            close(
                "log_softmax_backward",
                &l_gpu.log_softmax_backward(&g_gpu, dim).unwrap(),
                &l_cpu.log_softmax_backward(&g_cpu, dim).unwrap(),
                tol,
                1e-5,
            )
        })
        .unwrap();
}

// ---- data movement ------------------------------------------------------------------------------------------------

fn concat_stack_and_index_ops_move_the_same_elements(_: &Device) {
    poison_the_allocator();
    runner()
        .run(&(viewed(3), 0usize..4), |((shape, kind, seed), extra)| {
            let (a_cpu, a_gpu) = twins(&shape, &kind, seed);
            let dim = seed as usize % shape.len();
            let mut other = shape.clone();
            other[dim] = extra; // 0 makes an empty part
            let (b_cpu, b_gpu) = pair(&other, seed ^ 1);
            exact(
                "concat",
                &Tensor::concat(&[&a_gpu, &b_gpu, &a_gpu], dim).unwrap(),
                &Tensor::concat(&[&a_cpu, &b_cpu, &a_cpu], dim).unwrap(),
            )?;
            exact(
                "stack",
                &Tensor::stack(&[&a_gpu, &a_gpu], dim).unwrap(),
                &Tensor::stack(&[&a_cpu, &a_cpu], dim).unwrap(),
            )?;
            let size = shape[dim];
            let indices: Vec<usize> = (0..extra + 2)
                .map(|j| (j * 7 + seed as usize) % size)
                .collect();
            let (sel_cpu, sel_gpu) = (
                a_cpu.index_select(dim, &indices).unwrap(),
                a_gpu.index_select(dim, &indices).unwrap(),
            );
            exact("index_select", &sel_gpu, &sel_cpu)?;
            exact(
                "index_select_backward",
                &sel_gpu.index_select_backward(dim, size, &indices).unwrap(),
                &sel_cpu.index_select_backward(dim, size, &indices).unwrap(),
            )?;
            let mut index_shape = shape.clone();
            index_shape[dim] = extra + 1;
            let count: usize = index_shape.iter().product();
            let index: Vec<usize> = (0..count).map(|j| (j * 5 + seed as usize) % size).collect();
            let (gat_cpu, gat_gpu) = (
                a_cpu.gather(dim, &index_shape, &index).unwrap(),
                a_gpu.gather(dim, &index_shape, &index).unwrap(),
            );
            exact("gather", &gat_gpu, &gat_cpu)?;
            exact(
                "gather_backward",
                &gat_gpu.gather_backward(dim, &shape, &index).unwrap(),
                &gat_cpu.gather_backward(dim, &shape, &index).unwrap(),
            )
        })
        .unwrap();
}

fn upsampling_and_its_backward_match_the_cpu(_: &Device) {
    poison_the_allocator();
    runner()
        .run(
            &(1usize..3, 1usize..4, 1usize..6, 1usize..7, any::<u64>()),
            |(n, c, h, w, seed)| {
                // a view narrowed along the width: rows do not start where the previous one ends
                let narrowed = ViewKind::Narrowed {
                    dim: 3,
                    extra: 2,
                    start: 1,
                };
                let (cpu, gpu) = twins(&[n, c, h, w], &narrowed, seed);
                let (up_cpu, up_gpu) = (
                    cpu.upsample_nearest2x().unwrap(),
                    gpu.upsample_nearest2x().unwrap(),
                );
                exact("upsample_nearest2x", &up_gpu, &up_cpu)?;
                exact(
                    "upsample_nearest2x_backward",
                    &up_gpu.upsample_nearest2x_backward().unwrap(),
                    &up_cpu.upsample_nearest2x_backward().unwrap(),
                )
            },
        )
        .unwrap();
}

// ---- matmul, convolution, normalisation, attention ----------------------------------------------------------------

fn batched_matmul_of_transposed_broadcast_operands_matches_the_cpu(_: &Device) {
    poison_the_allocator();
    runner()
        .run(
            &(1usize..4, 1usize..40, 1usize..40, 1usize..70, any::<u64>()),
            |(batch, m, n, k, seed)| {
                let (a_cpu, a_gpu) = pair(&[batch, k, m], seed);
                let (a_cpu, a_gpu) = (
                    a_cpu.transpose(1, 2).unwrap(),
                    a_gpu.transpose(1, 2).unwrap(),
                );
                let (b_cpu, b_gpu) = pair(&[k, n], seed ^ 1); // one matrix for every batch
                close(
                    "matmul",
                    &a_gpu.matmul(&b_gpu).unwrap(),
                    &a_cpu.matmul(&b_cpu).unwrap(),
                    2e-6 * 9.0 * k as f64,
                    0.0,
                )
            },
        )
        .unwrap();
}

/// The bias added in the GEMM's output stage: the GPU starts from the bias repeated by the strided copy and runs the
/// SGEMM with β = 1 (f32), or adds it with the element-wise kernel after the bf16 product; the CPU does the former.
/// f32 tolerance as for the product (the bias adds one rounding of a value ≤ 3); bf16: the product's bound against
/// `|A||B|` plus one f32 rounding of the sum (≤ 2⁻²⁴·(9k + 3)).
fn matmul_bias_matches_the_cpu_in_f32_and_bf16(_: &Device) {
    poison_the_allocator();
    runner()
        .run(
            &(1usize..4, 1usize..40, 1usize..40, 1usize..70, any::<u64>()),
            |(batch, m, n, k, seed)| {
                let (a_cpu, a_gpu) = pair(&[batch, m, k], seed);
                let (w_cpu, w_gpu) = pair(&[n, k], seed ^ 1); // a linear layer's weight, read transposed
                let (w_cpu, w_gpu) = (
                    w_cpu.transpose(0, 1).unwrap(),
                    w_gpu.transpose(0, 1).unwrap(),
                );
                let (b_cpu, b_gpu) = pair(&[n], seed ^ 2);
                let want = a_cpu.matmul_bias(&w_cpu, &b_cpu).unwrap();
                close(
                    "matmul_bias",
                    &a_gpu.matmul_bias(&w_gpu, &b_gpu).unwrap(),
                    &want,
                    2e-6 * 9.0 * k as f64 + 1e-6,
                    0.0,
                )?;
                let bf16 = {
                    let _bf16 = PrecisionFor::set(Precision::Bf16);
                    a_gpu.matmul_bias(&w_gpu, &b_gpu).unwrap()
                };
                let magnitude = a_cpu.abs().unwrap().matmul(&w_cpu.abs().unwrap()).unwrap();
                let relative = 2f64.powi(-8) + (2 * k + 5) as f64 * 2f64.powi(-24);
                let (got, want, magnitude) = (
                    bf16.to_vec().unwrap(),
                    want.to_vec().unwrap(),
                    magnitude.to_vec().unwrap(),
                );
                for (i, ((&g, &w), &mag)) in got.iter().zip(&want).zip(&magnitude).enumerate() {
                    let bound = relative * f64::from(mag) + 2f64.powi(-24) * (9.0 * k as f64 + 3.0);
                    let error = (f64::from(g) - f64::from(w)).abs();
                    prop_assert!(
                        error <= bound,
                        "element {}: bf16 {} against {} (bound {})",
                        i,
                        g,
                        w,
                        bound
                    );
                }
                Ok(())
            },
        )
        .unwrap();
}

/// GEGLU forward and backward: the GPU's GELU and its derivative are within ~1e-6 relative of the correctly rounded
/// values (as the other transcendental maps), each multiplied by a value ≤ 3 and rounded once; 1e-5 relative plus
/// 1e-6 absolute. Rows of one and of ragged widths, a batch of token rows, and a transposed input.
fn geglu_matches_the_cpu_forward_and_backward(_: &Device) {
    poison_the_allocator();
    runner()
        .run(
            &(
                1usize..4,
                1usize..40,
                1usize..70,
                any::<bool>(),
                any::<u64>(),
            ),
            |(batch, tokens, inner, transposed, seed)| {
                let (x_cpu, x_gpu) = if transposed {
                    let (a, b) = pair(&[batch, 2 * inner, tokens], seed);
                    (a.transpose(1, 2).unwrap(), b.transpose(1, 2).unwrap())
                } else {
                    pair(&[batch, tokens, 2 * inner], seed)
                };
                let (g_cpu, g_gpu) = pair(&[batch, tokens, inner], seed ^ 1);
                close(
                    "geglu",
                    &x_gpu.geglu().unwrap(),
                    &x_cpu.geglu().unwrap(),
                    1e-6,
                    1e-5,
                )?;
                close(
                    "geglu_backward",
                    &x_gpu.geglu_backward(&g_gpu).unwrap(),
                    &x_cpu.geglu_backward(&g_cpu).unwrap(),
                    1e-6,
                    1e-5,
                )
            },
        )
        .unwrap();
}

/// Restores this thread's matmul precision when dropped (also when a property fails and unwinds).
struct PrecisionFor(Precision);

impl PrecisionFor {
    fn set(precision: Precision) -> PrecisionFor {
        PrecisionFor(set_matmul_precision(precision))
    }
}

impl Drop for PrecisionFor {
    fn drop(&mut self) {
        set_matmul_precision(self.0);
    }
}

fn bf16_matmul_is_within_the_bf16_bound_of_the_f32_product(_: &Device) {
    poison_the_allocator();
    // Rounding each operand to bf16 (8 significant bits, to nearest) costs at most 2⁻⁹ relative, a product of two at
    // most 2⁻⁸ + 2⁻¹⁸, and the f32 accumulation on each side (tensor cores here, the CPU's reference) at most
    // (k + 2)·2⁻²⁴ of Σ|aᵢbᵢ|: |bf16 − cpu| ≤ (2⁻⁸ + (2k + 5)·2⁻²⁴)·(|A||B|)ᵢⱼ. Shapes are ragged against the 8-wide
    // bf16 rows (k, n not multiples of 8) and the 128-wide tiles; A is transposed, B shared by the batch or not.
    runner()
        .run(
            &(1usize..4, 1usize..40, 1usize..40, 1usize..70, any::<u64>()),
            |(batch, m, n, k, seed)| {
                let (a_cpu, a_gpu) = pair(&[batch, k, m], seed);
                let (a_cpu, a_gpu) = (
                    a_cpu.transpose(1, 2).unwrap(),
                    a_gpu.transpose(1, 2).unwrap(),
                );
                let b_shape = if seed % 2 == 0 {
                    vec![k, n]
                } else {
                    vec![batch, k, n]
                };
                let (b_cpu, b_gpu) = pair(&b_shape, seed ^ 1);
                let f32_product = a_gpu.matmul(&b_gpu).unwrap().to_vec().unwrap();
                let bf16_product = {
                    let _bf16 = PrecisionFor::set(Precision::Bf16);
                    a_gpu.matmul(&b_gpu).unwrap()
                };
                prop_assert_eq!(bf16_product.shape(), &[batch, m, n][..]);
                let got = bf16_product.to_vec().unwrap();
                let want = a_cpu.matmul(&b_cpu).unwrap().to_vec().unwrap();
                let magnitude = a_cpu
                    .abs()
                    .unwrap()
                    .matmul(&b_cpu.abs().unwrap())
                    .unwrap()
                    .to_vec()
                    .unwrap();
                let relative = 2f64.powi(-8) + (2 * k + 5) as f64 * 2f64.powi(-24);
                for (i, ((&g, &w), &mag)) in got.iter().zip(&want).zip(&magnitude).enumerate() {
                    let error = (f64::from(g) - f64::from(w)).abs();
                    prop_assert!(
                        error <= relative * f64::from(mag),
                        "element {}: bf16 {} against {} (bound {})",
                        i,
                        g,
                        w,
                        relative * f64::from(mag)
                    );
                }
                // the values carry 24 significant bits: rounding them to 8 changes some product
                prop_assert!(
                    got != f32_product,
                    "the bf16 setting did not change the product"
                );
                Ok(())
            },
        )
        .unwrap();
}

/// `|got − want| ≤ relative·magnitude` elementwise, naming the first offender.
fn within_bf16(
    what: &str,
    got: &Tensor,
    want: &Tensor,
    magnitude: &Tensor,
    relative: f64,
) -> Result<(), TestCaseError> {
    prop_assert_eq!(got.shape(), want.shape(), "{}: shapes differ", what);
    let (got, want, magnitude) = (
        got.to_vec().unwrap(),
        want.to_vec().unwrap(),
        magnitude.to_vec().unwrap(),
    );
    for (i, ((&g, &w), &m)) in got.iter().zip(&want).zip(&magnitude).enumerate() {
        let bound = relative * (f64::from(m) + 1e-30);
        prop_assert!(
            (f64::from(g) - f64::from(w)).abs() <= bound,
            "{}: element {}: bf16 {} against {} (bound {})",
            what,
            i,
            g,
            w,
            bound
        );
    }
    Ok(())
}

fn bf16_conv2d_is_within_the_bf16_bound_and_grouped_ones_stay_f32(_: &Device) {
    poison_the_allocator();
    // With bf16 set, an ungrouped convolution's forward and both gradients go through conv_bf16 (bf16 operands, f32
    // accumulation): each within (2⁻⁸ + (2R + 5)·2⁻²⁴)·Σ|terms| of the f32 CPU result, R the longest reduction on
    // either side (K = C·k² forward, OC·k² + OC + k² for the input gradient, twice the output pixels plus one per
    // sample for the weight gradient; see crates/cuda-kernels/tests/conv_bf16_vs_cpu.rs for the derivation), and
    // different from the f32 GPU result. A grouped convolution has no bf16 path: its result is the f32 one, bit for
    // bit. Batch 1, one channel, stride 2, no padding, and sizes off the 8-wide bf16 rows are all in range.
    let case = (
        (
            1usize..3,
            1usize..3,
            1usize..4,
            1usize..6,
            3usize..10,
            3usize..10,
        ),
        (
            prop_oneof![Just(1usize), Just(3)],
            0usize..2,
            1usize..3,
            any::<u64>(),
        ),
    );
    runner()
        .run(
            &case,
            |((n, groups, cin_g, cout_g, h, w), (kernel, padding, stride, seed))| {
                prop_assume!(h + 2 * padding >= kernel && w + 2 * padding >= kernel);
                let (x_cpu, x_gpu) = pair(&[n, groups * cin_g, h, w], seed);
                let (w_cpu, w_gpu) = pair(&[groups * cout_g, cin_g, kernel, kernel], seed ^ 1);
                let (b_cpu, b_gpu) = pair(&[groups * cout_g], seed ^ 2);
                let p = Conv2dParams {
                    stride: (stride, stride),
                    padding: (padding, padding),
                    dilation: (1, 1),
                    groups,
                };
                let (x_shape, w_shape) = (x_cpu.shape().to_vec(), w_cpu.shape().to_vec());
                let y_f32 = x_gpu.conv2d(&w_gpu, Some(&b_gpu), &p).unwrap();
                let (gy_cpu, gy_gpu) = pair(y_f32.shape(), seed ^ 3);
                let gx_f32 = gy_gpu.conv2d_backward_input(&w_gpu, &x_shape, &p).unwrap();
                let gw_f32 = x_gpu
                    .conv2d_backward_weight(&gy_gpu, &w_shape, &p, true)
                    .unwrap()
                    .0;
                let (y, gx, gw) = {
                    let _bf16 = PrecisionFor::set(Precision::Bf16);
                    (
                        x_gpu.conv2d(&w_gpu, Some(&b_gpu), &p).unwrap(),
                        gy_gpu.conv2d_backward_input(&w_gpu, &x_shape, &p).unwrap(),
                        x_gpu
                            .conv2d_backward_weight(&gy_gpu, &w_shape, &p, true)
                            .unwrap()
                            .0,
                    )
                };
                if groups > 1 {
                    for (what, bf16, f32) in [
                        ("y", &y, &y_f32),
                        ("gx", &gx, &gx_f32),
                        ("gw", &gw, &gw_f32),
                    ] {
                        prop_assert_eq!(
                            bf16.to_vec().unwrap(),
                            f32.to_vec().unwrap(),
                            "grouped {} changed",
                            what
                        );
                    }
                    return Ok(());
                }
                let abs = |t: &Tensor| t.abs().unwrap();
                let relative = |r: usize| 2f64.powi(-8) + (2 * r + 5) as f64 * 2f64.powi(-24);
                let taps = kernel * kernel;
                let y_cpu = x_cpu.conv2d(&w_cpu, Some(&b_cpu), &p).unwrap();
                let y_mag = abs(&x_cpu)
                    .conv2d(&abs(&w_cpu), Some(&abs(&b_cpu)), &p)
                    .unwrap();
                within_bf16("y", &y, &y_cpu, &y_mag, relative(cin_g * taps + 1))?;
                let gx_cpu = gy_cpu.conv2d_backward_input(&w_cpu, &x_shape, &p).unwrap();
                let gx_mag = abs(&gy_cpu)
                    .conv2d_backward_input(&abs(&w_cpu), &x_shape, &p)
                    .unwrap();
                within_bf16(
                    "gx",
                    &gx,
                    &gx_cpu,
                    &gx_mag,
                    relative(cout_g * taps + cout_g + taps),
                )?;
                let gw_cpu = x_cpu
                    .conv2d_backward_weight(&gy_cpu, &w_shape, &p, false)
                    .unwrap()
                    .0;
                let gw_mag = abs(&x_cpu)
                    .conv2d_backward_weight(&abs(&gy_cpu), &w_shape, &p, false)
                    .unwrap()
                    .0;
                let pixels = gy_cpu.numel() / cout_g;
                within_bf16("gw", &gw, &gw_cpu, &gw_mag, relative(2 * pixels + n))?;
                // the inputs carry 24 significant bits: rounding them to 8 changes some output
                prop_assert!(
                    y.to_vec().unwrap() != y_f32.to_vec().unwrap(),
                    "the bf16 setting did not change y"
                );
                Ok(())
            },
        )
        .unwrap();
}

fn conv2d_forward_matches_the_cpu_on_awkward_shapes(_: &Device) {
    poison_the_allocator();
    let case = (
        1usize..3,
        1usize..3,
        1usize..4,
        1usize..4,
        3usize..10,
        3usize..10,
        1usize..4,
        0usize..3,
        1usize..3,
        any::<bool>(),
        any::<u64>(),
    );
    runner()
        .run(
            &case,
            |(n, groups, cin_g, cout_g, h, w, kernel, padding, stride, bias, seed)| {
                prop_assume!(h + 2 * padding >= kernel && w + 2 * padding >= kernel);
                let (x_cpu, x_gpu) = pair(&[n, groups * cin_g, h, w], seed);
                let (w_cpu, w_gpu) = pair(&[groups * cout_g, cin_g, kernel, kernel], seed ^ 1);
                let (b_cpu, b_gpu) = pair(&[groups * cout_g], seed ^ 2);
                let p = Conv2dParams {
                    stride: (stride, stride),
                    padding: (padding, padding),
                    dilation: (1, 1),
                    groups,
                };
                let k = (cin_g * kernel * kernel) as f64;
                let y_cpu = x_cpu.conv2d(&w_cpu, bias.then_some(&b_cpu), &p).unwrap();
                close(
                    "conv2d",
                    &x_gpu.conv2d(&w_gpu, bias.then_some(&b_gpu), &p).unwrap(),
                    &y_cpu,
                    2e-6 * 9.0 * (k + 1.0),
                    0.0,
                )?;
                // The backward passes reduce over the taps that reach an input pixel (at most cout_g·kernel²) and
                // over every output pixel of every image (n·oh·ow), with the same per-term bound.
                let (gy_cpu, gy_gpu) = pair(y_cpu.shape(), seed ^ 3);
                let x_shape = x_cpu.shape().to_vec();
                close(
                    "conv2d_backward_input",
                    &gy_gpu.conv2d_backward_input(&w_gpu, &x_shape, &p).unwrap(),
                    &gy_cpu.conv2d_backward_input(&w_cpu, &x_shape, &p).unwrap(),
                    2e-6 * 9.0 * ((cout_g * kernel * kernel) as f64 + 1.0),
                    0.0,
                )?;
                let w_shape = w_cpu.shape().to_vec();
                let (gw_gpu, gb_gpu) = x_gpu
                    .conv2d_backward_weight(&gy_gpu, &w_shape, &p, bias)
                    .unwrap();
                let (gw_cpu, gb_cpu) = x_cpu
                    .conv2d_backward_weight(&gy_cpu, &w_shape, &p, bias)
                    .unwrap();
                let pixels = (gy_cpu.numel() / (groups * cout_g)) as f64;
                close(
                    "conv2d_backward_weight",
                    &gw_gpu,
                    &gw_cpu,
                    2e-6 * 9.0 * (pixels + 1.0),
                    0.0,
                )?;
                match (gb_gpu, gb_cpu) {
                    (Some(g), Some(c)) => close(
                        "conv2d bias gradient",
                        &g,
                        &c,
                        2e-6 * 9.0 * (pixels + 1.0),
                        0.0,
                    ),
                    (None, None) => Ok(()),
                    _ => Err(TestCaseError::fail("one side returned a bias gradient")),
                }
            },
        )
        .unwrap();
}

fn group_norm_and_layer_norm_match_the_cpu_forward_and_backward(_: &Device) {
    poison_the_allocator();
    runner()
        .run(
            &(1usize..3, 1usize..4, 1usize..4, 1usize..30, any::<u64>()),
            |(n, groups, per_group, spatial, seed)| {
                let c = groups * per_group;
                let (x_cpu, x_gpu) = pair(&[n, c, spatial], seed);
                let (g_cpu, g_gpu) = pair(&[c], seed ^ 1);
                let (b_cpu, b_gpu) = pair(&[c], seed ^ 2);
                let (dy_cpu, dy_gpu) = pair(&[n, c, spatial], seed ^ 3);
                let fc = x_cpu.group_norm(groups, &g_cpu, &b_cpu, 1e-5).unwrap();
                let fg = x_gpu.group_norm(groups, &g_gpu, &b_gpu, 1e-5).unwrap();
                close("group_norm y", &fg.0, &fc.0, 1e-4, 1e-4)?;
                close("group_norm mean", &fg.1, &fc.1, 1e-5, 1e-5)?;
                close("group_norm rstd", &fg.2, &fc.2, 1e-5, 1e-4)?;
                let bc = dy_cpu
                    .group_norm_backward(&x_cpu, &g_cpu, (&fc.1, &fc.2), groups)
                    .unwrap();
                let bg = dy_gpu
                    .group_norm_backward(&x_gpu, &g_gpu, (&fg.1, &fg.2), groups)
                    .unwrap();
                close("group_norm dx", &bg.0, &bc.0, 1e-4, 1e-4)?;
                close("group_norm dgamma", &bg.1, &bc.1, 1e-4, 1e-4)?;
                close("group_norm dbeta", &bg.2, &bc.2, 1e-4, 1e-4)?;

                // layer norm over the last dimension of [n·c, spatial]
                let rows = [n * c, spatial];
                let (lx_cpu, lx_gpu) =
                    (x_cpu.reshape(&rows).unwrap(), x_gpu.reshape(&rows).unwrap());
                let (lg_cpu, lg_gpu) = pair(&[spatial], seed ^ 4);
                let (lb_cpu, lb_gpu) = pair(&[spatial], seed ^ 5);
                let lc = lx_cpu.layer_norm(&lg_cpu, &lb_cpu, 1e-5).unwrap();
                let lgpu = lx_gpu.layer_norm(&lg_gpu, &lb_gpu, 1e-5).unwrap();
                close("layer_norm y", &lgpu.0, &lc.0, 1e-4, 1e-4)?;
                let (ldy_cpu, ldy_gpu) = (
                    dy_cpu.reshape(&rows).unwrap(),
                    dy_gpu.reshape(&rows).unwrap(),
                );
                let bc = ldy_cpu
                    .layer_norm_backward(&lx_cpu, &lg_cpu, (&lc.1, &lc.2))
                    .unwrap();
                let bg = ldy_gpu
                    .layer_norm_backward(&lx_gpu, &lg_gpu, (&lgpu.1, &lgpu.2))
                    .unwrap();
                close("layer_norm dx", &bg.0, &bc.0, 1e-4, 1e-4)?;
                close("layer_norm dgamma", &bg.1, &bc.1, 1e-4, 1e-4)?;
                close("layer_norm dbeta", &bg.2, &bc.2, 1e-4, 1e-4)
            },
        )
        .unwrap();
}

/// The fused group norm + SiLU (the forward kernel's SiLU flag; `group_norm_silu_backward_dz` and group norm's two
/// backward kernels) against the CPU's fused kernel. Tolerances as group norm's above: f32 sums over a group of at
/// most 3·30 elements in a different order, and SiLU's slope is at most 1.1.
fn group_norm_silu_matches_the_cpu_forward_and_backward(_: &Device) {
    poison_the_allocator();
    runner()
        .run(
            // spatial 1..30 reaches both the scalar and the float4 forward path (spatial % 4 == 0)
            &(1usize..3, 1usize..4, 1usize..4, 1usize..30, any::<u64>()),
            |(n, groups, per_group, spatial, seed)| {
                let c = groups * per_group;
                let (x_cpu, x_gpu) = pair(&[n, c, spatial], seed);
                let (g_cpu, g_gpu) = pair(&[c], seed ^ 1);
                let (b_cpu, b_gpu) = pair(&[c], seed ^ 2);
                let (dy_cpu, dy_gpu) = pair(&[n, c, spatial], seed ^ 3);
                let fc = x_cpu.group_norm_silu(groups, &g_cpu, &b_cpu, 1e-5).unwrap();
                let fg = x_gpu.group_norm_silu(groups, &g_gpu, &b_gpu, 1e-5).unwrap();
                close("group_norm_silu y", &fg.0, &fc.0, 1e-4, 1e-4)?;
                close("group_norm_silu mean", &fg.1, &fc.1, 1e-5, 1e-5)?;
                close("group_norm_silu rstd", &fg.2, &fc.2, 1e-5, 1e-4)?;
                let bc = dy_cpu
                    .group_norm_silu_backward(&x_cpu, (&g_cpu, &b_cpu), (&fc.1, &fc.2), groups)
                    .unwrap();
                let bg = dy_gpu
                    .group_norm_silu_backward(&x_gpu, (&g_gpu, &b_gpu), (&fg.1, &fg.2), groups)
                    .unwrap();
                close("group_norm_silu dx", &bg.0, &bc.0, 1e-4, 1e-4)?;
                close("group_norm_silu dgamma", &bg.1, &bc.1, 1e-4, 1e-4)?;
                close("group_norm_silu dbeta", &bg.2, &bc.2, 1e-4, 1e-4)
            },
        )
        .unwrap();
}

fn attention_forward_matches_the_cpu(_: &Device) {
    poison_the_allocator();
    runner()
        .run(
            &(1usize..4, 1usize..40, 1usize..40, 1usize..65, any::<u64>()),
            |(bh, lq, lk, d, seed)| {
                let (q_cpu, q_gpu) = pair(&[bh, lq, d], seed);
                let (k_cpu, k_gpu) = pair(&[bh, lk, d], seed ^ 1);
                let (v_cpu, v_gpu) = pair(&[bh, lk, d], seed ^ 2);
                let scale = 1.0 / (d as f32).sqrt();
                let (o_cpu, lse_cpu) = q_cpu.attention(&k_cpu, &v_cpu, 1, scale).unwrap();
                let (o_gpu, lse_gpu) = q_gpu.attention(&k_gpu, &v_gpu, 1, scale).unwrap();
                close("attention out", &o_gpu, &o_cpu, 1e-4, 1e-4)?;
                close("attention lse", &lse_gpu, &lse_cpu, 1e-4, 1e-5)
            },
        )
        .unwrap();
}

fn attention_backward_matches_the_cpu(_: &Device) {
    poison_the_allocator();
    runner()
        .run(
            &(1usize..4, 1usize..40, 1usize..40, 1usize..65, any::<u64>()),
            |(bh, lq, lk, d, seed)| {
                let (q_cpu, q_gpu) = pair(&[bh, lq, d], seed);
                let (k_cpu, k_gpu) = pair(&[bh, lk, d], seed ^ 1);
                let (v_cpu, v_gpu) = pair(&[bh, lk, d], seed ^ 2);
                let (go_cpu, go_gpu) = pair(&[bh, lq, d], seed ^ 3);
                let scale = 1.0 / (d as f32).sqrt();
                let (o_cpu, lse_cpu) = q_cpu.attention(&k_cpu, &v_cpu, 1, scale).unwrap();
                let (o_gpu, lse_gpu) = q_gpu.attention(&k_gpu, &v_gpu, 1, scale).unwrap();
                let c = go_cpu
                    .attention_backward((&q_cpu, &k_cpu, &v_cpu), (&o_cpu, &lse_cpu), 1, scale)
                    .unwrap();
                let g = go_gpu
                    .attention_backward((&q_gpu, &k_gpu, &v_gpu), (&o_gpu, &lse_gpu), 1, scale)
                    .unwrap();
                // Each gradient sums over up to max(lq, lk) rows of products of d-long dot products.
                let tol = 2e-6 * 9.0 * ((lq.max(lk) * d) as f64 + 1.0);
                close("attention dq", &g.0, &c.0, tol, 1e-4)?;
                close("attention dk", &g.1, &c.1, tol, 1e-4)?;
                close("attention dv", &g.2, &c.2, tol, 1e-4)
            },
        )
        .unwrap();
}

/// A causal score bias `[len, len]` (0 where key j ≤ query i, −∞ above) on the CPU and on the GPU.
fn causal_bias_pair(len: usize) -> (Tensor, Tensor) {
    let values: Vec<f32> = (0..len * len)
        .map(|i| {
            if i % len > i / len {
                f32::NEG_INFINITY
            } else {
                0.0
            }
        })
        .collect();
    let cpu = Tensor::from_vec(values, &[len, len], Device::Cpu).unwrap();
    let gpu = cpu.to_device(GPU).unwrap();
    (cpu, gpu)
}

fn attention_with_a_causal_bias_matches_the_cpu_forward_and_backward(_: &Device) {
    poison_the_allocator();
    runner()
        .run(
            &(1usize..4, 1usize..40, 1usize..65, any::<u64>()),
            |(bh, len, d, seed)| {
                let (q_cpu, q_gpu) = pair(&[bh, len, d], seed);
                let (k_cpu, k_gpu) = pair(&[bh, len, d], seed ^ 1);
                let (v_cpu, v_gpu) = pair(&[bh, len, d], seed ^ 2);
                let (go_cpu, go_gpu) = pair(&[bh, len, d], seed ^ 3);
                let (b_cpu, b_gpu) = causal_bias_pair(len);
                let scale = 1.0 / (d as f32).sqrt();
                let (o_cpu, lse_cpu) = q_cpu
                    .attention_with_bias(&k_cpu, &v_cpu, Some(&b_cpu), 1, scale)
                    .unwrap();
                let (o_gpu, lse_gpu) = q_gpu
                    .attention_with_bias(&k_gpu, &v_gpu, Some(&b_gpu), 1, scale)
                    .unwrap();
                close("causal attention out", &o_gpu, &o_cpu, 1e-4, 1e-4)?;
                close("causal attention lse", &lse_gpu, &lse_cpu, 1e-4, 1e-5)?;
                let c = go_cpu
                    .attention_with_bias_backward(
                        (&q_cpu, &k_cpu, &v_cpu),
                        (&o_cpu, &lse_cpu),
                        Some(&b_cpu),
                        1,
                        scale,
                    )
                    .unwrap();
                let g = go_gpu
                    .attention_with_bias_backward(
                        (&q_gpu, &k_gpu, &v_gpu),
                        (&o_gpu, &lse_gpu),
                        Some(&b_gpu),
                        1,
                        scale,
                    )
                    .unwrap();
                // As the unmasked backward: sums over up to `len` rows of d-long dot products.
                let tol = 2e-6 * 9.0 * ((len * d) as f64 + 1.0);
                close("causal attention dq", &g.0, &c.0, tol, 1e-4)?;
                close("causal attention dk", &g.1, &c.1, tol, 1e-4)?;
                close("causal attention dv", &g.2, &c.2, tol, 1e-4)
            },
        )
        .unwrap();
}

// ---- noise, optimiser ---------------------------------------------------------------------------------------------

fn q_sample_and_sampler_step_match_the_cpu(_: &Device) {
    poison_the_allocator();
    use diffuse_cpu_kernels::noise::StepCoefficients;
    runner()
        .run(
            &(1usize..4, 1usize..300, any::<u64>()),
            |(batch, per, seed)| {
                let (x_cpu, x_gpu) = pair(&[batch, per], seed);
                let sa: Vec<f32> = (0..batch).map(|b| 0.9 - 0.2 * b as f32).collect();
                let sb: Vec<f32> = sa.iter().map(|a| (1.0 - a * a).sqrt()).collect();
                let (xt_cpu, eps_cpu) = x_cpu.q_sample(&sa, &sb, seed, 17).unwrap();
                let (xt_gpu, eps_gpu) = x_gpu.q_sample(&sa, &sb, seed, 17).unwrap();
                close("q_sample eps", &eps_gpu, &eps_cpu, 1e-5, 1e-5)?;
                close("q_sample x_t", &xt_gpu, &xt_cpu, 1e-5, 1e-5)?;
                let coef: Vec<StepCoefficients> = (0..batch)
                    .map(|b| StepCoefficients {
                        x0_from_xt: 1.1 + 0.1 * b as f32,
                        x0_from_model: -0.4,
                        mean_from_x0: 0.3,
                        mean_from_xt: 0.7,
                        sigma: 0.05 * b as f32,
                    })
                    .collect();
                let (m_cpu, m_gpu) = pair(&[batch, per], seed ^ 1);
                for clip in [None, Some(1.0)] {
                    let (p_cpu, h_cpu) = x_cpu.sampler_step(&m_cpu, &coef, clip, seed, 3).unwrap();
                    let (p_gpu, h_gpu) = x_gpu.sampler_step(&m_gpu, &coef, clip, seed, 3).unwrap();
                    close("sampler_step x0_hat", &h_gpu, &h_cpu, 1e-5, 1e-5)?;
                    close("sampler_step x_prev", &p_gpu, &p_cpu, 1e-5, 1e-5)?;
                }
                let err = x_gpu
                    .sampler_step(&m_gpu, &coef, Some(2.0), seed, 3)
                    .map(|_| ())
                    .unwrap_err();
                prop_assert!(err.to_string().contains("clip"), "{}", err);
                Ok(())
            },
        )
        .unwrap();
}

fn adamw_step_updates_gpu_parameters_like_the_cpu(_: &Device) {
    poison_the_allocator();
    let cfg = AdamWConfig {
        lr: 1e-2,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.1,
    };
    runner()
        .run(&(1usize..600, any::<u64>()), |(len, seed)| {
            let (p_cpu, p_gpu) = pair(&[len], seed);
            let (m_cpu, m_gpu) = pair(&[len], seed ^ 1);
            let (v_cpu, v_gpu) = pair(&[len], seed ^ 2);
            let (v_cpu, v_gpu) = (v_cpu.abs().unwrap(), v_gpu.abs().unwrap());
            for step in 1..4 {
                let (g_cpu, g_gpu) = pair(&[len], seed ^ (step + 10));
                p_cpu
                    .adamw_step(&g_cpu, &m_cpu, &v_cpu, &cfg, step)
                    .unwrap();
                p_gpu
                    .adamw_step(&g_gpu, &m_gpu, &v_gpu, &cfg, step)
                    .unwrap();
            }
            close("adamw m", &m_gpu, &m_cpu, 1e-6, 1e-6)?;
            close("adamw v", &v_gpu, &v_cpu, 1e-6, 1e-6)?;
            close("adamw param", &p_gpu, &p_cpu, 1e-6, 1e-5)
        })
        .unwrap();
}

// ---- empty tensors ------------------------------------------------------------------------------------------------

fn empty_tensors_move_and_compute_on_the_gpu(_: &Device) {
    poison_the_allocator();
    // an empty tensor's storage owns no device memory; every operation on it is a no-op or an empty sum
    let empty = Tensor::zeros(&[0, 3], DType::F32, GPU).unwrap();
    assert_eq!(
        (empty.shape(), empty.to_vec().unwrap()),
        (&[0usize, 3][..], vec![])
    );
    let moved = Tensor::from_vec(vec![], &[2, 0], Device::Cpu)
        .unwrap()
        .to_device(GPU)
        .unwrap();
    assert_eq!(moved.device(), GPU);
    assert_eq!(
        empty.add(&empty).unwrap().to_vec().unwrap(),
        Vec::<f32>::new()
    );
    // [3, 0] · [0, 2]: every entry is the empty sum
    let (a, b) = (
        Tensor::zeros(&[3, 0], DType::F32, GPU).unwrap(),
        Tensor::zeros(&[0, 2], DType::F32, GPU).unwrap(),
    );
    assert_eq!(a.matmul(&b).unwrap().to_vec().unwrap(), vec![0.0; 6]);
    assert_eq!(
        empty.sum(&[0], false).unwrap().to_vec().unwrap(),
        vec![0.0; 3]
    );
}

// ---- errors -------------------------------------------------------------------------------------------------------

fn mixed_devices_and_half_precision_on_the_gpu_are_errors_that_say_so(_: &Device) {
    poison_the_allocator();
    let (cpu, gpu) = pair(&[2, 3], draw(any::<u64>(), 1));
    let err = cpu.add(&gpu).unwrap_err().to_string();
    assert!(err.contains("cpu") && err.contains("cuda:0"), "{err}");
    let err = Tensor::concat(&[&cpu, &gpu], 0).unwrap_err().to_string();
    assert!(err.contains("cpu") && err.contains("cuda:0"), "{err}");
    let err = Tensor::zeros(&[2], DType::BF16, GPU)
        .unwrap_err()
        .to_string();
    assert!(err.contains("cuda:0") && err.contains("f32 only"), "{err}");
    let err = cpu
        .to_dtype(DType::F16)
        .unwrap()
        .to_device(GPU)
        .unwrap_err()
        .to_string();
    assert!(err.contains("f32 only"), "{err}");
}

fn main() {
    let tests = diffuse_gpu_test::on_gpu![
        to_device_and_back_returns_every_view_bit_for_bit,
        creation_functions_fill_the_same_values_on_the_gpu,
        assign_writes_a_view_into_a_gpu_tensor,
        unary_maps_on_gpu_views_match_the_cpu,
        binary_maps_broadcast_gpu_views_like_the_cpu,
        where_select_with_a_broadcast_condition_matches_the_cpu,
        reductions_over_any_dimension_match_the_cpu,
        softmax_and_its_backward_match_the_cpu,
        concat_stack_and_index_ops_move_the_same_elements,
        upsampling_and_its_backward_match_the_cpu,
        batched_matmul_of_transposed_broadcast_operands_matches_the_cpu,
        bf16_matmul_is_within_the_bf16_bound_of_the_f32_product,
        matmul_bias_matches_the_cpu_in_f32_and_bf16,
        geglu_matches_the_cpu_forward_and_backward,
        bf16_conv2d_is_within_the_bf16_bound_and_grouped_ones_stay_f32,
        conv2d_forward_matches_the_cpu_on_awkward_shapes,
        group_norm_and_layer_norm_match_the_cpu_forward_and_backward,
        group_norm_silu_matches_the_cpu_forward_and_backward,
        attention_forward_matches_the_cpu,
        attention_backward_matches_the_cpu,
        attention_with_a_causal_bias_matches_the_cpu_forward_and_backward,
        q_sample_and_sampler_step_match_the_cpu,
        adamw_step_updates_gpu_parameters_like_the_cpu,
        empty_tensors_move_and_compute_on_the_gpu,
        mixed_devices_and_half_precision_on_the_gpu_are_errors_that_say_so,
    ];
    diffuse_gpu_test::run(open_cuda0, tests);
}
