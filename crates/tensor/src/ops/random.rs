//! Random tensors from the counter-based Philox stream: element `i` of the result is stream element `offset + i` of
//! `seed`, so a tensor is reproducible from `(seed, offset)` on every device and thread count.

use crate::error::{Error, Result};
use crate::{Device, Tensor};
use diffuse_cpu_kernels::philox::fill_normal;

impl Tensor {
    /// Standard normal samples of the given shape: element `i` is normal number `offset + i` of stream `seed`.
    /// Drawn on the host and moved to `device`.
    pub fn randn(shape: &[usize], seed: u64, offset: u64, device: Device) -> Result<Tensor> {
        let numel = shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
        let numel = numel
            .ok_or_else(|| Error::shape("randn", format!("shape {shape:?} overflows usize")))?;
        if offset.checked_add(numel as u64).is_none() {
            return Err(Error::argument(
                "randn",
                format!("stream offset {offset} + {numel} elements overflows u64"),
            ));
        }
        let mut data = vec![0.0f32; numel];
        fill_normal(seed, offset, &mut data);
        Tensor::from_vec(data, shape, device)
    }
}
