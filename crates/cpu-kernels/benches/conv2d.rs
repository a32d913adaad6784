//! conv2d throughput on ResNet-like 3×3, padding-1 layers (criterion "elem/s" = FLOP/s). A forward pass costs
//! 2·N·Cout·OH·OW·(Cin/groups)·KH·KW FLOP; each backward (input, weight) costs the same again. These are the direct
//! algorithm's FLOPs: the default algorithm here is Winograd F(2×2, 3×3), which does 2.25× fewer multiply-adds (1.72×
//! on 7×7), so its figures are effective rates. `forward-im2col` forces im2col + GEMM on the same layers.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use diffuse_cpu_kernels::conv2d::{
    conv2d_backward_input, conv2d_backward_weight, conv2d_forward, conv2d_forward_with,
    Conv2dAlgorithm, Conv2dShape,
};

#[path = "shared/conv_layer.rs"]
mod conv_layer;
use conv_layer::layer;

fn forward_flops(s: &Conv2dShape) -> u64 {
    let per_output = s.in_channels / s.groups * s.kernel_h * s.kernel_w;
    2 * (s.output_len() * per_output) as u64
}

fn filled(len: usize) -> Vec<f32> {
    (0..len)
        .map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5)
        .collect()
}

fn bench_conv2d(c: &mut Criterion) {
    // As `diffuse` runs its kernels: the calling thread is worker 0 of the pool (`threads.rs`).
    diffuse_cpu_kernels::threads::pool_with_calling_thread()
        .expect("the bench builds the global pool first");
    let mut group = c.benchmark_group("conv2d_3x3");
    group.sample_size(10);
    let layers = [
        (layer(32, 64, 28), false),
        (layer(32, 128, 14), true),
        (layer(32, 256, 7), false),
    ];
    for (s, with_backward) in layers {
        let name = format!("N{}_C{}_{}x{}", s.batch, s.in_channels, s.in_h, s.in_w);
        let (x, w, b) = (
            filled(s.input_len()),
            filled(s.weight_len()),
            filled(s.out_channels),
        );
        let (mut y, mut dx, mut dw, mut db) = (
            vec![0.0; s.output_len()],
            vec![0.0; s.input_len()],
            vec![0.0; s.weight_len()],
            vec![0.0; s.out_channels],
        );

        group.throughput(Throughput::Elements(forward_flops(&s)));
        group.bench_function(BenchmarkId::new("forward", &name), |bench| {
            bench.iter(|| conv2d_forward(&s, &x, &w, Some(&b), &mut y).unwrap())
        });
        group.bench_function(BenchmarkId::new("forward-im2col", &name), |bench| {
            let im2col = Conv2dAlgorithm::Im2col;
            bench.iter(|| conv2d_forward_with(im2col, &s, &x, &w, Some(&b), &mut y).unwrap())
        });
        if with_backward {
            group.throughput(Throughput::Elements(3 * forward_flops(&s)));
            group.bench_function(BenchmarkId::new("forward+backward", &name), |bench| {
                bench.iter(|| {
                    conv2d_forward(&s, &x, &w, Some(&b), &mut y).unwrap();
                    conv2d_backward_input(&s, &y, &w, &mut dx).unwrap();
                    conv2d_backward_weight(&s, &x, &y, &mut dw, Some(&mut db)).unwrap();
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench_conv2d);
criterion_main!(benches);
