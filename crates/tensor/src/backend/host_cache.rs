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
//!
//! [`counters`] reports what went through [`take`] since the last [`reset_counters`]: how many output buffers the CPU
//! operations asked for and their bytes (each is one pass of writes over that much memory), and how many of them the
//! cache could not serve (fresh allocations: a zero fill and, for large ones, page faults). `examples/step_counts.rs`
//! of the diffusion crate prints them per training step.

use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
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

/// Requests to [`take`], their bytes, and those of them served by a fresh allocation (`[count, bytes]` each).
static TAKEN: [AtomicU64; 2] = [AtomicU64::new(0), AtomicU64::new(0)];
static FRESH: [AtomicU64; 2] = [AtomicU64::new(0), AtomicU64::new(0)];

fn count(counter: &[AtomicU64; 2], len: usize) {
    counter[0].fetch_add(1, Ordering::Relaxed);
    counter[1].fetch_add((len * std::mem::size_of::<f32>()) as u64, Ordering::Relaxed);
}

/// What went through [`take`] since the last [`reset_counters`] (all threads together).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Output buffers requested (every length, cached or not).
    pub buffers: u64,
    /// Their bytes: each is written once by the kernel that asked, so this is the memory the outputs cover.
    pub bytes: u64,
    /// Requests the cache did not serve: new allocations (zero-filled by the system allocator).
    pub fresh_buffers: u64,
    pub fresh_bytes: u64,
}

/// The counts since the last [`reset_counters`].
pub fn counters() -> Counters {
    let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
    Counters {
        buffers: load(&TAKEN[0]),
        bytes: load(&TAKEN[1]),
        fresh_buffers: load(&FRESH[0]),
        fresh_bytes: load(&FRESH[1]),
    }
}

/// Sets every count of [`counters`] to zero.
pub fn reset_counters() {
    for c in TAKEN.iter().chain(&FRESH) {
        c.store(0, Ordering::Relaxed);
    }
}

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
    count(&TAKEN, len);
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
    count(&FRESH, len);
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

/// Runs `phase` with the cache emptied before and after it: for a stretch that asks for other buffer lengths than
/// the loop around it (a sample grid or an evaluation inside a training run, at another batch size), so that the
/// loop's cached buffers and the stretch's do not sit side by side, each set unused while the other runs, and the
/// peak memory is the larger of the two instead of their sum. The loop's next step pays its fresh allocations once.
pub fn emptied_around<T>(phase: impl FnOnce() -> T) -> T {
    release();
    let result = phase();
    release();
    result
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
