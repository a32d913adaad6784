//! The per-sample MSE kernels (`sample_mse.ptx`) held against their CPU twins in `diffuse-cpu-kernels`, over random
//! shapes that include batch 1, samples of one element, lengths off every multiple of the warp and of the 256-thread
//! block, and the training loss's own shape (64 samples of 28×28).
//!
//! Tolerances (|gpu − cpu| ≤ abs + rel·|cpu|): the CPU sums the squared differences in f64 and rounds once; the GPU
//! rounds each difference and each of a thread's len/256 fused multiply-adds, then 5 butterfly levels and up to 8
//! warp partials in f32, so its relative error is at most (len/256 + 16)·2⁻²⁴ of the sum of non-negative terms
//! (which is the result: no cancellation). The backward is three correctly rounded operations on each side (the CPU
//! forms 2g/len in f64 and rounds it once, the GPU divides the exact 2g by len in f32): one ulp of difference in the
//! factor at most, so 4 ulps of the result.
//!
//! The tests run under `diffuse-gpu-test`'s harness: without a CUDA driver or device each is reported ignored, with
//! the reason; on a device that cannot run the kernels each fails with the driver's message.
//! `scripts/ptxsim/check_kernels.py sample_mse` runs the same PTX in the interpreter where there is no GPU.

mod common;

use common::{download, runner, upload, xorshift_values, zeros};

use diffuse_cpu_kernels::sample_mse as cpu_mse;
use diffuse_cuda_kernels::sample_mse::{sample_mse_backward, sample_mse_forward, SampleShape};
use diffuse_cuda_kernels::Gpu;
use proptest::prelude::*;

/// Deterministic values in [-3, 3) from a seed.
fn values(seed: u64, len: usize) -> Vec<f32> {
    xorshift_values(seed, len, 3.0)
}

fn check(s: SampleShape, seed: u64, gpu: &Gpu) -> Result<(), TestCaseError> {
    let n = s.batch * s.len;
    let (p, t, g) = (
        values(seed, n),
        values(seed ^ 1, n),
        values(seed ^ 2, s.batch),
    );
    let (mut mse, mut dp) = (vec![0.0; s.batch], vec![0.0; n]);
    cpu_mse::sample_mse_forward(&s, &p, &t, &mut mse).unwrap();
    cpu_mse::sample_mse_backward(&s, &p, &t, &g, &mut dp).unwrap();

    let (gp, gt, gg) = (upload(gpu, &p), upload(gpu, &t), upload(gpu, &g));
    let mut gmse = zeros(gpu, s.batch);
    sample_mse_forward(gpu, &s, &gp, &gt, &mut gmse).unwrap();
    let rel = (s.len as f32 / 256.0 + 16.0) * 6e-8;
    for (i, (&a, &b)) in download(gpu, &gmse).iter().zip(&mse).enumerate() {
        prop_assert!(
            (a - b).abs() <= rel * b,
            "mse[{}]: gpu {} vs cpu {}",
            i,
            a,
            b
        );
    }
    let mut gdp = zeros(gpu, n);
    sample_mse_backward(gpu, &s, &gp, &gt, &gg, &mut gdp).unwrap();
    for (i, (&a, &b)) in download(gpu, &gdp).iter().zip(&dp).enumerate() {
        prop_assert!(
            (a - b).abs() <= 4.0 * 1.2e-7 * b.abs(),
            "grad[{}]: gpu {} vs cpu {}",
            i,
            a,
            b
        );
    }
    Ok(())
}

fn sample_mse_and_its_backward_match_the_cpu_kernels(gpu: &Gpu) {
    runner()
        .run(
            &(1usize..5, 1usize..1300, any::<u64>()),
            |(batch, len, seed)| check(SampleShape { batch, len }, seed, gpu),
        )
        .unwrap();
}

fn sample_mse_matches_the_cpu_at_the_training_shape(gpu: &Gpu) {
    check(
        SampleShape {
            batch: 64,
            len: 28 * 28,
        },
        7,
        gpu,
    )
    .unwrap();
}

fn main() {
    let tests = diffuse_gpu_test::on_gpu![
        sample_mse_and_its_backward_match_the_cpu_kernels,
        sample_mse_matches_the_cpu_at_the_training_shape,
    ];
    diffuse_gpu_test::run(|| Gpu::new(0), tests);
}
