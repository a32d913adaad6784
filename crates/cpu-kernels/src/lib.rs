//! CPU kernels for diffuse: every heavy operation on plain, contiguous (or explicitly strided) `f32` slices, parallel with
//! rayon. The CUDA kernels in `diffuse-cuda-kernels` take the same arguments in the same order, and the property tests of
//! that crate hold each GPU kernel against its twin here.

pub mod adamw;
pub mod attention;
pub mod conv2d;
mod dispatch;
pub mod elementwise;
pub mod error;
pub mod gated_residual;
pub mod geglu;
pub mod gemm;
pub mod group_norm;
pub mod group_norm_silu;
pub mod index;
pub mod layer_norm;
pub mod layer_norm_modulate;
pub mod math;
mod moments;
pub mod noise;
pub mod philox;
pub mod reduce;
pub mod sample_mse;
mod short_copy;
pub mod softmax;
pub mod strided;
pub mod threads;

pub use conv2d::{conv2d_backward_input, conv2d_backward_weight, conv2d_forward, Conv2dShape};
pub use error::{KernelError, Result};
pub use gemm::{sgemm, sgemm_batched, MatMut, MatRef};
