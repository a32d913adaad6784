//! Asking for a GPU that is not there is an error that says so, never a panic; and the error tells a machine without
//! a device from a device that cannot run the kernels.

use diffuse_cuda_kernels::{Gpu, OpenError};

/// Only where there is no device: the error is the no-device kind and names the driver.
fn asking_for_a_missing_gpu_returns_a_clear_error() {
    let err = Gpu::new(0).err().expect("no device here");
    assert!(
        err.is_no_device(),
        "a missing device taken for a broken one: {err}"
    );
    assert!(
        err.message().contains("no CUDA driver") || err.message().contains("CUDA_ERROR_NO_DEVICE"),
        "unhelpful error: {err}"
    );
    eprintln!("Gpu::new(0) on this machine: {err}");
}

fn asking_for_a_device_ordinal_that_cannot_exist_is_a_missing_device() {
    let err = Gpu::new(4096).err().expect("no machine has 4097 GPUs");
    assert!(
        matches!(err, OpenError::NoDevice(_)),
        "a missing ordinal is a missing device, not a broken one: {err}"
    );
    assert!(!err.message().is_empty());
}

fn main() {
    let mut tests = diffuse_gpu_test::without_gpu![asking_for_a_missing_gpu_returns_a_clear_error];
    tests.extend(diffuse_gpu_test::anywhere![
        asking_for_a_device_ordinal_that_cannot_exist_is_a_missing_device
    ]);
    diffuse_gpu_test::run(|| Gpu::new(0), tests);
}
