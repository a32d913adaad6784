//! Device buffers of f32 that may be empty.
//!
//! An empty buffer owns no device memory: the driver refuses (or may refuse) a zero-byte allocation, and nothing is
//! ever read from or written to an empty buffer, so it needs no address. It holds a `CudaSlice` of length 0 at
//! address 0, made without asking the driver for anything, and leaks it when dropped instead of letting cudarc free
//! address 0. A non-empty buffer is the first `len` elements of an allocation that may be larger (the caching
//! allocator's buckets, see [`crate::alloc`]) or exactly `len` long (the tests' buffers, so that compute-sanitizer
//! sees an access one past the end).

use std::sync::Arc;

use cudarc::driver::sys::CUdeviceptr;
use cudarc::driver::{
    CudaSlice, CudaStream, CudaView, CudaViewMut, DevicePtr, DevicePtrMut, DeviceSlice, SyncOnDrop,
};

use crate::context::Gpu;
use crate::error::{driver_error, Result};

/// `len` f32s on one device (see the module docs).
#[derive(Debug)]
pub struct DeviceBuffer {
    /// `Some` from construction until [`DeviceBuffer::into_allocation`] or `drop` takes it.
    slice: Option<CudaSlice<f32>>,
    len: usize,
}

impl DeviceBuffer {
    /// The first `len` elements of `allocation` (`len ≤ allocation.len()`, checked by the caller).
    pub(crate) fn within(allocation: CudaSlice<f32>, len: usize) -> DeviceBuffer {
        debug_assert!(len <= allocation.len());
        DeviceBuffer {
            slice: Some(allocation),
            len,
        }
    }

    /// A buffer of no elements on `stream`'s device, without a device allocation.
    pub fn empty(stream: &Arc<CudaStream>) -> DeviceBuffer {
        // SAFETY: a slice of 0 elements needs 0 bytes at its address, so address 0 is as good as any: no kernel or
        // copy reads or writes an element of it. `Drop` (and `into_allocation`) leak it instead of freeing it.
        let slice = unsafe { stream.upgrade_device_ptr::<f32>(0, 0) };
        DeviceBuffer::within(slice, 0)
    }

    /// `len` zeros in an allocation of exactly `len` elements (none when `len` is 0).
    pub fn zeros(gpu: &Gpu, len: usize) -> Result<DeviceBuffer> {
        if len == 0 {
            return Ok(DeviceBuffer::empty(gpu.stream()));
        }
        let slice = gpu
            .stream()
            .alloc_zeros::<f32>(len)
            .map_err(|e| driver_error("alloc", &format!("allocating {len} f32"), e))?;
        Ok(DeviceBuffer::within(slice, len))
    }

    /// A copy of `host` in an allocation of exactly its length (none when it is empty).
    pub fn from_host(gpu: &Gpu, host: &[f32]) -> Result<DeviceBuffer> {
        if host.is_empty() {
            return Ok(DeviceBuffer::empty(gpu.stream()));
        }
        let slice = gpu
            .stream()
            .clone_htod(host)
            .map_err(|e| driver_error("to_device", "copying to the device", e))?;
        Ok(DeviceBuffer::within(slice, host.len()))
    }

    /// The `len` elements, copied to the host once every kernel before the copy has finished.
    pub fn to_host(&self, gpu: &Gpu) -> Result<Vec<f32>> {
        let mut host = vec![0.0; self.len];
        if !host.is_empty() {
            gpu.stream()
                .memcpy_dtoh(&self.view(), &mut host)
                .map_err(|e| driver_error("to_host", "copying to the host", e))?;
        }
        gpu.synchronize()?;
        Ok(host)
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn slice(&self) -> &CudaSlice<f32> {
        self.slice
            .as_ref()
            .expect("a buffer holds its slice until it is dropped")
    }

    fn slice_mut(&mut self) -> &mut CudaSlice<f32> {
        self.slice
            .as_mut()
            .expect("a buffer holds its slice until it is dropped")
    }

    /// The `len` elements, for reading.
    pub fn view(&self) -> CudaView<'_, f32> {
        self.slice().slice(..self.len)
    }

    /// The `len` elements, for writing.
    pub fn view_mut(&mut self) -> CudaViewMut<'_, f32> {
        let len = self.len;
        self.slice_mut().slice_mut(..len)
    }

    /// The whole allocation behind a non-empty buffer, for the caching allocator to keep; `None` for an empty one
    /// (whose address-0 slice is leaked here, as in `drop`).
    pub(crate) fn into_allocation(mut self) -> Option<CudaSlice<f32>> {
        let slice = self.slice.take()?;
        if slice.is_empty() {
            slice.leak();
            return None;
        }
        Some(slice)
    }
}

impl Drop for DeviceBuffer {
    fn drop(&mut self) {
        if let Some(slice) = self.slice.take() {
            if slice.is_empty() {
                // address 0 was never allocated: nothing to free
                slice.leak();
            }
            // a non-empty slice frees its allocation as it drops here
        }
    }
}

impl DeviceSlice<f32> for DeviceBuffer {
    fn len(&self) -> usize {
        self.len
    }

    fn stream(&self) -> &Arc<CudaStream> {
        self.slice().stream()
    }
}

impl DevicePtr<f32> for DeviceBuffer {
    fn device_ptr<'a>(&'a self, stream: &'a CudaStream) -> (CUdeviceptr, SyncOnDrop<'a>) {
        self.slice().device_ptr(stream)
    }
}

impl DevicePtrMut<f32> for DeviceBuffer {
    fn device_ptr_mut<'a>(&'a mut self, stream: &'a CudaStream) -> (CUdeviceptr, SyncOnDrop<'a>) {
        self.slice_mut().device_ptr_mut(stream)
    }
}

/// A buffer of f32 read as twice as many bf16: the caching allocator holds f32 buffers, and bf16 scratch (the packed
/// operands of [`crate::gemm::gemm_bf16`]) borrows them.
pub struct Bf16View<'a>(&'a DeviceBuffer);

/// [`Bf16View`], for writing.
pub struct Bf16ViewMut<'a>(&'a mut DeviceBuffer);

impl DeviceBuffer {
    /// The buffer's bytes as `2 · len` bf16.
    pub fn as_bf16(&self) -> Bf16View<'_> {
        Bf16View(self)
    }

    /// The buffer's bytes as `2 · len` bf16, for writing.
    pub fn as_bf16_mut(&mut self) -> Bf16ViewMut<'_> {
        Bf16ViewMut(self)
    }
}

impl DeviceSlice<half::bf16> for Bf16View<'_> {
    fn len(&self) -> usize {
        2 * self.0.len
    }

    fn stream(&self) -> &Arc<CudaStream> {
        self.0.slice().stream()
    }
}

impl DevicePtr<half::bf16> for Bf16View<'_> {
    fn device_ptr<'a>(&'a self, stream: &'a CudaStream) -> (CUdeviceptr, SyncOnDrop<'a>) {
        self.0.slice().device_ptr(stream)
    }
}

impl DeviceSlice<half::bf16> for Bf16ViewMut<'_> {
    fn len(&self) -> usize {
        2 * self.0.len
    }

    fn stream(&self) -> &Arc<CudaStream> {
        self.0.slice().stream()
    }
}

impl DevicePtrMut<half::bf16> for Bf16ViewMut<'_> {
    fn device_ptr_mut<'a>(&'a mut self, stream: &'a CudaStream) -> (CUdeviceptr, SyncOnDrop<'a>) {
        self.0.slice_mut().device_ptr_mut(stream)
    }
}
