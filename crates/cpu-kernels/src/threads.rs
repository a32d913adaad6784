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
//!
//! Spinning workers. Between two parallel loops the caller runs serial code (autograd's bookkeeping, small
//! kernels), and a rayon worker that finds no work for a few microseconds goes to sleep; the next loop then starts
//! on the caller alone while the kernel wakes the worker (a futex wake, then however long the scheduler takes),
//! hundreds of times per training step. OpenMP runtimes, which PyTorch runs on, keep their threads spinning for a
//! while after each parallel region for this reason. In a pool built by [`pool_with_calling_thread`], the heavy
//! kernels' entry points call [`keep_workers_spinning`], which (when they are not already) sets every other worker
//! spinning: looking for work, running any it finds at once, until [`SPIN_IDLE`] passes without any, and then
//! returning to rayon's own sleep. The calling thread is never held: it only runs its share of the loops, as before.
//! Measured (`unet_time fashion-small train 20 32`, two threads, alternating): 214–224 ms per step against 223–228
//! ms before, the same CPU time per step (`docs/unet.md`, "Spinning workers").

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How long a spinning worker goes on looking for work after the last job it ran before it stops spinning.
pub const SPIN_IDLE: Duration = Duration::from_millis(20);

/// Whether the global pool was built by [`pool_with_calling_thread`] (only such a process's workers spin).
static SPINNING_POOL: AtomicBool = AtomicBool::new(false);
/// Spinning jobs started and not yet finished (one per worker of the pool while the workers spin).
static SPINNERS: AtomicUsize = AtomicUsize::new(0);

/// Builds rayon's global pool with the calling thread as one of its workers (call it first thing on the thread
/// that will run the kernels, before any parallel loop), whose other workers spin between parallel loops (see the
/// module header). An error when the global pool already exists.
pub fn pool_with_calling_thread() -> Result<(), rayon::ThreadPoolBuildError> {
    rayon::ThreadPoolBuilder::new()
        .use_current_thread()
        .build_global()?;
    SPINNING_POOL.store(true, Ordering::Relaxed);
    Ok(())
}

/// Sets the other workers of a pool built by [`pool_with_calling_thread`] spinning unless they already are (then
/// this is one atomic load); does nothing in any other pool or with one thread.
#[inline]
pub fn keep_workers_spinning() {
    if SPINNING_POOL.load(Ordering::Relaxed) && SPINNERS.load(Ordering::Relaxed) == 0 {
        start_spinning();
    }
}

/// Workers spinning now (started by [`keep_workers_spinning`] and not yet idle for [`SPIN_IDLE`]).
pub fn spinning_workers() -> usize {
    SPINNERS.load(Ordering::Acquire)
}

#[cold]
fn start_spinning() {
    let caller = rayon::current_thread_index();
    // Every worker but the caller (all of them when the caller is outside the pool).
    let spinners = rayon::current_num_threads() - usize::from(caller.is_some());
    if spinners == 0
        || SPINNERS
            .compare_exchange(0, spinners, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
    {
        return;
    }
    // One job per worker; the caller's own copy does nothing (it runs whenever the caller next waits for work).
    rayon::spawn_broadcast(move |context| {
        if Some(context.index()) != caller {
            spin_until_idle();
            SPINNERS.fetch_sub(1, Ordering::AcqRel);
        }
    });
}

/// Runs whatever work the pool has, as soon as it appears, until none has appeared for [`SPIN_IDLE`].
fn spin_until_idle() {
    let mut last_work = Instant::now();
    loop {
        match rayon::yield_now() {
            Some(rayon::Yield::Executed) => last_work = Instant::now(),
            Some(rayon::Yield::Idle) if last_work.elapsed() < SPIN_IDLE => std::hint::spin_loop(),
            _ => return,
        }
    }
}
