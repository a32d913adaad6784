//! The machine's memory bandwidth, the other ceiling of the roofline (`diffuse-figures roofline`): a STREAM-style
//! triad `a[i] = b[i] + s·c[i]` over three arrays of 32 Mi floats (384 MiB, far beyond any cache), split into fixed
//! chunks over rayon's threads, on one thread and on all. Bytes counted: two reads and one write per element
//! (12 B; the write-allocate read that a cache may add is not counted, as in STREAM).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rayon::prelude::*;
use std::hint::black_box;

const LEN: usize = 32 << 20;
const CHUNK: usize = 1 << 16;

fn triad(a: &mut [f32], b: &[f32], c: &[f32], s: f32) {
    a.par_chunks_mut(CHUNK)
        .zip(b.par_chunks(CHUNK).zip(c.par_chunks(CHUNK)))
        .for_each(|(a, (b, c))| {
            for ((a, b), c) in a.iter_mut().zip(b).zip(c) {
                *a = b + s * c;
            }
        });
}

fn bench_bandwidth(c: &mut Criterion) {
    let (b, cc) = (vec![1.0f32; LEN], vec![2.0f32; LEN]);
    let mut a = vec![0.0f32; LEN];
    let mut group = c.benchmark_group("memory_bandwidth");
    group.sample_size(10);
    group.throughput(Throughput::Bytes((12 * LEN) as u64));
    // One thread, then all of rayon's (once only when that is one: criterion refuses a repeated id).
    let mut thread_counts = vec![1, rayon::current_num_threads()];
    thread_counts.dedup();
    for threads in thread_counts {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("a rayon pool of the machine's thread count");
        group.bench_function(BenchmarkId::new("triad_threads", threads), |bench| {
            bench.iter(|| pool.install(|| triad(&mut a, &b, &cc, black_box(0.5))))
        });
    }
    group.finish();
}

criterion_group!(benches, bench_bandwidth);
criterion_main!(benches);
