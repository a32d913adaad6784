//! Attention forward (and backward at the short shapes) at three shapes: a 14×14 vision block (B32 H4 L196 d32), the
//! 7×7 block of the `fashion-base` U-Net at batch 64 (B64 H4 L49 d32) and a long sequence (B8 H8 L1024 d64). Throughput is counted in FLOPs (2 matmuls of 2·L²·d each per problem forward).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use diffuse_cpu_kernels::attention::{attention_backward, attention_forward, AttentionShape};

#[path = "shared/inputs.rs"]
mod inputs;
use inputs::filled;

fn bench_shape(
    c: &mut Criterion,
    name: &str,
    batch_heads: usize,
    len: usize,
    d: usize,
    with_backward: bool,
) {
    let s = AttentionShape::dense(batch_heads, 1, len, len, d, 1.0 / (d as f32).sqrt());
    let n = batch_heads * len * d;
    let (q, k, v, go) = (filled(n, 1), filled(n, 2), filled(n, 3), filled(n, 4));
    let (mut out, mut lse) = (vec![0.0; n], vec![0.0; batch_heads * len]);
    let mut group = c.benchmark_group(name);
    group.sample_size(10);
    let flops = 4 * batch_heads * len * len * d;
    group.throughput(Throughput::Elements(flops as u64));
    group.bench_function("forward", |b| {
        b.iter(|| attention_forward(&s, &q, &k, &v, None, &mut out, &mut lse).unwrap())
    });
    if with_backward {
        let (mut gq, mut gk, mut gv) = (vec![0.0; n], vec![0.0; n], vec![0.0; n]);
        // Backward: the 5 L²d-sized products of the textbook backward (S, dP, dV, dQ, dK), 2 FLOPs each.
        group.throughput(Throughput::Elements(
            (5 * 2 * batch_heads * len * len * d) as u64,
        ));
        group.bench_function("backward", |b| {
            b.iter(|| {
                attention_backward(
                    &s, &q, &k, &v, None, &out, &lse, &go, &mut gq, &mut gk, &mut gv,
                )
                .unwrap()
            })
        });
    }
    group.finish();
}

fn bench(c: &mut Criterion) {
    // As `diffuse` runs its kernels: the calling thread is worker 0 of the pool (`threads.rs`).
    diffuse_cpu_kernels::threads::pool_with_calling_thread()
        .expect("the bench builds the global pool first");
    bench_shape(c, "attention B32 H4 L196 d32", 32 * 4, 196, 32, true);
    bench_shape(c, "attention B64 H4 L49 d32", 64 * 4, 49, 32, true);
    bench_shape(c, "attention B8 H8 L1024 d64", 8 * 8, 1024, 64, false);
}

criterion_group!(benches, bench);
criterion_main!(benches);
