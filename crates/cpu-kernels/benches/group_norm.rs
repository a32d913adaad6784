//! Group norm at a U-Net block shape: N 32, C 128, 14×14, G 32, forward and backward, alone and fused with SiLU.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use diffuse_cpu_kernels::group_norm::{group_norm_backward, group_norm_forward, GroupNormShape};
use diffuse_cpu_kernels::group_norm_silu::{group_norm_silu_backward, group_norm_silu_forward};

#[path = "shared/inputs.rs"]
mod inputs;
use inputs::filled;

fn bench(c: &mut Criterion) {
    // As `diffuse` runs its kernels: the calling thread is worker 0 of the pool (`threads.rs`).
    diffuse_cpu_kernels::threads::pool_with_calling_thread()
        .expect("the bench builds the global pool first");
    let s = GroupNormShape {
        batch: 32,
        channels: 128,
        spatial: 14 * 14,
        groups: 32,
        eps: 1e-5,
    };
    let len = s.batch * s.channels * s.spatial;
    let (x, gy) = (filled(len, 1), filled(len, 2));
    let (gamma, beta) = (vec![1.1f32; s.channels], vec![0.1f32; s.channels]);
    let (mut y, mut mean, mut rstd) = (vec![0.0; len], vec![0.0; 32 * 32], vec![0.0; 32 * 32]);
    let (mut gx, mut gg, mut gb) = (vec![0.0; len], vec![0.0; s.channels], vec![0.0; s.channels]);

    let mut group = c.benchmark_group("group_norm N32 C128 14x14 G32");
    // Forward reads x and writes y; backward reads x and grad_y and writes grad_x.
    group.throughput(Throughput::Bytes((2 * 4 * len) as u64));
    group.bench_function("forward", |b| {
        b.iter(|| group_norm_forward(&s, &x, &gamma, &beta, &mut y, &mut mean, &mut rstd).unwrap())
    });
    group.throughput(Throughput::Bytes((3 * 4 * len) as u64));
    group.bench_function("backward", |b| {
        b.iter(|| {
            group_norm_backward(&s, &x, &gamma, &mean, &rstd, &gy, &mut gx, &mut gg, &mut gb)
                .unwrap()
        })
    });
    group.throughput(Throughput::Bytes((2 * 4 * len) as u64));
    group.bench_function("forward with SiLU", |b| {
        b.iter(|| {
            group_norm_silu_forward(&s, &x, &gamma, &beta, &mut y, &mut mean, &mut rstd).unwrap()
        })
    });
    group.throughput(Throughput::Bytes((3 * 4 * len) as u64));
    group.bench_function("backward with SiLU", |b| {
        b.iter(|| {
            group_norm_silu_backward(
                &s, &x, &gamma, &beta, &mean, &rstd, &gy, &mut gx, &mut gg, &mut gb,
            )
            .unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
