//! Latent diffusion against pixel diffusion, and the autoencoder's training step, at batch 64:
//!
//! - `latent/fashion-latent/sample_step`: one forward pass of the latent U-Net on 4×7×7 latents (one sampler step);
//! - `latent/fashion-small/sample_step`: the same for the pixel U-Net on 1×28×28 images, in the same run, so that
//!   their ratio is the latent model's speed-up per step;
//! - `latent/fashion-vae/decode`: the `fashion-vae` decoder on 64 latents, paid once per sample after the sampler;
//! - `vae/fashion-vae/train_step`: one `AutoencoderTrainer::step` (batch gather, encode, posterior sample, decode,
//!   L1 + β·KL, the gradient at x̂, one backward pass, AdamW, EMA), what `benches/peers/diffusers_vae.py` times.
//!
//! Sampling and decoding an image in S steps costs `S·latent_step + decode` against `S·pixel_step` in pixels.
//! Run: `RAYON_NUM_THREADS=2 cargo bench -p diffuse-diffusion --bench latent` (or `benches/peers/paired_vae.sh`).

use criterion::{criterion_group, criterion_main, Criterion};
use diffuse_autograd::{no_grad, Var};
use diffuse_diffusion::autoencoder::{AutoencoderTrainConfig, AutoencoderTrainer, Reconstruction};
use diffuse_diffusion::data::Dataset;
use diffuse_models::unet::{UNet2DModel, UNetConfig};
use diffuse_models::vae::{AutoencoderKL, AutoencoderKLConfig};
use diffuse_nn::{EmaWarmup, LrSchedule, ParamStore};
use diffuse_tensor::{Device, Tensor};
use std::time::Duration;

const BATCH: usize = 64;

/// The settings of `diffuse vae train`'s defaults without the optional terms.
fn vae_train_config() -> AutoencoderTrainConfig {
    AutoencoderTrainConfig {
        seed: 0,
        steps: u64::MAX,
        batch_size: BATCH,
        lr: LrSchedule::Constant { lr: 1e-4 },
        adam_beta1: 0.5,
        adam_beta2: 0.9,
        adam_eps: 1e-8,
        weight_decay: 0.0,
        grad_clip: None,
        ema_decay: 0.999,
        ema_warmup: EmaWarmup::Fraction,
        reconstruction: Reconstruction::L1,
        kl_weight: 1e-6,
        perceptual_weight: 0.0,
        adversarial: None,
        hflip: false,
        max_nonfinite: 3,
        scale_images: 2,
    }
}

fn group<'a>(
    c: &'a mut Criterion,
    name: &str,
) -> criterion::BenchmarkGroup<'a, criterion::measurement::WallTime> {
    let mut group = c.benchmark_group(name);
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(10));
    group
}

fn bench(c: &mut Criterion) {
    // As `diffuse` runs its models: the calling thread is worker 0 of the pool, the others spin between parallel
    // loops (`cpu-kernels/src/threads.rs`).
    diffuse_tensor::pool_with_calling_thread().expect("the bench builds the global pool first");
    let t: Vec<f64> = (0..BATCH).map(|i| ((i * 397) % 1000) as f64).collect();
    let labels: Vec<u32> = (0..BATCH as u32).map(|i| i % 11).collect();
    for (name, shape) in [
        ("fashion-latent", [BATCH, 4, 7, 7]),
        ("fashion-small", [BATCH, 1, 28, 28]),
    ] {
        let store = ParamStore::new(0, Device::Cpu);
        let model = UNet2DModel::new(UNetConfig::named(name).unwrap(), &store).unwrap();
        let x = Tensor::randn(&shape, 1, 0, Device::Cpu).unwrap();
        let mut g = group(c, &format!("latent/{name}"));
        g.bench_function(format!("sample_step/batch{BATCH}"), |b| {
            b.iter(|| {
                no_grad(|| {
                    model
                        .forward(&Var::constant(x.clone()), &t, Some(&labels))
                        .unwrap()
                })
            })
        });
        g.finish();
    }

    let store = ParamStore::new(0, Device::Cpu);
    let vae =
        AutoencoderKL::new(AutoencoderKLConfig::named("fashion-vae").unwrap(), &store).unwrap();
    let z = Tensor::randn(&[BATCH, 4, 7, 7], 2, 0, Device::Cpu).unwrap();
    let mut g = group(c, "latent/fashion-vae");
    g.bench_function(format!("decode/batch{BATCH}"), |b| {
        b.iter(|| vae.decode_tensor(&z).unwrap())
    });
    g.finish();

    let pixels: Vec<u8> = (0..BATCH * 28 * 28).map(|i| (i * 37 % 251) as u8).collect();
    let data = Dataset::from_u8(&pixels, None, 1, 28, 28).unwrap();
    let config = AutoencoderKLConfig::named("fashion-vae").unwrap();
    let mut trainer =
        AutoencoderTrainer::new_on(vae_train_config(), config, Device::Cpu, None).unwrap();
    let mut g = group(c, "vae/fashion-vae");
    g.bench_function(format!("train_step/batch{BATCH}"), |b| {
        b.iter(|| trainer.step(&data).unwrap())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
