//! What every GPU test binary of this crate shares: the proptest runner and host↔device copies. Each binary uses a
//! different subset, hence the `dead_code` allowance. The device itself is opened once by the harness
//! (`diffuse-gpu-test`) and handed to each test.
#![allow(dead_code)]

use diffuse_cuda_kernels::{DeviceBuffer, Gpu};
use proptest::test_runner::{Config, TestRunner};

/// 32 cases per property, or `PROPTEST_CASES` when set (compute-sanitizer runs a reduced set: one case per property
/// is enough to visit every kernel, and each runs ~100× slower under its instrumentation).
pub fn runner() -> TestRunner {
    runner_of(32)
}

/// `cases` cases per property, or `PROPTEST_CASES` when set.
pub fn runner_of(cases: u32) -> TestRunner {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(cases);
    TestRunner::new(Config {
        cases,
        ..Config::default()
    })
}

/// A device copy of `host`, in an allocation of exactly its length (none when it is empty).
pub fn upload(gpu: &Gpu, host: &[f32]) -> DeviceBuffer {
    DeviceBuffer::from_host(gpu, host).expect("host-to-device copy")
}

pub fn download(gpu: &Gpu, device: &DeviceBuffer) -> Vec<f32> {
    device.to_host(gpu).expect("device-to-host copy")
}

/// `len` zeros in an allocation of exactly `len` elements; `zeros(gpu, 0)` allocates nothing.
pub fn zeros(gpu: &Gpu, len: usize) -> DeviceBuffer {
    DeviceBuffer::zeros(gpu, len).expect("device allocation")
}
