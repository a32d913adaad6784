//! CUDA kernels for diffuse: every kernel is hand-written PTX (`kernels/*.ptx`, embedded at compile time), launched
//! through cudarc's driver API. Each operation takes the same arguments in the same order as its twin in
//! `diffuse-cpu-kernels`, on device buffers instead of slices. `tests/gpu_vs_cpu.rs` holds every kernel against a
//! naive f64 reference (in `tests/reference/` until the CPU twins land), and `scripts/ptxsim/` runs the PTX itself in
//! an interpreter where no GPU is available. `docs/kernels/cuda.md` indexes the kernels.
//!
//! Nothing here needs a GPU to build: the driver is loaded at run time, and [`Gpu::new`] returns an [`OpenError`]
//! that tells a machine without a device (no driver, no GPU) from a device that cannot run the kernels.

pub mod adamw;
pub mod alloc;
pub mod attention;
pub mod attention_backward;
pub mod buffer;
pub mod context;
pub mod conv;
pub mod conv_backward;
pub mod conv_bf16;
pub mod devices;
pub mod elementwise;
pub mod error;
pub mod gated_residual;
pub mod geglu;
pub mod gemm;
pub mod group_norm;
pub mod index;
mod jit;
mod launch;
pub mod layer_norm_modulate;
pub mod nccl;
pub mod noise;
pub mod open_error;
pub mod pack_bf16;
pub mod philox;
pub mod reduce;
pub mod sample_mse;
pub mod select;
pub mod softmax;

pub use buffer::DeviceBuffer;
pub use context::{DeviceLimits, Gpu, Module};
pub use error::{KernelError, Result};
pub use open_error::OpenError;
