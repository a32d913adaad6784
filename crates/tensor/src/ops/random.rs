//! Random tensors from the Philox4x32-10 stream (see `diffuse_cpu_kernels::philox`): element `i` of the result is
//! stream element `offset + i` of `seed`, so the same `(seed, offset)` gives the same numbers on every device and
//! for any thread count, and consecutive draws need only advance `offset` by the number of elements taken.

use crate::error::Result;
use crate::layout::checked_numel;
use crate::storage::Storage;
use crate::{DType, Device, Tensor};

impl Tensor {
    /// Standard normal samples (Box–Muller on Philox words), f32.
    pub fn randn(shape: &[usize], seed: u64, offset: u64, device: Device) -> Result<Tensor> {
        Self::random("randn", shape, (seed, offset), device, true)
    }

    /// Uniform samples on the open interval (0, 1), f32.
    pub fn rand(shape: &[usize], seed: u64, offset: u64, device: Device) -> Result<Tensor> {
        Self::random("rand", shape, (seed, offset), device, false)
    }

    fn random(
        op: &'static str,
        shape: &[usize],
        stream: (u64, u64),
        device: Device,
        normal: bool,
    ) -> Result<Tensor> {
        let n = checked_numel(op, shape)?;
        let storage = Storage::random(device, DType::F32, n, stream, normal)?;
        Tensor::from_contiguous(storage, shape)
    }
}
