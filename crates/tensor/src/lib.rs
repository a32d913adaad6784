//! Tensors for diffuse.
//!
//! A [`Tensor`] is a reference-counted [`storage::Storage`] (a buffer on one [`Device`] in one [`DType`]) seen through a
//! [`layout::Layout`] (shape, strides, offset). Views share storage; operations return new contiguous tensors. Every
//! fallible call returns [`Result`] with an [`Error`] that names the operation and what disagreed.
//!
//! Operations are grouped by kind under `ops/`; each one checks its arguments, then asks the storage to run it, and
//! the storage dispatches to the backend of its device (see `docs/architecture.md`).

pub mod backend;
mod device;
mod dtype;
pub mod error;
pub mod layout;
pub mod nccl;
mod ops;
mod precision;
pub mod storage;
mod tensor;

pub use device::Device;
pub use diffuse_cpu_kernels::adamw::AdamWConfig;
pub use diffuse_cpu_kernels::elementwise::{BinaryOp, UnaryOp};
pub use diffuse_cpu_kernels::reduce::ReduceOp;
/// Makes the calling thread a worker of the CPU kernels' thread pool (call it first in `main`; see the function).
pub use diffuse_cpu_kernels::threads::pool_with_calling_thread;
/// The CUDA devices the driver sees and its version, without opening any (`diffuse info --devices`).
pub use diffuse_cuda_kernels::devices as cuda_devices;
pub use diffuse_cuda_kernels::OpenError;
pub use dtype::DType;
pub use error::{Error, Result};
pub use ops::Conv2dParams;
pub use precision::{matmul_precision, set_matmul_precision, Precision};
pub use tensor::Tensor;
