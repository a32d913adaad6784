//! Asking for a GPU that is not there is an error that says so, never a panic.

use diffuse_cuda_kernels::Gpu;

#[test]
fn asking_for_a_missing_gpu_returns_a_clear_error() {
    match Gpu::new(0) {
        Ok(_) => eprintln!("asking_for_a_missing_gpu_returns_a_clear_error: device 0 exists; nothing to check there"),
        Err(err) => {
            assert_eq!(err.op, "gpu");
            assert!(
                err.message.contains("no CUDA driver") || err.message.contains("CUDA driver error"),
                "unhelpful error: {err}"
            );
            eprintln!("Gpu::new(0) on this machine: {err}");
        }
    }
}

#[test]
fn asking_for_a_device_ordinal_that_cannot_exist_is_an_error() {
    let err = Gpu::new(4096).err().expect("no machine has 4097 GPUs");
    assert_eq!(err.op, "gpu");
    assert!(!err.message.is_empty());
}
