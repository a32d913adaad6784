//! Every GPU kernel held against its CPU twin (or, where the CPU crate does not have it yet, against the naive
//! reference in `reference/`), over random shapes that include the awkward ones: length 1, lengths that are not a
//! multiple of any tile or vector width, offsets that start mid-block.
//!
//! Without a CUDA driver or device every test prints `skipped: no CUDA driver (<reason>)` to stderr and returns.

mod reference;

use std::sync::OnceLock;

use cudarc::driver::CudaSlice;
use diffuse_cuda_kernels::{philox, Gpu, KernelError};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

/// The device shared by all tests of this binary, opened once.
fn gpu_or_skip(test: &str) -> Option<&'static Gpu> {
    static GPU: OnceLock<Result<Gpu, KernelError>> = OnceLock::new();
    match GPU.get_or_init(|| Gpu::new(0)) {
        Ok(gpu) => Some(gpu),
        Err(err) => {
            eprintln!("{test}: skipped: no CUDA driver ({err})");
            None
        }
    }
}

fn runner() -> TestRunner {
    TestRunner::new(Config { cases: 32, ..Config::default() })
}

fn upload(gpu: &Gpu, host: &[f32]) -> CudaSlice<f32> {
    gpu.stream().clone_htod(host).expect("host-to-device copy")
}

fn download(gpu: &Gpu, device: &CudaSlice<f32>) -> Vec<f32> {
    gpu.stream().clone_dtoh(device).expect("device-to-host copy")
}

fn zeros(gpu: &Gpu, len: usize) -> CudaSlice<f32> {
    gpu.stream().alloc_zeros(len).expect("device allocation")
}

/// |got - want| <= tol * max(1, |want|) elementwise, with the first offender named.
fn assert_close(what: &str, got: &[f32], want: &[f32], tol: f64) -> Result<(), TestCaseError> {
    prop_assert_eq!(got.len(), want.len(), "{}: lengths differ", what);
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let (g, w) = (f64::from(g), f64::from(w));
        let ok = (g - w).abs() <= tol * w.abs().max(1.0) || (g.is_nan() && w.is_nan());
        prop_assert!(ok, "{}: element {} is {} but the reference says {} (tol {})", what, i, g, w, tol);
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------- philox

#[test]
fn fill_uniform_reproduces_the_cpu_stream_bit_for_bit() {
    let Some(gpu) = gpu_or_skip("fill_uniform_reproduces_the_cpu_stream_bit_for_bit") else { return };
    runner()
        .run(&(any::<u64>(), 0u64..64, 1usize..3000), |(seed, offset, len)| {
            let mut out = zeros(gpu, len);
            philox::fill_uniform(gpu, seed, offset, &mut out).unwrap();
            prop_assert_eq!(download(gpu, &out), reference::philox::uniforms(seed, offset, len));
            Ok(())
        })
        .unwrap();
}

#[test]
fn fill_normal_matches_the_cpu_stream() {
    let Some(gpu) = gpu_or_skip("fill_normal_matches_the_cpu_stream") else { return };
    // The uniforms are bit-exact; the GPU's cos.approx/sin.approx (absolute error <= 2^-20.9 on [-pi, pi]) times
    // r <= 5.9, plus a few f32 roundings in ln and 2*pi*u, bound the difference by ~5e-6 absolute.
    runner()
        .run(&(any::<u64>(), 0u64..64, 1usize..3000), |(seed, offset, len)| {
            let mut out = zeros(gpu, len);
            philox::fill_normal(gpu, seed, offset, &mut out).unwrap();
            assert_close("fill_normal", &download(gpu, &out), &reference::philox::normals(seed, offset, len), 1e-5)
        })
        .unwrap();
}

#[test]
fn fill_normal_with_a_huge_offset_uses_the_high_counter_word() {
    let Some(gpu) = gpu_or_skip("fill_normal_with_a_huge_offset_uses_the_high_counter_word") else { return };
    let offset = (1u64 << 34) + 3;
    let mut out = zeros(gpu, 7);
    philox::fill_normal(gpu, 42, offset, &mut out).unwrap();
    assert_close("fill_normal", &download(gpu, &out), &reference::philox::normals(42, offset, 7), 1e-5).unwrap();
}
