//! The one error type of the kernel layer: which operation refused its arguments (or could not run), and why.
//!
//! Same shape as `diffuse_cpu_kernels::KernelError`, so the tensor crate can treat both back ends alike.

use std::fmt;

/// A kernel refused its arguments, or the GPU could not run it (no driver, no device, a failed launch).
///
/// Wrappers check every length and launch limit before touching device memory, so a bad call is this error, never a
/// panic.
#[derive(Debug, Clone, PartialEq)]
pub struct KernelError {
    /// The operation that refused, e.g. `"fill_normal"` or `"gpu"` for context creation.
    pub op: &'static str,
    /// What disagreed, with the numbers.
    pub message: String,
}

impl KernelError {
    pub fn new(op: &'static str, message: impl Into<String>) -> Self {
        Self {
            op,
            message: message.into(),
        }
    }

    /// Wraps a CUDA driver error with what we were doing when it happened.
    pub(crate) fn driver(op: &'static str, doing: &str, err: cudarc::driver::DriverError) -> Self {
        Self::new(op, format!("{doing}: CUDA driver error {err}"))
    }
}

impl fmt::Display for KernelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.op, self.message)
    }
}

impl std::error::Error for KernelError {}

pub type Result<T> = std::result::Result<T, KernelError>;

/// Checks that a device buffer has exactly the length its shape implies.
pub fn check_len(op: &'static str, what: &str, actual: usize, expected: usize) -> Result<()> {
    if actual == expected {
        Ok(())
    } else {
        Err(KernelError::new(
            op,
            format!("{what} has {actual} elements but its shape implies {expected}"),
        ))
    }
}
