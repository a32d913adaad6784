//! The one error type of the kernel layer, shared with `diffuse-cpu-kernels`: which operation refused its arguments
//! (or could not run), and why. Wrappers check every length and launch limit before touching device memory, so a bad
//! call is this error, never a panic.

pub use diffuse_cpu_kernels::error::{check_len, KernelError, Result};

/// A CUDA driver error, with what we were doing when it happened (no driver, no device, a failed launch).
pub(crate) fn driver_error(
    op: &'static str,
    doing: &str,
    err: cudarc::driver::DriverError,
) -> KernelError {
    KernelError::new(op, format!("{doing}: CUDA driver error {err}"))
}
