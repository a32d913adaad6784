//! A cache of freed host buffers, so that a training or sampling loop reuses its activations' memory.
//!
//! Why: every step of a training loop allocates and frees the same activation sizes (tens of megabytes each at batch
//! 64). Through the system allocator each new buffer costs a zero fill (`vec![0.0; n]` is `calloc`) and, whenever
//! glibc has handed the freed block back to the kernel, a page fault per 4 KiB when it is first written; a profile of
//! the U-Net training step put the two at about a tenth of its time. Kernels overwrite their whole output, so
//! neither is needed.
//!
//! How: a buffer of at least [`MIN_CACHED_LEN`] floats that is dropped goes into the cache (in f32 storage, through
//! [`HostVec`]'s `Drop`); [`take`] hands out the most recently cached buffer of exactly the requested length, or a
//! fresh zeroed one when there is none. A training step asks for the same lengths as the step before, so after the
//! first step nearly every request is a hit. The cache holds at most [`limit`] bytes (1 GiB unless [`set_limit`]
//! changes it); past that the oldest cached buffers are freed first. [`release`] empties it.
//!
//! A buffer from [`take`] holds stale values. That is sound (they are initialised f32s) and correct as long as every
//! kernel writes its whole output, which the kernels of `diffuse-cpu-kernels` do. [`set_poison`] fills every reused
//! buffer with NaN before handing it out, so that an output element a kernel forgot to write shows up as NaN; the
//! tests run the operations with it on.

use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

/// Buffers shorter than this (64 KiB) are left to the system allocator, which serves them from its own free lists.
pub const MIN_CACHED_LEN: usize = 16 * 1024;

const DEFAULT_LIMIT: usize = 1 << 30;

struct Cache {
    /// Cached buffers, oldest first.
    buffers: Vec<Vec<f32>>,
    /// Bytes held in `buffers`.
    bytes: usize,
    limit: usize,
}

static CACHE: Mutex<Cache> = Mutex::new(Cache {
    buffers: Vec::new(),
    bytes: 0,
    limit: DEFAULT_LIMIT,
});

static POISON: AtomicBool = AtomicBool::new(false);

fn cache() -> MutexGuard<'static, Cache> {
    // The cache stays consistent at every point where a panic could occur, so a poisoned lock is still usable.
    CACHE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn bytes_of(buffer: &Vec<f32>) -> usize {
    buffer.capacity() * std::mem::size_of::<f32>()
}

impl Cache {
    /// Frees the oldest buffers until at most `limit` bytes remain.
    fn shrink_to(&mut self, limit: usize) {
        let mut freed = 0;
        while self.bytes > limit && freed < self.buffers.len() {
            self.bytes -= bytes_of(&self.buffers[freed]);
            freed += 1;
        }
        self.buffers.drain(..freed);
    }
}

/// A buffer of exactly `len` floats: a cached one with stale contents (NaN when poisoning is on) if one of that
/// length is cached, otherwise a fresh zeroed one.
pub fn take(len: usize) -> Vec<f32> {
    if len >= MIN_CACHED_LEN {
        let reused = {
            let mut cache = cache();
            let found = cache.buffers.iter().rposition(|b| b.len() == len);
            found.map(|i| {
                let buffer = cache.buffers.remove(i);
                cache.bytes -= bytes_of(&buffer);
                buffer
            })
        };
        if let Some(mut buffer) = reused {
            if POISON.load(Ordering::Relaxed) {
                buffer.fill(f32::NAN);
            }
            return buffer;
        }
    }
    vec![0.0; len]
}

/// Returns a buffer to the cache (or to the system allocator, when it is small or the cache is full of newer ones).
fn give(buffer: Vec<f32>) {
    if buffer.len() < MIN_CACHED_LEN {
        return;
    }
    let mut cache = cache();
    let bytes = bytes_of(&buffer);
    if bytes > cache.limit {
        return;
    }
    let room = cache.limit - bytes;
    cache.shrink_to(room);
    cache.bytes += bytes;
    cache.buffers.push(buffer);
}

/// The most bytes the cache holds.
pub fn limit() -> usize {
    cache().limit
}

/// Sets the most bytes the cache holds, freeing the oldest buffers beyond it; 0 turns the cache off.
pub fn set_limit(bytes: usize) {
    let mut cache = cache();
    cache.limit = bytes;
    cache.shrink_to(bytes);
}

/// Bytes currently held in the cache (freed tensors kept for reuse).
pub fn cached_bytes() -> usize {
    cache().bytes
}

/// Frees every cached buffer.
pub fn release() {
    let mut cache = cache();
    cache.shrink_to(0);
}

/// When on, every reused buffer is filled with NaN before [`take`] returns it: a debugging aid that makes an output
/// element a kernel never wrote visible.
pub fn set_poison(on: bool) {
    POISON.store(on, Ordering::Relaxed);
}

/// An f32 host buffer that goes back to the cache when dropped.
#[derive(Default)]
pub struct HostVec(Vec<f32>);

impl HostVec {
    /// The buffer itself; it no longer returns to the cache on its own.
    pub fn into_vec(mut self) -> Vec<f32> {
        std::mem::take(&mut self.0)
    }
}

impl From<Vec<f32>> for HostVec {
    fn from(buffer: Vec<f32>) -> Self {
        HostVec(buffer)
    }
}

impl Drop for HostVec {
    fn drop(&mut self) {
        give(std::mem::take(&mut self.0));
    }
}

impl Clone for HostVec {
    fn clone(&self) -> Self {
        let mut copy = take(self.0.len());
        copy.copy_from_slice(&self.0);
        HostVec(copy)
    }
}

impl Deref for HostVec {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        &self.0
    }
}

impl DerefMut for HostVec {
    fn deref_mut(&mut self) -> &mut [f32] {
        &mut self.0
    }
}

impl std::fmt::Debug for HostVec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}
