//! Tensor operations, one file per kind. Each checks its arguments against the tensor's shape, dtype and device, then
//! calls the storage, which dispatches to the device's backend.

mod elementwise;
mod index;
pub mod noise;
mod random;
mod reduce;
