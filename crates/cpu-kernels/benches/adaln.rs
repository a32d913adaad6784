//! The adaLN kernels of a DiT block at the `dit-s-2` shape (batch 64, 196 tokens of 192 features), forward and
//! backward, beside the composition they replace (layer norm, then a broadcast multiply by `1 + scale`, then a
//! broadcast add of `shift`; a broadcast multiply by the gate, then an add).
//!
//! PyTorch peer (the same shapes as composed eager ops, 2 threads): `benches/peers/torch_adaln.py`; both side by side:
//! `benches/peers/paired_adaln.sh`. Run: `RAYON_NUM_THREADS=2 cargo bench -p diffuse-cpu-kernels --bench adaln`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use diffuse_cpu_kernels::elementwise::{binary, BinaryOp};
use diffuse_cpu_kernels::gated_residual::{
    gated_residual_backward, gated_residual_forward, GatedShape,
};
use diffuse_cpu_kernels::layer_norm::{layer_norm_forward, LayerNormShape};
use diffuse_cpu_kernels::layer_norm_modulate::{
    layer_norm_modulate_backward, layer_norm_modulate_forward, ModulateShape,
};
use diffuse_cpu_kernels::strided::StridedRef;

const BATCH: usize = 64;
const TOKENS: usize = 196;
const DIM: usize = 192;

#[path = "shared/inputs.rs"]
mod inputs;
use inputs::filled;

fn bench(c: &mut Criterion) {
    // As `diffuse` runs its kernels: the calling thread is worker 0 of the pool (`threads.rs`).
    diffuse_cpu_kernels::threads::pool_with_calling_thread()
        .expect("the bench builds the global pool first");
    let (len, cond, rows) = (BATCH * TOKENS * DIM, BATCH * DIM, BATCH * TOKENS);
    let s = ModulateShape {
        batch: BATCH,
        tokens: TOKENS,
        dim: DIM,
        eps: 1e-6,
    };
    let (x, gy, other) = (filled(len, 1), filled(len, 2), filled(len, 3));
    let (scale, shift) = (filled(cond, 4), filled(cond, 5));
    let (mut y, mut mean, mut rstd) = (vec![0.0; len], vec![0.0; rows], vec![0.0; rows]);
    let (mut gx, mut gs, mut gb) = (vec![0.0; len], vec![0.0; cond], vec![0.0; cond]);
    let (mut tmp, mut tmp2) = (vec![0.0; len], vec![0.0; len]);
    let shape = [BATCH, TOKENS, DIM];
    let full = StridedRef {
        strides: &[TOKENS * DIM, DIM, 1],
        offset: 0,
    };
    let per_sample = StridedRef {
        strides: &[DIM, 0, 1],
        offset: 0,
    };

    let mut group = c.benchmark_group(format!("adaln B{BATCH} L{TOKENS} D{DIM}"));
    // The ideal traffic: the forward reads x and writes y; the backward reads x and dy and writes dx.
    group.throughput(Throughput::Bytes((2 * 4 * len) as u64));
    group.bench_function("modulate forward fused", |b| {
        b.iter(|| {
            layer_norm_modulate_forward(&s, &x, &scale, &shift, &mut y, &mut mean, &mut rstd)
                .unwrap()
        })
    });
    let gain: Vec<f32> = scale.iter().map(|v| 1.0 + v).collect();
    let (ones, zeros) = (vec![1.0; DIM], vec![0.0; DIM]);
    let plain = LayerNormShape {
        rows,
        dim: DIM,
        eps: 1e-6,
    };
    group.bench_function("modulate forward composed", |b| {
        b.iter(|| {
            layer_norm_forward(&plain, &x, &ones, &zeros, &mut tmp, &mut mean, &mut rstd).unwrap();
            binary(
                BinaryOp::Mul,
                &shape,
                &tmp,
                full,
                &gain,
                per_sample,
                &mut tmp2,
            )
            .unwrap();
            binary(
                BinaryOp::Add,
                &shape,
                &tmp2,
                full,
                &shift,
                per_sample,
                &mut y,
            )
            .unwrap();
        })
    });
    group.throughput(Throughput::Bytes((3 * 4 * len) as u64));
    group.bench_function("modulate backward fused", |b| {
        b.iter(|| {
            layer_norm_modulate_backward(
                &s, &x, &scale, &mean, &rstd, &gy, &mut gx, &mut gs, &mut gb,
            )
            .unwrap()
        })
    });
    let g = GatedShape {
        batch: BATCH,
        tokens: TOKENS,
        dim: DIM,
    };
    group.bench_function("gated residual forward fused", |b| {
        b.iter(|| gated_residual_forward(&g, &x, &scale, &other, &mut y).unwrap())
    });
    group.bench_function("gated residual forward composed", |b| {
        b.iter(|| {
            binary(
                BinaryOp::Mul,
                &shape,
                &other,
                full,
                &scale,
                per_sample,
                &mut tmp,
            )
            .unwrap();
            binary(BinaryOp::Add, &shape, &x, full, &tmp, full, &mut y).unwrap();
        })
    });
    group.bench_function("gated residual backward fused", |b| {
        b.iter(|| gated_residual_backward(&g, &scale, &other, &gy, &mut gx, &mut gs).unwrap())
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
