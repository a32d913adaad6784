//! Tensor operations, one file per kind. Each checks its arguments against the tensor's shape, dtype and device, then
//! calls the storage, which dispatches to the device's backend.

mod adaln;
mod elementwise;
mod geglu;
mod index;
mod loss;
mod matmul;
mod nn;
pub mod noise;
mod optim;
mod random;
mod reduce;

pub use nn::Conv2dParams;
