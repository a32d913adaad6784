//! What a sampler costs beyond its network: for each of the twelve samplers of `docs/samplers.md`, a 20-step run at
//! batch 64 of 28×28×1 whose "network" returns a stored tensor (so the time is the sampler's own tensor work), and
//! one call of the fashion-small U-Net on the same batch, the network a sampling run pays for at every call.
//!
//! - `step/NAME`: the run, with its network calls as criterion's elements, so the reported time per element is the
//!   sampler's overhead per network call;
//! - `network/fashion-small-b64`: one forward pass of the U-Net (no graph), with class labels as the run uses them.
//!
//! The overhead is (time per element of `step/NAME`) / (time of `network/fashion-small-b64`), to be at most 2 %.
//! Run: `RAYON_NUM_THREADS=2 cargo bench -p diffuse-diffusion --bench sampling_overhead`; pass a filter
//! (`-- step/dpm`) to run a part.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use diffuse_autograd::{no_grad, Var};
use diffuse_diffusion::sampler::scheduler::{SamplerOverrides, Scheduler};
use diffuse_diffusion::sampler::{named, Condition, Denoiser, Prediction};
use diffuse_diffusion::Result;
use diffuse_models::unet::{UNet2DModel, UNetConfig};
use diffuse_nn::ParamStore;
use diffuse_tensor::{Device, Tensor};
use std::cell::Cell;
use std::time::Duration;

const BATCH: usize = 64;
const STEPS: usize = 20;

/// A network that returns the same stored output for every call, and counts the calls.
struct Stored {
    out: Tensor,
    calls: Cell<u64>,
}

impl Denoiser for Stored {
    fn predict(&self, _x_t: &Tensor, _t: &[f64], _cond: Condition<'_>) -> Result<Tensor> {
        self.calls.set(self.calls.get() + 1);
        Ok(self.out.clone())
    }

    fn prediction(&self) -> Prediction {
        Prediction::Epsilon
    }
}

fn bench(c: &mut Criterion) {
    // As `diffuse` runs its models: the calling thread is worker 0 of the pool, the others spin between parallel
    // loops (`cpu-kernels/src/threads.rs`).
    diffuse_tensor::pool_with_calling_thread().expect("the bench builds the global pool first");
    let shape = [BATCH, 1, 28, 28];
    let noise = Tensor::randn(&shape, 1, 0, Device::Cpu).unwrap();
    let model = Stored {
        out: Tensor::randn(&shape, 2, 0, Device::Cpu).unwrap(),
        calls: Cell::new(0),
    };
    let mut group = c.benchmark_group("step");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    for name in named::ALL {
        let scheduler = Scheduler::named(name)
            .and_then(|s| {
                s.apply(&SamplerOverrides {
                    steps: Some(STEPS),
                    ..SamplerOverrides::default()
                })
            })
            .unwrap();
        model.calls.set(0);
        scheduler
            .sample_from(&model, &noise, Condition::NONE)
            .unwrap();
        group.throughput(Throughput::Elements(model.calls.get()));
        group.bench_function(name, |b| {
            b.iter(|| {
                scheduler
                    .sample_from(&model, &noise, Condition::NONE)
                    .unwrap()
            })
        });
    }
    group.finish();

    let store = ParamStore::new(0, Device::Cpu);
    let unet = UNet2DModel::new(UNetConfig::named("fashion-small").unwrap(), &store).unwrap();
    let t = vec![500.0; BATCH];
    let labels: Vec<u32> = (0..BATCH as u32).map(|i| i % 11).collect();
    let mut group = c.benchmark_group("network");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(10));
    group.bench_function(format!("fashion-small-b{BATCH}"), |b| {
        b.iter(|| {
            no_grad(|| {
                unet.forward(&Var::constant(noise.clone()), &t, Some(&labels))
                    .unwrap()
            })
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
