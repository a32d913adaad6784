//! The U-Net at training and sampling time: the named Fashion configs on a batch of 64 28×28×1 images.
//!
//! - `train_step`: forward at random timesteps with class labels, MSE against noise, backward, AdamW step;
//! - `sample_step`: one forward pass without recording the graph (one sampler step).
//!
//! PyTorch peer (same configs through diffusers, 2 threads): `benches/peers/diffusers_unet.py`.
//! Run: `RAYON_NUM_THREADS=2 cargo bench -p diffuse-diffusion --bench unet`.

use criterion::{criterion_group, criterion_main, Criterion};
use diffuse_autograd::{no_grad, Var};
use diffuse_models::unet::{UNet2DModel, UNetConfig};
use diffuse_nn::{AdamW, ParamStore};
use diffuse_tensor::{Device, Tensor};
use std::time::Duration;

const BATCH: usize = 64;

fn bench(c: &mut Criterion) {
    // As `diffuse` runs its models: the calling thread is worker 0 of the pool, the others spin between parallel
    // loops (`cpu-kernels/src/threads.rs`).
    diffuse_tensor::pool_with_calling_thread().expect("the bench builds the global pool first");
    for name in ["fashion-small", "fashion-base"] {
        let store = ParamStore::new(0, Device::Cpu);
        let model = UNet2DModel::new(UNetConfig::named(name).unwrap(), &store).unwrap();
        let params = store.params().into_iter().map(|(_, v)| v);
        let mut opt = AdamW::new(params, AdamW::default_config(1e-4)).unwrap();
        let x = Tensor::randn(&[BATCH, 1, 28, 28], 1, 0, Device::Cpu).unwrap();
        let noise = Var::constant(Tensor::randn(&[BATCH, 1, 28, 28], 2, 0, Device::Cpu).unwrap());
        let t: Vec<f64> = (0..BATCH).map(|i| ((i * 397) % 1000) as f64).collect();
        let labels: Vec<u32> = (0..BATCH as u32).map(|i| i % 11).collect();

        let mut group = c.benchmark_group(format!("unet/{name}"));
        group
            .sample_size(10)
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(10));
        group.bench_function(format!("train_step/batch{BATCH}"), |b| {
            b.iter(|| {
                let out = model
                    .forward(&Var::constant(x.clone()), &t, Some(&labels))
                    .unwrap();
                let loss = out
                    .sub(&noise)
                    .unwrap()
                    .square()
                    .unwrap()
                    .mean_all()
                    .unwrap();
                let grads = loss.backward().unwrap();
                opt.step(&grads).unwrap();
            })
        });
        group.bench_function(format!("sample_step/batch{BATCH}"), |b| {
            b.iter(|| {
                no_grad(|| {
                    model
                        .forward(&Var::constant(x.clone()), &t, Some(&labels))
                        .unwrap()
                })
            })
        });
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
