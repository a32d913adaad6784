//! A caching allocator: device buffers are kept in free lists by size bucket and handed out again, so the training
//! loop does not call `cuMemAlloc` / `cuMemFree` once it has warmed up.
//!
//! Buckets: a request for `len` f32s is rounded up to a quarter-octave size (the next multiple of 2^(floor(log2 len)-2),
//! at least 256 elements), so a buffer is at most 25% larger than asked for and one bucket serves all requests that
//! round to it. A buffer taken from the pool holds whatever its last user left in it: callers write before they read.
//! A request for 0 elements gets an empty [`DeviceBuffer`], which owns no device memory at all.

use std::collections::HashMap;
use std::sync::Arc;

use cudarc::driver::sys::CUresult;
use cudarc::driver::{CudaSlice, CudaStream, DriverError};

use crate::buffer::DeviceBuffer;
use crate::error::{driver_error, KernelError, Result};

/// The smallest bucket, in elements (1 KiB of f32).
const MIN_BUCKET: usize = 256;

/// The bucket size (in elements) that serves a request for `len` elements.
pub fn bucket_len(len: usize) -> usize {
    if len <= MIN_BUCKET {
        return MIN_BUCKET;
    }
    let octave = usize::BITS - 1 - len.leading_zeros(); // floor(log2 len), >= 8 here
    let step = 1usize << (octave - 2);
    len.div_ceil(step) * step
}

/// Free lists of device buffers, keyed by bucket size.
#[derive(Debug, Default)]
pub struct BufferPool {
    free: HashMap<usize, Vec<CudaSlice<f32>>>,
    cached_elements: usize,
}

impl BufferPool {
    /// A buffer of `len` f32s: a cached one of the right bucket if there is one, else a fresh allocation on `stream`;
    /// for `len` 0 an empty buffer, which owns no device memory.
    pub fn take(&mut self, stream: &Arc<CudaStream>, len: usize) -> Result<DeviceBuffer> {
        if len == 0 {
            return Ok(DeviceBuffer::empty(stream));
        }
        let bucket = bucket_len(len);
        if let Some(slice) = self.free.get_mut(&bucket).and_then(Vec::pop) {
            self.cached_elements -= bucket;
            return Ok(DeviceBuffer::within(slice, len));
        }
        // SAFETY: the allocation is uninitialised device memory; every bit pattern is a valid f32 and the pool's
        // contract (module docs) is that callers write a buffer before they read it.
        let allocate = || unsafe { stream.alloc::<f32>(bucket) };
        let slice = match allocate() {
            Ok(slice) => slice,
            // Out of memory with buffers of other sizes cached: give those back to the driver and try once more.
            Err(e) if is_out_of_memory(&e) && self.cached_elements > 0 => {
                let released = self.cached_bytes();
                self.release_all();
                allocate().map_err(|e| allocation_error(bucket, released, e))?
            }
            Err(e) => return Err(allocation_error(bucket, 0, e)),
        };
        Ok(DeviceBuffer::within(slice, len))
    }

    /// Returns a buffer's allocation to its free list (an empty buffer has none).
    pub fn give_back(&mut self, buffer: DeviceBuffer) {
        if let Some(slice) = buffer.into_allocation() {
            let bucket = slice.len();
            self.cached_elements += bucket;
            self.free.entry(bucket).or_default().push(slice);
        }
    }

    /// Frees every cached buffer (e.g. before a phase with different shapes).
    pub fn release_all(&mut self) {
        self.free.clear();
        self.cached_elements = 0;
    }

    /// Bytes held in the free lists.
    pub fn cached_bytes(&self) -> usize {
        self.cached_elements * std::mem::size_of::<f32>()
    }
}

fn is_out_of_memory(e: &DriverError) -> bool {
    e.0 == CUresult::CUDA_ERROR_OUT_OF_MEMORY
}

/// The error of a failed allocation of `elements` f32: out of memory names the size and what to do about it.
fn allocation_error(elements: usize, released_bytes: usize, e: DriverError) -> KernelError {
    if is_out_of_memory(&e) {
        KernelError::new("alloc", out_of_memory_message(elements, released_bytes))
    } else {
        driver_error("alloc", &format!("allocating {elements} f32"), e)
    }
}

fn out_of_memory_message(elements: usize, released_bytes: usize) -> String {
    let mib = |bytes: usize| bytes as f64 / (1024.0 * 1024.0);
    let bytes = elements.saturating_mul(std::mem::size_of::<f32>());
    let released = if released_bytes > 0 {
        format!(
            " (after returning {:.1} MiB of cached buffers to the driver)",
            mib(released_bytes)
        )
    } else {
        String::new()
    };
    format!(
        "out of device memory allocating {:.1} MiB ({elements} f32){released}; try a smaller --batch-size, or --device cpu",
        mib(bytes)
    )
}

#[cfg(test)]
mod tests {
    use super::{bucket_len, out_of_memory_message};

    #[test]
    fn out_of_memory_names_the_size_and_suggests_a_smaller_batch() {
        let text = out_of_memory_message(64 << 20, 3 << 20);
        assert!(text.contains("256.0 MiB (67108864 f32)"), "{text}");
        assert!(text.contains("3.0 MiB of cached buffers"), "{text}");
        assert!(text.contains("smaller --batch-size"), "{text}");
        assert!(!out_of_memory_message(256, 0).contains("cached"));
    }

    #[test]
    fn buckets_cover_the_request_with_at_most_a_quarter_to_spare() {
        for len in (0..5000).chain([1 << 20, (1 << 20) + 1, 3_000_001]) {
            let bucket = bucket_len(len);
            assert!(bucket >= len, "bucket {bucket} < request {len}");
            if len > 256 {
                assert!(bucket * 4 < len * 5, "bucket {bucket} wastes >25% of {len}");
            }
        }
    }

    #[test]
    fn requests_in_one_quarter_octave_share_a_bucket() {
        assert_eq!(bucket_len(1025), bucket_len(1280));
        assert_eq!(bucket_len(1280), 1280);
        assert_eq!(bucket_len(1281), 1536);
        assert_eq!(bucket_len(1), 256);
    }
}
