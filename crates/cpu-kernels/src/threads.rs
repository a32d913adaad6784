//! The process's thread pool, with the calling thread in it.
//!
//! Every kernel runs its parallel loops on rayon's global pool. Called from a thread outside the pool (a program's
//! main thread), each parallel loop is handed to the pool while the caller sleeps until it is done: two context
//! switches per kernel call however small the call, thousands per U-Net training step, and a wake-up latency that
//! depends on what else the machine runs. [`pool_with_calling_thread`] makes the calling thread worker 0 of the
//! global pool instead: its parallel loops start on it at once, the other workers steal the halves they can take,
//! and the caller sleeps only when it waits for a stolen half. With one thread, nothing is handed off at all.
//!
//! The pool has `RAYON_NUM_THREADS` threads (the machine's cores by default) counting the caller, one fewer spawned
//! thread than before. Which thread runs which part of a loop never changes a result: every kernel splits its work
//! by the shape alone.

/// Builds rayon's global pool with the calling thread as one of its workers (call it first thing on the thread
/// that will run the kernels, before any parallel loop). An error when the global pool already exists.
pub fn pool_with_calling_thread() -> Result<(), rayon::ThreadPoolBuildError> {
    rayon::ThreadPoolBuilder::new()
        .use_current_thread()
        .build_global()
}
