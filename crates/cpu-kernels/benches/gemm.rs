//! sgemm throughput (criterion reports FLOP/s as "elem/s": one element = one floating-point operation, 2·m·n·k per
//! product) for diffuse's kernels and two Rust peers on the same row-major problems. Peers are benchmarked, never
//! called by the library. `gemm` runs on rayon's global pool; `matrixmultiply` uses its own threads
//! (`MATMUL_NUM_THREADS`, default the physical core count).
//!
//! `sgemm/diffuse/SIZE` is what `sgemm` runs: the micro-kernel `MicroKernel::detect` picks, named (with its tile) on
//! stderr when the bench starts. At 512³ every other micro-kernel this CPU supports runs too, as
//! `sgemm/diffuse-KERNEL/512`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use diffuse_cpu_kernels::gemm::{sgemm_batched_using, MatMut, MatRef, MicroKernel};

fn operand(len: usize, seed: u32) -> Vec<f32> {
    (0..len)
        .map(|i| {
            ((i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) >> 9) as f32
                / (1 << 23) as f32
                - 0.5
        })
        .collect()
}

fn bench_sgemm(c: &mut Criterion) {
    // As `diffuse` runs its kernels: the calling thread is worker 0 of the pool (`threads.rs`).
    diffuse_cpu_kernels::threads::pool_with_calling_thread()
        .expect("the bench builds the global pool first");
    let detected = MicroKernel::detect();
    let (mr, nr) = detected.tile_shape();
    eprintln!("sgemm/diffuse runs the {detected} micro-kernel ({mr}×{nr} register tile)");
    let mut group = c.benchmark_group("sgemm");
    group.sample_size(10);
    for size in [512usize, 2048] {
        let (a, b) = (operand(size * size, 1), operand(size * size, 2));
        let mut out = vec![0.0f32; size * size];
        group.throughput(Throughput::Elements(2 * (size as u64).pow(3)));

        let mut kernels = vec![(detected, "diffuse".to_string())];
        if size <= 512 {
            kernels.extend(
                MicroKernel::ALL
                    .into_iter()
                    .filter(|&k| k != detected && k.is_supported())
                    .map(|k| (k, format!("diffuse-{k}"))),
            );
        }
        for (kernel, name) in kernels {
            group.bench_function(BenchmarkId::new(name, size), |bench| {
                bench.iter(|| {
                    let (a, b) = (MatRef::row_major(&a, size), MatRef::row_major(&b, size));
                    let c = MatMut::row_major(&mut out, size);
                    sgemm_batched_using(kernel, 1, size, size, size, 1.0, a, 0, b, 0, 0.0, c, 0)
                        .unwrap();
                })
            });
        }

        group.bench_function(BenchmarkId::new("gemm-crate", size), |bench| {
            let n = size as isize;
            bench.iter(|| {
                // SAFETY: all three buffers hold size² floats with row stride `size` and column stride 1, as passed.
                unsafe {
                    gemm::gemm(
                        size,
                        size,
                        size,
                        out.as_mut_ptr(),
                        1,
                        n,
                        false,
                        a.as_ptr(),
                        1,
                        n,
                        b.as_ptr(),
                        1,
                        n,
                        0.0,
                        1.0,
                        false,
                        false,
                        false,
                        gemm::Parallelism::Rayon(0),
                    )
                }
            })
        });

        group.bench_function(BenchmarkId::new("matrixmultiply", size), |bench| {
            let n = size as isize;
            bench.iter(|| {
                // SAFETY: as above: size² floats each, row stride `size`, column stride 1.
                unsafe {
                    matrixmultiply::sgemm(
                        size,
                        size,
                        size,
                        1.0,
                        a.as_ptr(),
                        n,
                        1,
                        b.as_ptr(),
                        n,
                        1,
                        0.0,
                        out.as_mut_ptr(),
                        n,
                        1,
                    )
                }
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_sgemm);
criterion_main!(benches);
