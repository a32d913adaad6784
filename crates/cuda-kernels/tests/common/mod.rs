//! What every GPU test binary of this crate shares: the proptest runner, host↔device copies, seeded test values and
//! the CPU twin of a convolution shape. Each binary uses a different subset, hence the `dead_code` allowance. The device itself is opened once by the harness
//! (`diffuse-gpu-test`) and handed to each test.
#![allow(dead_code)]

use diffuse_cpu_kernels::conv2d::Conv2dShape as CpuConv2dShape;
use diffuse_cuda_kernels::conv::Conv2dShape;
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

/// A device buffer filled with NaN, so that an element a kernel forgets to write cannot pass.
pub fn poisoned(gpu: &Gpu, len: usize) -> DeviceBuffer {
    upload(gpu, &vec![f32::NAN; len])
}

/// `len` values uniform in [-1, 1) from a SplitMix64 stream.
pub fn values(seed: u64, len: usize) -> Vec<f32> {
    let mut state = seed;
    (0..len)
        .map(|_| {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            ((z >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// `len` values uniform in [-half_width, half_width) from an xorshift64 stream seeded with `seed`.
pub fn xorshift_values(seed: u64, len: usize, half_width: f32) -> Vec<f32> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 24) as f32 * (2.0 * half_width) - half_width
        })
        .collect()
}

pub fn absolute(v: &[f32]) -> Vec<f32> {
    v.iter().map(|x| x.abs()).collect()
}

/// The CPU kernels' description of the same convolution (square stride, padding and dilation written out per axis).
pub fn cpu_conv_shape(s: &Conv2dShape) -> CpuConv2dShape {
    CpuConv2dShape {
        batch: s.batch,
        in_channels: s.in_channels,
        in_h: s.in_h,
        in_w: s.in_w,
        out_channels: s.out_channels,
        kernel_h: s.kernel_h,
        kernel_w: s.kernel_w,
        stride: (s.stride, s.stride),
        padding: (s.padding, s.padding),
        dilation: (s.dilation, s.dilation),
        groups: s.groups,
    }
}
