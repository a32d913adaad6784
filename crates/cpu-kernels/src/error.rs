//! The one error type of the kernel layer: which operation refused its arguments, and why.

use std::fmt;

/// A kernel refused its arguments (a slice of the wrong length, a zero stride, an impossible shape).
///
/// Kernels check every length before they touch memory, so a bad call is this error, never a panic.
#[derive(Debug, Clone, PartialEq)]
pub struct KernelError {
    /// The kernel that refused, e.g. `"conv2d_forward"`.
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
}

impl fmt::Display for KernelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.op, self.message)
    }
}

impl std::error::Error for KernelError {}

pub type Result<T> = std::result::Result<T, KernelError>;

/// Checks that a slice argument has exactly the length its shape implies.
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
