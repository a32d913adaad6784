//! The machine's single-precision FMA peak, the ceiling for the GEMM and conv figures taken in the same run.
//!
//! Each thread runs 12 independent accumulator chains of `_mm256_fmadd_ps` (more chains than FMA latency × ports, so
//! the loop is throughput-bound): 12 FMAs × 8 lanes × 2 FLOP per iteration. Reported as FLOP/s ("elem/s").

use std::arch::x86_64::*;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

const ITERATIONS: u64 = 1 << 22;
const CHAINS: usize = 12;

/// Runs the FMA loop and returns a value depending on every chain, so none can be optimised away.
///
/// # Safety
/// The CPU supports AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
unsafe fn fma_loop(iterations: u64) -> f32 {
    let mut acc = [_mm256_set1_ps(1.0); CHAINS];
    let x = _mm256_set1_ps(black_box(0.999_999));
    let y = _mm256_set1_ps(black_box(1e-7));
    for _ in 0..iterations {
        for a in &mut acc {
            *a = _mm256_fmadd_ps(*a, x, y);
        }
    }
    let mut lanes = [0.0f32; 8];
    let sum = acc
        .iter()
        .fold(_mm256_setzero_ps(), |s, &a| _mm256_add_ps(s, a));
    // SAFETY: `lanes` holds exactly one vector of 8 floats.
    unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), sum) };
    lanes.iter().sum()
}

fn bench_fma_peak(c: &mut Criterion) {
    if !(is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")) {
        eprintln!("fma_peak: this CPU lacks AVX2+FMA; nothing to measure");
        return;
    }
    let mut group = c.benchmark_group("fma_peak");
    // One thread, then all of rayon's (once only when that is one: criterion refuses a repeated id).
    let mut thread_counts = vec![1, rayon::current_num_threads()];
    thread_counts.dedup();
    for threads in thread_counts {
        group.throughput(Throughput::Elements(
            threads as u64 * ITERATIONS * CHAINS as u64 * 8 * 2,
        ));
        group.bench_function(BenchmarkId::new("avx2_fma_threads", threads), |bench| {
            bench.iter(|| {
                let sums: Vec<f32> = rayon::broadcast(|ctx| {
                    if ctx.index() < threads {
                        // SAFETY: AVX2 and FMA were detected above.
                        unsafe { fma_loop(ITERATIONS) }
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

criterion_group!(benches, bench_fma_peak);
criterion_main!(benches);
