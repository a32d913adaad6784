//! `Tensor`: shared storage plus a layout. Cloning a tensor or taking a view shares the storage; operations allocate
//! a new contiguous result.

use crate::error::{Error, Result};
use crate::layout::{checked_numel, Layout};
use crate::storage::Storage;
use crate::{DType, Device};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

#[derive(Clone)]
pub struct Tensor {
    storage: Arc<RwLock<Storage>>,
    layout: Layout,
    dtype: DType,
    device: Device,
}

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Tensor{{shape: {:?}, dtype: {}, device: {}}}",
            self.shape(),
            self.dtype,
            self.device
        )
    }
}

impl Tensor {
    pub(crate) fn from_storage(storage: Storage, layout: Layout) -> Self {
        let (dtype, device) = (storage.dtype(), storage.device());
        Tensor {
            storage: Arc::new(RwLock::new(storage)),
            layout,
            dtype,
            device,
        }
    }

    /// A tensor with a new contiguous buffer of `shape`.
    pub(crate) fn from_contiguous(storage: Storage, shape: &[usize]) -> Result<Self> {
        Ok(Self::from_storage(storage, Layout::contiguous(shape)?))
    }

    pub(crate) fn with_layout(&self, layout: Layout) -> Self {
        Tensor {
            storage: Arc::clone(&self.storage),
            layout,
            dtype: self.dtype,
            device: self.device,
        }
    }

    /// Read access to the storage. A poisoned lock (a panic elsewhere while writing) still holds valid f32 data.
    pub(crate) fn storage(&self) -> RwLockReadGuard<'_, Storage> {
        self.storage.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Write access to the storage, for in-place updates (optimiser steps). Callers must make sure no other tensor
    /// taking part in the update shares this storage (see [`Tensor::same_storage`]), or the second lock would wait
    /// forever.
    pub(crate) fn storage_mut(&self) -> RwLockWriteGuard<'_, Storage> {
        self.storage.write().unwrap_or_else(|e| e.into_inner())
    }

    /// True when this tensor is its buffer's only user (no clone or view shares it) and covers it exactly: a
    /// contiguous f32 CPU tensor from offset 0 over every element. Such a tensor may be overwritten in place.
    pub(crate) fn writable_alone(&self) -> bool {
        Arc::strong_count(&self.storage) == 1
            && Arc::weak_count(&self.storage) == 0
            && self.dtype == DType::F32
            && self.device == Device::Cpu
            && self.layout.is_contiguous()
            && self.layout.offset() == 0
            && self.storage().len() == self.numel()
    }

    /// The elements of a tensor for which [`Tensor::writable_alone`] holds, mutably; `None` otherwise.
    pub(crate) fn cpu_f32_mut(&mut self) -> Option<&mut [f32]> {
        if !self.writable_alone() {
            return None;
        }
        let storage = Arc::get_mut(&mut self.storage)?
            .get_mut()
            .unwrap_or_else(|e| e.into_inner());
        match storage {
            Storage::Cpu(cpu) => cpu.as_f32_mut(),
            Storage::Cuda(_) => None,
        }
    }

    /// True when both tensors share one buffer (used to refuse in-place updates that would alias).
    pub fn same_storage(&self, other: &Tensor) -> bool {
        Arc::ptr_eq(&self.storage, &other.storage)
    }

    // ---- creation -------------------------------------------------------------------------------------------------

    /// A tensor holding `data` in row-major order with the given shape.
    pub fn from_vec(data: Vec<f32>, shape: &[usize], device: Device) -> Result<Self> {
        let n = checked_numel("from_vec", shape)?;
        if n != data.len() {
            return Err(Error::shape(
                "from_vec",
                format!(
                    "{} values cannot fill shape {shape:?} ({n} elements)",
                    data.len()
                ),
            ));
        }
        Self::from_contiguous(Storage::from_f32(device, DType::F32, data)?, shape)
    }

    pub fn from_slice(data: &[f32], shape: &[usize], device: Device) -> Result<Self> {
        Self::from_vec(data.to_vec(), shape, device)
    }

    /// A rank-0 tensor.
    pub fn scalar(value: f32, device: Device) -> Result<Self> {
        Self::from_vec(vec![value], &[], device)
    }

    pub fn full(shape: &[usize], value: f32, dtype: DType, device: Device) -> Result<Self> {
        let n = checked_numel("full", shape)?;
        Self::from_contiguous(Storage::full(device, dtype, n, value)?, shape)
    }

    pub fn zeros(shape: &[usize], dtype: DType, device: Device) -> Result<Self> {
        Self::full(shape, 0.0, dtype, device)
    }

    pub fn ones(shape: &[usize], dtype: DType, device: Device) -> Result<Self> {
        Self::full(shape, 1.0, dtype, device)
    }

    pub fn zeros_like(&self) -> Result<Self> {
        Self::zeros(self.shape(), self.dtype, self.device)
    }

    /// `start, start + step, …` up to but excluding `end` (f32, rank 1).
    pub fn arange(start: f32, end: f32, step: f32, device: Device) -> Result<Self> {
        if step == 0.0 || !step.is_finite() || !start.is_finite() || !end.is_finite() {
            return Err(Error::argument(
                "arange",
                format!(
                    "start {start}, end {end} and step {step} must be finite with a non-zero step"
                ),
            ));
        }
        let n = ((end - start) / step).ceil().max(0.0);
        if n > (1u64 << 32) as f32 {
            return Err(Error::argument(
                "arange",
                format!("{n} elements is too many"),
            ));
        }
        let data: Vec<f32> = (0..n as usize).map(|i| start + i as f32 * step).collect();
        let len = data.len();
        Self::from_vec(data, &[len], device)
    }

    // ---- inspection -----------------------------------------------------------------------------------------------

    pub fn shape(&self) -> &[usize] {
        self.layout.shape()
    }
    pub fn rank(&self) -> usize {
        self.layout.rank()
    }
    pub fn numel(&self) -> usize {
        self.layout.numel()
    }
    pub fn dtype(&self) -> DType {
        self.dtype
    }
    pub fn device(&self) -> Device {
        self.device
    }
    pub fn layout(&self) -> &Layout {
        &self.layout
    }
    pub fn is_contiguous(&self) -> bool {
        self.layout.is_contiguous()
    }

    /// Size of dimension `dim`, or an error naming the tensor's shape.
    pub fn dim(&self, dim: usize) -> Result<usize> {
        self.shape().get(dim).copied().ok_or_else(|| {
            Error::argument(
                "dim",
                format!(
                    "dimension {dim} is out of range for shape {:?}",
                    self.shape()
                ),
            )
        })
    }

    /// The elements in row-major order as f32 on the host.
    pub fn to_vec(&self) -> Result<Vec<f32>> {
        self.storage().to_f32_vec(&self.layout)
    }

    /// The value of a one-element tensor.
    pub fn to_scalar(&self) -> Result<f32> {
        if self.numel() != 1 {
            return Err(Error::shape(
                "to_scalar",
                format!(
                    "tensor of shape {:?} has {} elements, not 1",
                    self.shape(),
                    self.numel()
                ),
            ));
        }
        Ok(self.to_vec()?[0])
    }

    // ---- conversion -----------------------------------------------------------------------------------------------

    /// A tensor whose storage holds exactly its elements, row-major: `self` itself (shared) when it already does, so
    /// that kernels may take the whole buffer as the tensor.
    pub fn contiguous(&self) -> Result<Self> {
        if self.is_contiguous() && self.layout.offset() == 0 && self.storage().len() == self.numel()
        {
            return Ok(self.clone());
        }
        let storage = self.storage().copy_contiguous(&self.layout, self.dtype)?;
        Self::from_contiguous(storage, self.shape())
    }

    /// A copy in another dtype (or `self` if the dtype is already right).
    pub fn to_dtype(&self, dtype: DType) -> Result<Self> {
        if dtype == self.dtype {
            return Ok(self.clone());
        }
        let storage = self.storage().copy_contiguous(&self.layout, dtype)?;
        Self::from_contiguous(storage, self.shape())
    }

    /// A copy on another device (or `self` if it is already there).
    pub fn to_device(&self, device: Device) -> Result<Self> {
        if device == self.device {
            return Ok(self.clone());
        }
        let storage = self.storage().to_device(&self.layout, device)?;
        Self::from_contiguous(storage, self.shape())
    }

    // ---- views ----------------------------------------------------------------------------------------------------

    /// Same elements, new shape. A view when the data is contiguous, a copy otherwise.
    pub fn reshape(&self, shape: &[usize]) -> Result<Self> {
        match self.layout.reshape(shape)? {
            Some(layout) => Ok(self.with_layout(layout)),
            None => {
                let copy = self.contiguous()?;
                let layout = Layout::contiguous(shape)?;
                Ok(copy.with_layout(layout))
            }
        }
    }

    /// Collapses dimensions `start..=end` into one.
    pub fn flatten(&self, start: usize, end: usize) -> Result<Self> {
        if start > end || end >= self.rank() {
            return Err(Error::argument(
                "flatten",
                format!(
                    "dimensions {start}..={end} are not a range of shape {:?}",
                    self.shape()
                ),
            ));
        }
        let s = self.shape();
        let mut shape = s[..start].to_vec();
        shape.push(checked_numel("flatten", &s[start..=end])?);
        shape.extend_from_slice(&s[end + 1..]);
        self.reshape(&shape)
    }

    pub fn permute(&self, dims: &[usize]) -> Result<Self> {
        Ok(self.with_layout(self.layout.permute(dims)?))
    }

    pub fn transpose(&self, d0: usize, d1: usize) -> Result<Self> {
        Ok(self.with_layout(self.layout.transpose(d0, d1)?))
    }

    pub fn narrow(&self, dim: usize, start: usize, len: usize) -> Result<Self> {
        Ok(self.with_layout(self.layout.narrow(dim, start, len)?))
    }

    pub fn broadcast_to(&self, shape: &[usize]) -> Result<Self> {
        Ok(self.with_layout(self.layout.broadcast_to(shape)?))
    }

    pub fn squeeze(&self, dim: usize) -> Result<Self> {
        Ok(self.with_layout(self.layout.squeeze(dim)?))
    }

    pub fn unsqueeze(&self, dim: usize) -> Result<Self> {
        Ok(self.with_layout(self.layout.unsqueeze(dim)?))
    }

    /// Checks that `other` can be combined with `self` (same device and dtype); `op` names the caller in the error.
    pub(crate) fn check_compatible(&self, op: &'static str, other: &Tensor) -> Result<()> {
        if self.device != other.device {
            return Err(Error::DeviceMismatch {
                op,
                lhs: self.device,
                rhs: other.device,
            });
        }
        if self.dtype != other.dtype {
            return Err(Error::DTypeMismatch {
                op,
                lhs: self.dtype,
                rhs: other.dtype,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::{Device, Tensor};
    use std::sync::Arc;

    /// The buffer the sum lands in: an owned operand's own, else a new one.
    #[test]
    fn accumulate_reuses_the_buffer_of_an_owned_operand() {
        let x = Tensor::randn(&[4, 33], 1, 0, Device::Cpu).unwrap();
        let y = Tensor::randn(&[4, 33], 2, 0, Device::Cpu).unwrap();
        let owned = x.mul_scalar(2.0).unwrap();
        let buffer = Arc::as_ptr(&owned.storage);
        let total = owned.accumulate(y.clone()).unwrap();
        assert_eq!(Arc::as_ptr(&total.storage), buffer);
        let owned = y.mul_scalar(2.0).unwrap();
        let buffer = Arc::as_ptr(&owned.storage);
        let total = x.clone().accumulate(owned).unwrap();
        assert_eq!(Arc::as_ptr(&total.storage), buffer);
        let total = x.clone().accumulate(y.clone()).unwrap();
        assert!(!total.same_storage(&x) && !total.same_storage(&y));
    }
}
