//! The spinning workers of a pool built by `pool_with_calling_thread` (`threads.rs`), in a process of their own (the
//! global pool can be built once per process): they start when a kernel is called, all but the caller, they run the
//! kernels' work without changing a result, and they stop once the pool has had no work for `SPIN_IDLE`.

use diffuse_cpu_kernels::gemm::{sgemm, MatMut, MatRef};
use diffuse_cpu_kernels::threads::{
    keep_workers_spinning, pool_with_calling_thread, spinning_workers, SPIN_IDLE,
};
use std::time::{Duration, Instant};

/// `C = A·B` for a 64 × 64 × 64 product of small integers (exact in f32), through the kernels' entry point.
fn product() -> Vec<f32> {
    let n = 64;
    let a: Vec<f32> = (0..n * n).map(|i| (i % 7) as f32 - 3.0).collect();
    let b: Vec<f32> = (0..n * n).map(|i| (i % 5) as f32 - 2.0).collect();
    let mut c = vec![0.0; n * n];
    let (a, b) = (MatRef::row_major(&a, n), MatRef::row_major(&b, n));
    sgemm(n, n, n, 1.0, a, b, 0.0, MatMut::row_major(&mut c, n)).unwrap();
    c
}

/// Waits up to `limit` for no worker to be spinning; whether that happened.
fn all_stopped_within(limit: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if spinning_workers() == 0 {
            return true;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    false
}

#[test]
fn workers_spin_while_kernels_run_and_stop_when_the_pool_is_idle() {
    // Before the pool is built this way, nothing spins.
    keep_workers_spinning();
    assert_eq!(spinning_workers(), 0);

    std::env::set_var("RAYON_NUM_THREADS", "3");
    pool_with_calling_thread().unwrap();
    assert_eq!(rayon::current_num_threads(), 3);

    // A kernel call sets the two other workers spinning; a second call while they spin starts no more. (The count is
    // set when the call starts them and falls only after a worker has had no work for SPIN_IDLE, so it is 2 unless
    // this thread was held up for that long.)
    let start = Instant::now();
    let want = product();
    let spinning = spinning_workers();
    if start.elapsed() < SPIN_IDLE {
        assert_eq!(spinning, 2, "the workers besides the caller");
    }
    for _ in 0..20 {
        assert_eq!(product(), want, "a result computed with spinning workers");
    }
    assert!(spinning_workers() <= 2);

    // Idle for SPIN_IDLE, they stop (with room for a slow scheduler), and the next call starts them again.
    assert!(
        all_stopped_within(SPIN_IDLE * 50),
        "{} workers still spinning",
        spinning_workers()
    );
    let start = Instant::now();
    assert_eq!(product(), want);
    let spinning = spinning_workers();
    if start.elapsed() < SPIN_IDLE {
        assert_eq!(spinning, 2, "started again");
    }
    assert!(all_stopped_within(SPIN_IDLE * 50));
}
