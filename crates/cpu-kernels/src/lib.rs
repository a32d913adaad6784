//! CPU kernels for diffuse: every heavy operation on plain, contiguous (or explicitly strided) `f32` slices, parallel with
//! rayon. The CUDA kernels in `diffuse-cuda-kernels` take the same arguments in the same order, and the property tests of
//! that crate hold each GPU kernel against its twin here.

pub mod error;

pub mod adamw;
pub mod attention;
mod dispatch;
pub mod group_norm;
pub mod layer_norm;
pub mod math;
mod moments;
pub mod noise;
pub mod philox;
pub mod softmax;

pub use error::{KernelError, Result};
