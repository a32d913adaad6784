//! GEGLU forward and backward at a text U-Net transformer block's shape: 64 images of 14×14 tokens, 64 channels,
//! inner width 4·64 = 256 (input rows of 2·256).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use diffuse_cpu_kernels::geglu::{geglu_backward, geglu_forward};

#[path = "shared/inputs.rs"]
mod inputs;
use inputs::filled;

fn bench(c: &mut Criterion) {
    // As `diffuse` runs its kernels: the calling thread is worker 0 of the pool (`threads.rs`).
    diffuse_cpu_kernels::threads::pool_with_calling_thread()
        .expect("the bench builds the global pool first");
    let (rows, inner) = (64 * 14 * 14, 256);
    let (x, grad_out) = (filled(rows * 2 * inner, 1), filled(rows * inner, 2));
    let (mut out, mut grad_x) = (vec![0.0; rows * inner], vec![0.0; rows * 2 * inner]);
    let mut group = c.benchmark_group("geglu rows 12544 inner 256");
    group.throughput(Throughput::Elements((rows * inner) as u64));
    group.bench_function("forward", |b| {
        b.iter(|| geglu_forward(rows, inner, &x, &mut out).unwrap())
    });
    group.bench_function("backward", |b| {
        b.iter(|| geglu_backward(rows, inner, &x, &grad_out, &mut grad_x).unwrap())
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
