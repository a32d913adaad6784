//! The machine's single-precision FMA peak, the ceiling for the GEMM and conv figures taken in the same run.
//!
//! Each thread runs independent accumulator chains of one FMA instruction, more chains than FMA latency × ports so
//! the loop is bound by throughput alone, and the bench reports FLOP/s ("elem/s"):
//! - `avx2_fma_threads/T`: 12 chains of `_mm256_fmadd_ps` (12 of the 16 ymm registers), 12 × 8 lanes × 2 FLOP per
//!   iteration — the roof of the AVX2 micro-kernel, and the whole roof of an AVX2-only CPU;
//! - `avx512_fma_threads/T` (AVX-512F CPUs only): 24 chains of `_mm512_fmadd_ps` (24 of the 32 zmm registers), 24 × 16
//!   lanes × 2 FLOP — the roof of the AVX-512 micro-kernel. On a core with two 512-bit FMA ports this is twice the
//!   AVX2 figure, so a kernel's share of the peak must be read against the loop of its own width.

use std::arch::x86_64::*;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

const ITERATIONS: u64 = 1 << 22;
const AVX2_CHAINS: usize = 12;
const AVX512_CHAINS: usize = 24;

/// Runs the 256-bit FMA loop and returns a value depending on every chain, so none can be optimised away.
///
/// # Safety
/// The CPU supports AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
unsafe fn avx2_fma_loop(iterations: u64) -> f32 {
    let mut acc = [_mm256_set1_ps(1.0); AVX2_CHAINS];
    let x = _mm256_set1_ps(black_box(0.999_999));
    let y = _mm256_set1_ps(black_box(1e-7));
    for _ in 0..iterations {
        for a in &mut acc {
            *a = _mm256_fmadd_ps(*a, x, y);
        }
    }
    let mut sum = _mm256_setzero_ps();
    for a in acc {
        sum = _mm256_add_ps(sum, a);
    }
    let mut lanes = [0.0f32; 8];
    // SAFETY: `lanes` holds exactly one vector of 8 floats.
    unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), sum) };
    lanes.iter().sum()
}

/// The 512-bit twin of [`avx2_fma_loop`].
///
/// # Safety
/// The CPU supports AVX-512F.
#[target_feature(enable = "avx512f")]
unsafe fn avx512_fma_loop(iterations: u64) -> f32 {
    let mut acc = [_mm512_set1_ps(1.0); AVX512_CHAINS];
    let x = _mm512_set1_ps(black_box(0.999_999));
    let y = _mm512_set1_ps(black_box(1e-7));
    for _ in 0..iterations {
        for a in &mut acc {
            *a = _mm512_fmadd_ps(*a, x, y);
        }
    }
    let mut sum = _mm512_setzero_ps();
    for a in acc {
        sum = _mm512_add_ps(sum, a);
    }
    _mm512_reduce_add_ps(sum)
}

/// Benches `fma_loop` (FLOP per iteration and thread `flops`) on one thread and on all of rayon's.
fn bench_loop(c: &mut Criterion, name: &str, flops: u64, fma_loop: fn(u64) -> f32) {
    let mut group = c.benchmark_group("fma_peak");
    // One thread, then all of rayon's (once only when that is one: criterion refuses a repeated id).
    let mut thread_counts = vec![1, rayon::current_num_threads()];
    thread_counts.dedup();
    for threads in thread_counts {
        group.throughput(Throughput::Elements(threads as u64 * ITERATIONS * flops));
        group.bench_function(BenchmarkId::new(name, threads), |bench| {
            bench.iter(|| {
                let sums: Vec<f32> = rayon::broadcast(|ctx| {
                    if ctx.index() < threads {
                        fma_loop(ITERATIONS)
                    } else {
                        0.0
                    }
                });
                black_box(sums)
            })
        });
    }
    group.finish();
}

fn bench_fma_peak(c: &mut Criterion) {
    if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        // SAFETY: AVX2 and FMA were detected just above.
        let run = |iterations| unsafe { avx2_fma_loop(iterations) };
        bench_loop(c, "avx2_fma_threads", AVX2_CHAINS as u64 * 8 * 2, run);
    } else {
        eprintln!("fma_peak: this CPU lacks AVX2+FMA; no 256-bit peak to measure");
    }
    if is_x86_feature_detected!("avx512f") {
        // SAFETY: AVX-512F was detected just above.
        let run = |iterations| unsafe { avx512_fma_loop(iterations) };
        bench_loop(c, "avx512_fma_threads", AVX512_CHAINS as u64 * 16 * 2, run);
    }
}

criterion_group!(benches, bench_fma_peak);
criterion_main!(benches);
