//! Fused noise updates against a memcpy that moves the same bytes, at MNIST (64×1×28×28) and CIFAR (128×3×32×32)
//! batch shapes. Bytes: q_sample reads x0 and writes x_t and ε (12 B/element); sampler_step reads x_t and the model
//! output and writes x_prev and x̂0 (16 B/element). The memcpy peer copies half those bytes (read + write = same
//! traffic), single-threaded.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use diffuse_cpu_kernels::noise::{
    q_sample, sampler_step, DdpmVariance, Prediction, StepCoefficients,
};

#[path = "shared/inputs.rs"]
mod inputs;
use inputs::filled;

fn bench_shape(c: &mut Criterion, name: &str, batch: usize, per_sample: usize) {
    let len = batch * per_sample;
    let x0 = filled(len, 1);
    let model = filled(len, 2);
    let sab = vec![0.7f32; batch];
    let somab = vec![0.71f32; batch];
    let coef = vec![
        StepCoefficients::ddpm(0.5, 0.6, Prediction::Epsilon, DdpmVariance::FixedSmall)
            .unwrap();
        batch
    ];
    let (mut a, mut b) = (vec![0.0f32; len], vec![0.0f32; len]);
    let mut group = c.benchmark_group(name);

    group.throughput(Throughput::Bytes((12 * len) as u64));
    group.bench_function("q_sample", |bench| {
        bench.iter(|| q_sample(&x0, &sab, &somab, 1, 0, &mut a, &mut b).unwrap())
    });
    let src = vec![1.0f32; len * 3 / 2];
    let mut dst = vec![0.0f32; len * 3 / 2];
    group.bench_function("memcpy 12 B/elem", |bench| {
        bench.iter(|| dst.copy_from_slice(&src))
    });

    group.throughput(Throughput::Bytes((16 * len) as u64));
    group.bench_function("sampler_step", |bench| {
        bench.iter(|| sampler_step(&x0, &model, &coef, Some(1.0), 1, 0, &mut a, &mut b).unwrap())
    });
    let src = vec![1.0f32; len * 2];
    let mut dst = vec![0.0f32; len * 2];
    group.bench_function("memcpy 16 B/elem", |bench| {
        bench.iter(|| dst.copy_from_slice(&src))
    });
    group.finish();
}

fn bench(c: &mut Criterion) {
    bench_shape(c, "noise 64x1x28x28", 64, 28 * 28);
    bench_shape(c, "noise 128x3x32x32", 128, 3 * 32 * 32);
}

criterion_group!(benches, bench);
criterion_main!(benches);
