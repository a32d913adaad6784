//! The DiT at training and sampling time: named configs on a batch of 64 28×28×1 images (learned variance, so two
//! output channels).
//!
//! - `train_step`: forward at spread timesteps with class labels, MSE of the whole output against a fixed target,
//!   backward, AdamW step;
//! - `sample_step`: one forward pass without recording the graph (one sampler step).
//!
//! Each iteration ends by reading a scalar back, so on a GPU the time covers the work, not just its launch.
//! PyTorch peer (the same configs through diffusers' `DiTTransformer2DModel`): `benches/peers/diffusers_dit.py`; both
//! side by side: `benches/peers/paired_dit.sh`.
//! Run: `RAYON_NUM_THREADS=2 cargo bench -p diffuse-diffusion --bench dit` (`DIFFUSE_BENCH_DEVICE=cuda` on a GPU).

use criterion::{criterion_group, criterion_main, Criterion};
use diffuse_autograd::{no_grad, Var};
use diffuse_models::{Backbone, BackboneConfig};
use diffuse_nn::{AdamW, ParamStore};
use diffuse_tensor::{Device, Tensor};
use std::time::Duration;

const BATCH: usize = 64;

fn bench(c: &mut Criterion) {
    // As `diffuse` runs its models: the calling thread is worker 0 of the pool, the others spin between parallel
    // loops (`cpu-kernels/src/threads.rs`).
    diffuse_tensor::pool_with_calling_thread().expect("the bench builds the global pool first");
    let device = match std::env::var("DIFFUSE_BENCH_DEVICE").as_deref() {
        Ok("cuda") => Device::Cuda(0),
        _ => Device::Cpu,
    };
    for name in ["dit-s-4", "dit-s-2", "dit-b-4"] {
        let config = BackboneConfig::named(name).unwrap();
        let out_channels = config.out_channels();
        let store = ParamStore::new(0, device);
        let model = Backbone::new(config, &store).unwrap();
        let params = store.params().into_iter().map(|(_, v)| v);
        let mut opt = AdamW::new(params, AdamW::default_config(1e-4)).unwrap();
        let x = Tensor::randn(&[BATCH, 1, 28, 28], 1, 0, device).unwrap();
        let target = Tensor::randn(&[BATCH, out_channels, 28, 28], 2, 0, device).unwrap();
        let target = Var::constant(target);
        let t: Vec<f64> = (0..BATCH).map(|i| ((i * 397) % 1000) as f64).collect();
        let labels: Vec<u32> = (0..BATCH as u32).map(|i| i % 11).collect();

        let mut group = c.benchmark_group(format!("dit/{name}"));
        group
            .sample_size(10)
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(10));
        group.bench_function(format!("train_step/batch{BATCH}"), |b| {
            b.iter(|| {
                let out = model
                    .forward(&Var::constant(x.clone()), &t, Some(&labels), None)
                    .unwrap();
                let loss = out
                    .sub(&target)
                    .unwrap()
                    .square()
                    .unwrap()
                    .mean_all()
                    .unwrap();
                let grads = loss.backward().unwrap();
                opt.step(&grads).unwrap();
                loss.tensor().to_scalar().unwrap()
            })
        });
        group.bench_function(format!("sample_step/batch{BATCH}"), |b| {
            b.iter(|| {
                no_grad(|| {
                    let out = model
                        .forward(&Var::constant(x.clone()), &t, Some(&labels), None)
                        .unwrap();
                    out.tensor().sum_all().unwrap().to_scalar().unwrap()
                })
            })
        });
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
