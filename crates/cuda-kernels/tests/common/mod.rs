//! What every GPU test binary of this crate shares: the device (opened once, or the reason it cannot be), the
//! proptest runner, and host↔device copies. Each binary uses a different subset, hence the `dead_code` allowance.
#![allow(dead_code)]

use std::sync::OnceLock;

use cudarc::driver::CudaSlice;
use diffuse_cuda_kernels::{Gpu, KernelError};
use proptest::test_runner::{Config, TestRunner};

/// The device shared by all tests of this binary, opened once; without one, prints
/// `<test>: skipped: no CUDA driver (<reason>)` and returns `None`, so a test never passes silently.
pub fn gpu_or_skip(test: &str) -> Option<&'static Gpu> {
    static GPU: OnceLock<Result<Gpu, KernelError>> = OnceLock::new();
    match GPU.get_or_init(|| Gpu::new(0)) {
        Ok(gpu) => Some(gpu),
        Err(err) => {
            eprintln!("{test}: skipped: no CUDA driver ({err})");
            None
        }
    }
}

pub fn runner() -> TestRunner {
    TestRunner::new(Config {
        cases: 32,
        ..Config::default()
    })
}

/// A device copy of `host` (cudarc's explicit empty slice when it is empty: no zero-byte allocation).
pub fn upload(gpu: &Gpu, host: &[f32]) -> CudaSlice<f32> {
    if host.is_empty() {
        return zeros(gpu, 0);
    }
    gpu.stream().clone_htod(host).expect("host-to-device copy")
}

pub fn download(gpu: &Gpu, device: &CudaSlice<f32>) -> Vec<f32> {
    gpu.stream()
        .clone_dtoh(device)
        .expect("device-to-host copy")
}

pub fn zeros(gpu: &Gpu, len: usize) -> CudaSlice<f32> {
    if len == 0 {
        return gpu.stream().null().expect("empty device slice");
    }
    gpu.stream().alloc_zeros(len).expect("device allocation")
}
