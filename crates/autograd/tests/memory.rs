//! What the graph keeps alive, measured with a counting allocator (this file holds one test, so no other test
//! allocates concurrently): an output that no backward rule saved is freed as soon as the forward code drops its
//! variable, and backward releases the tensors the rules saved as it goes, so nothing is left afterwards. Freed
//! buffers kept in the tensor crate's host cache for reuse do not count as held.

use diffuse_autograd::Var;
use diffuse_tensor::backend::host_cache;
use diffuse_tensor::{Device, Tensor};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call forwards to `System` with the caller's arguments; the counter is bookkeeping only.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: forwarded unchanged.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: forwarded unchanged.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Bytes allocated and held by live objects: what the allocator has handed out, less the freed buffers the tensor
/// crate keeps in its host cache for reuse.
fn live() -> isize {
    LIVE.load(Ordering::Relaxed) - host_cache::cached_bytes() as isize
}

const N: usize = 1 << 20;
/// One f32 tensor of N elements; allowances below are small against it.
const TENSOR: isize = 4 * N as isize;

#[test]
fn outputs_no_rule_saved_are_freed_with_their_variable_and_backward_frees_the_rest() {
    let x = Var::leaf(Tensor::randn(&[N], 1, 0, Device::Cpu).unwrap());
    let start = live();
    // affine saves nothing; exp saves its output; sum saves nothing of size N.
    let scaled = x.affine(0.5, 0.0).unwrap();
    let e = scaled.exp().unwrap();
    let loss = e.sum_all().unwrap();
    assert!(live() - start >= 2 * TENSOR);
    drop(scaled);
    // The scaled values are needed by no rule: dropping the variable frees them although the graph is alive.
    let after_drop = live() - start;
    assert!(
        after_drop < TENSOR + TENSOR / 8,
        "{after_drop} bytes still held"
    );
    drop(e);
    // exp's output stays: its rule saved it.
    assert!(live() - start >= TENSOR);
    let grads = loss.backward().unwrap();
    // After backward only the gradient of x (one tensor) remains besides small bookkeeping.
    let after_backward = live() - start;
    assert!(
        after_backward < TENSOR + TENSOR / 8,
        "{after_backward} bytes held after backward"
    );
    assert_eq!(grads.get(&x).unwrap().numel(), N);
}
