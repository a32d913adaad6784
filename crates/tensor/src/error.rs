//! Errors of the tensor layer. Every message names the operation and the values that disagree.

use crate::{DType, Device};
use diffuse_cpu_kernels::KernelError;
use diffuse_cuda_kernels::OpenError;
use std::fmt;

#[derive(Debug, Clone, PartialEq)]
pub enum Error {
    /// Shapes that cannot work together, e.g. `matmul: inner dimensions differ: [2, 3] × [4, 5]`.
    Shape { op: &'static str, message: String },
    /// An argument out of range: a dimension index, a narrow past the end, a negative size.
    Argument { op: &'static str, message: String },
    DTypeMismatch {
        op: &'static str,
        lhs: DType,
        rhs: DType,
    },
    DeviceMismatch {
        op: &'static str,
        lhs: Device,
        rhs: Device,
    },
    /// The device asked for cannot be used: there is none (no CUDA driver, no such ordinal), or it cannot run the
    /// kernels (its context, a PTX module or its compute capability failed); `reason` says which, in the driver's
    /// words.
    DeviceUnavailable { device: Device, reason: OpenError },
    /// A kernel refused its arguments.
    Kernel(KernelError),
}

impl Error {
    pub fn shape(op: &'static str, message: impl Into<String>) -> Self {
        Error::Shape {
            op,
            message: message.into(),
        }
    }
    pub fn argument(op: &'static str, message: impl Into<String>) -> Self {
        Error::Argument {
            op,
            message: message.into(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Shape { op, message } => write!(f, "{op}: {message}"),
            Error::Argument { op, message } => write!(f, "{op}: {message}"),
            Error::DTypeMismatch { op, lhs, rhs } => write!(
                f,
                "{op}: dtypes differ: {lhs} and {rhs} (convert one with .to_dtype())"
            ),
            Error::DeviceMismatch { op, lhs, rhs } => {
                write!(f, "{op}: tensors live on different devices: {lhs} and {rhs} (move one with .to_device())")
            }
            Error::DeviceUnavailable { device, reason } => {
                write!(f, "device {device} is unavailable: {reason}")
            }
            Error::Kernel(e) => write!(f, "kernel {e}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<KernelError> for Error {
    fn from(e: KernelError) -> Self {
        Error::Kernel(e)
    }
}

pub type Result<T> = std::result::Result<T, Error>;
