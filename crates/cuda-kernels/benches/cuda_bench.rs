//! Times each kernel with CUDA events (3 warm-up runs, median of 20) and prints its achieved bandwidth (GB/s) or
//! throughput (TFLOP/s), with bandwidth-bound kernels also as a fraction of the measured device-to-device copy
//! bandwidth (the practical ceiling of a streaming kernel on this device).
//!
//! Bytes counted are the ideal DRAM traffic (each input read once, each output written once); kernels that re-read
//! (softmax, group norm) can therefore show less than their true traffic. Every buffer starts as standard normal
//! values (Philox), never zeros, which can run faster than real data.
//!
//! Run: `cargo bench -p diffuse-cuda-kernels --bench cuda_bench`. The shapes match `benches/peers/torch_cuda.py`.
//! Without a CUDA driver it prints why and exits 0; with a driver, anything that stops it (no device, a context
//! that cannot be created, a PTX module that does not JIT, a failed launch) exits 1 with the driver's message.

use cudarc::driver::sys::CUevent_flags;
use cudarc::driver::CudaSlice;
use diffuse_cuda_kernels::adamw::{adamw_step, AdamWConfig};
use diffuse_cuda_kernels::attention::{attention_forward, AttentionShape};
use diffuse_cuda_kernels::attention_backward::attention_backward;
use diffuse_cuda_kernels::conv::{conv2d_forward, Conv2dShape};
use diffuse_cuda_kernels::conv_backward::{conv2d_backward_input, conv2d_backward_weight};
use diffuse_cuda_kernels::conv_bf16::{
    conv2d_backward_input_bf16, conv2d_backward_weight_bf16, conv2d_forward_bf16, Plan,
};
use diffuse_cuda_kernels::elementwise::{binary, copy_strided, unary, BinaryOp, Operand, UnaryOp};
use diffuse_cuda_kernels::gemm::{gemm_bf16, sgemm, MatrixLayout};
use diffuse_cuda_kernels::group_norm::{group_norm_forward, GroupNormShape};
use diffuse_cuda_kernels::noise::{pack_coefficients, q_sample, sampler_step, StepCoefficients};
use diffuse_cuda_kernels::open_error::driver_library_present;
use diffuse_cuda_kernels::pack_bf16::pack_bf16;
use diffuse_cuda_kernels::philox::fill_normal;
use diffuse_cuda_kernels::reduce::row_sum;
use diffuse_cuda_kernels::softmax::softmax;
use diffuse_cuda_kernels::{DeviceBuffer, Gpu, KernelError, Result};
use std::sync::atomic::{AtomicU64, Ordering};

const WARMUP: usize = 3;
const RUNS: usize = 20;

/// Median time of `work` in milliseconds, measured with events on the handle's stream.
fn median_ms(gpu: &Gpu, mut work: impl FnMut() -> Result<()>) -> Result<f64> {
    let event = || {
        gpu.context()
            .new_event(Some(CUevent_flags::CU_EVENT_DEFAULT))
            .map_err(|e| KernelError::new("bench", format!("creating an event: {e}")))
    };
    for _ in 0..WARMUP {
        work()?;
    }
    let mut times = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let (start, end) = (event()?, event()?);
        let record = |e: &cudarc::driver::CudaEvent| {
            e.record(gpu.stream())
                .map_err(|err| KernelError::new("bench", format!("recording: {err}")))
        };
        record(&start)?;
        work()?;
        record(&end)?;
        let ms = start
            .elapsed_ms(&end)
            .map_err(|e| KernelError::new("bench", format!("timing: {e}")))?;
        times.push(f64::from(ms));
    }
    times.sort_by(f64::total_cmp);
    Ok(times[RUNS / 2])
}

/// `len` standard normal values, from a new Philox seed for every buffer.
fn buffer(gpu: &Gpu, len: usize) -> Result<DeviceBuffer> {
    static SEED: AtomicU64 = AtomicU64::new(1);
    let mut out = DeviceBuffer::zeros(gpu, len)?;
    fill_normal(gpu, SEED.fetch_add(1, Ordering::Relaxed), 0, &mut out)?;
    Ok(out)
}

/// `len` bf16 values uniform in [-1, 1) (a SplitMix64 stream on the host; there is no bf16 fill kernel).
fn bf16_buffer(gpu: &Gpu, len: usize, seed: u64) -> Result<CudaSlice<half::bf16>> {
    let mut state = seed;
    let host: Vec<half::bf16> = (0..len)
        .map(|_| {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            half::bf16::from_f32((z >> 40) as f32 / (1u64 << 23) as f32 - 1.0)
        })
        .collect();
    gpu.stream()
        .clone_htod(&host)
        .map_err(|e| KernelError::new("bench", format!("copying bf16 inputs: {e}")))
}

fn report_bandwidth(name: &str, shape: &str, ms: f64, bytes: f64, copy_gbs: f64) {
    let gbs = bytes / ms / 1e6;
    println!(
        "{name:<22} {shape:<26} {ms:>9.3} ms {gbs:>9.1} GB/s  {:>5.1}% of copy",
        100.0 * gbs / copy_gbs
    );
}

fn run(gpu: &Gpu) -> Result<()> {
    let n = 1usize << 26; // 64 Mi floats, 256 MiB per buffer
    let (x, mut y, mut z) = (buffer(gpu, n)?, buffer(gpu, n)?, buffer(gpu, n)?);

    let copy_ms = median_ms(gpu, || {
        gpu.stream()
            .memcpy_dtod(&x, &mut y)
            .map_err(|e| KernelError::new("bench", format!("copy: {e}")))
    })?;
    let copy_gbs = 8.0 * n as f64 / copy_ms / 1e6;
    println!(
        "device-to-device copy of 256 MiB: {copy_ms:.3} ms, {copy_gbs:.1} GB/s (read + write)"
    );
    let nf = n as f64;

    let ms = median_ms(gpu, || fill_normal(gpu, 7, 0, &mut y))?;
    report_bandwidth("fill_normal", "[64Mi]", ms, 4.0 * nf, copy_gbs);

    let contiguous = [1isize];
    let ms = median_ms(gpu, || {
        unary(
            gpu,
            UnaryOp::Gelu,
            &[n],
            &x,
            Operand::new(&contiguous, 0),
            &mut y,
        )
    })?;
    report_bandwidth("unary gelu", "[64Mi]", ms, 8.0 * nf, copy_gbs);

    // x [16, 256, 16384] + bias [1, 256, 1]
    let shape = [16usize, 256, 16384];
    let bias = buffer(gpu, 256)?;
    let ms = median_ms(gpu, || {
        binary(
            gpu,
            BinaryOp::Add,
            &shape,
            &x,
            Operand::new(&[256 * 16384, 16384, 1], 0),
            &bias,
            Operand::new(&[0, 1, 0], 0),
            &mut y,
        )
    })?;
    report_bandwidth(
        "binary add broadcast",
        "[16,256,16384]+[256]",
        ms,
        8.0 * nf,
        copy_gbs,
    );

    let ms = median_ms(gpu, || {
        copy_strided(gpu, &[8192, 8192], &x, Operand::new(&[1, 8192], 0), &mut y)
    })?;
    report_bandwidth(
        "copy_strided transpose",
        "[8192,8192]^T",
        ms,
        8.0 * nf,
        copy_gbs,
    );

    let batch = 16;
    let (sa, sb) = (buffer(gpu, batch)?, buffer(gpu, batch)?);
    let ms = median_ms(gpu, || q_sample(gpu, &x, &sa, &sb, 3, 0, &mut y, &mut z))?;
    report_bandwidth("q_sample", "[16,4Mi]", ms, 12.0 * nf, copy_gbs);

    let coef = gpu
        .stream()
        .clone_htod(&pack_coefficients(&vec![
            StepCoefficients::default();
            batch
        ]))
        .map_err(|e| KernelError::new("bench", format!("upload: {e}")))?;
    let mut w = buffer(gpu, n)?;
    let ms = median_ms(gpu, || {
        sampler_step(gpu, &x, &z, &coef, true, 3, 0, &mut y, &mut w)
    })?;
    report_bandwidth("sampler_step", "[16,4Mi]", ms, 16.0 * nf, copy_gbs);

    let cfg = AdamWConfig {
        lr: 1e-3,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 1e-2,
    };
    // the moments start at zero, as in training (the second must stay non-negative)
    let zero = |b: &mut DeviceBuffer| {
        gpu.stream()
            .memset_zeros(b)
            .map_err(|e| KernelError::new("bench", format!("zeroing: {e}")))
    };
    zero(&mut z)?;
    zero(&mut w)?;
    let mut step = 0;
    let ms = median_ms(gpu, || {
        step += 1;
        adamw_step(gpu, &cfg, step, &mut y, &x, &mut z, &mut w)
    })?;
    report_bandwidth("adamw_step", "[64Mi]", ms, 28.0 * nf, copy_gbs);

    let (rows, cols) = (16384usize, 4096usize);
    let mut sums = buffer(gpu, rows)?;
    let ms = median_ms(gpu, || row_sum(gpu, rows, cols, &x, &mut sums))?;
    report_bandwidth("row_sum", "[16384,4096]", ms, 4.0 * nf, copy_gbs);

    let ms = median_ms(gpu, || softmax(gpu, rows, cols, &x, &mut y))?;
    report_bandwidth("softmax", "[16384,4096]", ms, 8.0 * nf, copy_gbs);

    let gn = GroupNormShape {
        batch: 16,
        channels: 256,
        spatial: 16384,
        groups: 32,
        eps: 1e-5,
    };
    let (gamma, beta) = (buffer(gpu, 256)?, buffer(gpu, 256)?);
    let (mut mean, mut rstd) = (buffer(gpu, 16 * 32)?, buffer(gpu, 16 * 32)?);
    let ms = median_ms(gpu, || {
        group_norm_forward(gpu, &gn, &x, &gamma, &beta, &mut y, &mut mean, &mut rstd)
    })?;
    report_bandwidth(
        "group_norm_forward",
        "[16,256,16384] g=32",
        ms,
        8.0 * nf,
        copy_gbs,
    );

    let s = 4096usize;
    let (a, b, mut c) = (
        buffer(gpu, s * s)?,
        buffer(gpu, s * s)?,
        buffer(gpu, s * s)?,
    );
    let ms = median_ms(gpu, || {
        sgemm(
            gpu,
            s,
            s,
            s,
            1.0,
            &a,
            MatrixLayout::row_major(s),
            &b,
            MatrixLayout::row_major(s),
            0.0,
            &mut c,
        )
    })?;
    let tflops = 2.0 * (s as f64).powi(3) / ms / 1e9;
    println!(
        "{:<22} {:<26} {ms:>9.3} ms {tflops:>9.2} TFLOP/s",
        "sgemm", "4096^3"
    );

    let (a16, b16) = (bf16_buffer(gpu, s * s, 1)?, bf16_buffer(gpu, s * s, 2)?);
    let ms = median_ms(gpu, || {
        gemm_bf16(gpu, s, s, s, 1.0, &a16, &b16, 0.0, &mut c)
    })?;
    let tflops = 2.0 * (s as f64).powi(3) / ms / 1e9;
    println!(
        "{:<22} {:<26} {ms:>9.3} ms {tflops:>9.2} TFLOP/s",
        "gemm_bf16 (f32 acc)", "4096^3"
    );

    // rounding an f32 operand of the bf16 matmul: read 4 bytes, write 2 per element
    let mut packed = bf16_buffer(gpu, s * s, 3)?;
    let ms = median_ms(gpu, || {
        pack_bf16(gpu, &a, s, s, MatrixLayout::row_major(s), s, s, &mut packed)
    })?;
    report_bandwidth(
        "pack_bf16",
        "[4096,4096]",
        ms,
        6.0 * (s * s) as f64,
        copy_gbs,
    );

    // a UNet-sized 3x3 convolution: [8, 256, 64, 64] -> [8, 256, 64, 64]
    let cs = Conv2dShape {
        batch: 8,
        in_channels: 256,
        in_h: 64,
        in_w: 64,
        out_channels: 256,
        kernel_h: 3,
        kernel_w: 3,
        stride: 1,
        padding: 1,
        dilation: 1,
        groups: 1,
    };
    let (cx, cw, cb) = (
        buffer(gpu, 8 * 256 * 64 * 64)?,
        buffer(gpu, 256 * 256 * 9)?,
        buffer(gpu, 256)?,
    );
    let mut cy = buffer(gpu, 8 * 256 * 64 * 64)?;
    let ms = median_ms(gpu, || {
        conv2d_forward(gpu, &cs, &cx, &cw, Some(&cb), &mut cy)
    })?;
    let tflops = 2.0 * (8.0 * 256.0 * 64.0 * 64.0) * (256.0 * 9.0) / ms / 1e9;
    println!(
        "{:<22} {:<26} {ms:>9.3} ms {tflops:>9.2} TFLOP/s",
        "conv2d_forward 3x3", "[8,256,64,64]"
    );

    // self-attention of a 32x32 feature map: [8 batch x 8 heads, 1024 tokens, 64]
    let at = AttentionShape::dense(64, 1, 1024, 1024, 64, 0.125);
    let qkv_len = 64 * 1024 * 64;
    let (aq, ak, av) = (
        buffer(gpu, qkv_len)?,
        buffer(gpu, qkv_len)?,
        buffer(gpu, qkv_len)?,
    );
    let (mut ao, mut alse) = (buffer(gpu, qkv_len)?, buffer(gpu, 64 * 1024)?);
    let ms = median_ms(gpu, || {
        attention_forward(
            gpu,
            &at,
            &aq,
            &ak,
            &av,
            None::<&CudaSlice<f32>>,
            &mut ao,
            &mut alse,
        )
    })?;
    let tflops = 4.0 * 64.0 * 1024.0 * 1024.0 * 64.0 / ms / 1e9;
    println!(
        "{:<22} {:<26} {ms:>9.3} ms {tflops:>9.2} TFLOP/s",
        "attention_forward", "[64,1024,1024,64]"
    );
    backward_kernels(gpu)
}

/// The U-Net's convolutions at batch 128 (fashion-base's 3x3 levels and stride-2 downsampler, ddpm-cifar10's first
/// two levels): forward, backward to the input, backward to the weight (with bias), as `name [B,C,H,W]->OC`, in f32
/// and in bf16 (`conv bf16 ...`).
const UNET_CONVS: [(&str, usize, usize, usize, usize, usize); 5] = [
    ("fashion 3x3", 128, 64, 28, 64, 1),
    ("fashion 3x3", 128, 128, 14, 128, 1),
    ("fashion down s2", 128, 64, 28, 64, 2),
    ("cifar 3x3", 128, 128, 32, 128, 1),
    ("cifar 3x3", 128, 256, 16, 256, 1),
];

/// Attention shapes `(batch_heads, length, head_dim)`: fashion-base's 14x14 level (batch 128 x 4 heads of 32), and
/// L = 256, 1024, 4096 at head_dim 64.
const ATTENTION: [(usize, usize, usize); 4] = [
    (512, 196, 32),
    (512, 256, 64),
    (64, 1024, 64),
    (8, 4096, 64),
];

fn backward_kernels(gpu: &Gpu) -> Result<()> {
    for (name, batch, channels, size, out_channels, stride) in UNET_CONVS {
        let s = Conv2dShape {
            batch,
            in_channels: channels,
            in_h: size,
            in_w: size,
            out_channels,
            kernel_h: 3,
            kernel_w: 3,
            stride,
            padding: 1,
            dilation: 1,
            groups: 1,
        };
        let (oh, ow) = s.output_hw().expect("valid U-Net shape");
        let (x, w, b) = (
            buffer(gpu, batch * channels * size * size)?,
            buffer(gpu, out_channels * channels * 9)?,
            buffer(gpu, out_channels)?,
        );
        let (mut y, mut dx) = (
            buffer(gpu, batch * out_channels * oh * ow)?,
            buffer(gpu, x.len())?,
        );
        let (mut dw, mut db) = (buffer(gpu, w.len())?, buffer(gpu, out_channels)?);
        // the useful multiply-adds of each of the three passes
        let flop = 2.0 * (batch * out_channels * oh * ow * channels * 9) as f64;
        let label = format!("[{batch},{channels},{size},{size}]->{out_channels}");
        let report = |pass: &str, ms: f64| {
            println!(
                "{:<22} {label:<26} {ms:>9.3} ms {:>9.2} TFLOP/s",
                format!("conv {pass} {name}"),
                flop / ms / 1e9
            );
        };
        report(
            "fwd",
            median_ms(gpu, || conv2d_forward(gpu, &s, &x, &w, Some(&b), &mut y))?,
        );
        report(
            "bwd-in",
            median_ms(gpu, || conv2d_backward_input(gpu, &s, &y, &w, &mut dx))?,
        );
        report(
            "bwd-w",
            median_ms(gpu, || {
                conv2d_backward_weight(gpu, &s, &x, &y, &mut dw, Some(&mut db))
            })?,
        );
        // the same passes in bf16 (conv_bf16: pack / im2col_bf16, gemm_bf16, col2im), f32 in and out
        let plan = Plan::new("bench", &s)?;
        report(
            "bf16 fwd",
            median_ms(gpu, || {
                conv2d_forward_bf16(
                    gpu,
                    &plan,
                    &x.view(),
                    &w.view(),
                    Some(&b.view()),
                    &mut y.view_mut(),
                )
            })?,
        );
        report(
            "bf16 bwd-in",
            median_ms(gpu, || {
                conv2d_backward_input_bf16(gpu, &plan, &y.view(), &w.view(), &mut dx.view_mut())
            })?,
        );
        report(
            "bf16 bwd-w",
            median_ms(gpu, || {
                let mut db_view = db.view_mut();
                conv2d_backward_weight_bf16(
                    gpu,
                    &plan,
                    &x.view(),
                    &y.view(),
                    &mut dw.view_mut(),
                    Some(&mut db_view),
                )
            })?,
        );
    }
    for (batch_heads, len, head_dim) in ATTENTION {
        let s = AttentionShape::dense(
            batch_heads,
            1,
            len,
            len,
            head_dim,
            1.0 / (head_dim as f32).sqrt(),
        );
        let elems = batch_heads * len * head_dim;
        let (q, k, v, g) = (
            buffer(gpu, elems)?,
            buffer(gpu, elems)?,
            buffer(gpu, elems)?,
            buffer(gpu, elems)?,
        );
        let (mut out, mut lse) = (buffer(gpu, elems)?, buffer(gpu, batch_heads * len)?);
        let (mut dq, mut dk, mut dv) = (
            buffer(gpu, elems)?,
            buffer(gpu, elems)?,
            buffer(gpu, elems)?,
        );
        let none = None::<&CudaSlice<f32>>;
        let label = format!("[{batch_heads},{len},{len},{head_dim}]");
        // FlashAttention's counts: forward 2 matrix products (4 BH L^2 d), backward 5 (10 BH L^2 d)
        let pairs = (batch_heads * len * len * head_dim) as f64;
        let ms = median_ms(gpu, || {
            attention_forward(gpu, &s, &q, &k, &v, none, &mut out, &mut lse)
        })?;
        println!(
            "{:<22} {label:<26} {ms:>9.3} ms {:>9.2} TFLOP/s",
            "attention fwd",
            4.0 * pairs / ms / 1e9
        );
        let ms = median_ms(gpu, || {
            attention_backward(
                gpu, &s, &q, &k, &v, none, &out, &lse, &g, &mut dq, &mut dk, &mut dv,
            )
        })?;
        println!(
            "{:<22} {label:<26} {ms:>9.3} ms {:>9.2} TFLOP/s",
            "attention bwd",
            10.0 * pairs / ms / 1e9
        );
    }
    Ok(())
}

fn main() {
    let gpu = match Gpu::new(0) {
        Ok(gpu) => gpu,
        Err(err) if !driver_library_present() => {
            eprintln!("cuda_bench: nothing to time: {err}");
            return;
        }
        Err(err) => {
            eprintln!("cuda_bench: cannot run on device 0: {err}");
            std::process::exit(1);
        }
    };
    let limits = gpu.limits();
    println!(
        "device 0: {}, sm_{}{}, {} SMs",
        gpu.name(),
        limits.compute_capability.0,
        limits.compute_capability.1,
        limits.multiprocessors
    );
    if let Err(err) = run(&gpu) {
        eprintln!("cuda_bench: {err}");
        std::process::exit(1);
    }
}
