//! AdamW on 10M parameters: reads p, g, m, v and writes p, m, v (28 B/parameter).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use diffuse_cpu_kernels::adamw::{adamw_step, AdamWConfig};

fn bench(c: &mut Criterion) {
    // As `diffuse` runs its kernels: the calling thread is worker 0 of the pool (`threads.rs`).
    diffuse_cpu_kernels::threads::pool_with_calling_thread()
        .expect("the bench builds the global pool first");
    let n = 10_000_000;
    let cfg = AdamWConfig {
        lr: 1e-4,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.01,
    };
    let grads: Vec<f32> = (0..n).map(|i| ((i % 1000) as f32 - 500.0) * 1e-3).collect();
    let (mut p, mut m, mut v) = (vec![0.5f32; n], vec![0.0f32; n], vec![0.0f32; n]);
    let mut group = c.benchmark_group("adamw 10M");
    group.sample_size(20);
    group.throughput(Throughput::Bytes((28 * n) as u64));
    let mut step = 0;
    group.bench_function("step", |b| {
        b.iter(|| {
            step += 1;
            adamw_step(&cfg, step, &mut p, &grads, &mut m, &mut v).unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
