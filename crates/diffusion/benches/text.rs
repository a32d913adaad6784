//! The text-to-image pieces at `diffuse clip train`'s and `fashion-text`'s sizes:
//!
//! - `encoder/prompts64`: the CLIP text encoder (width 64, 2 layers, 4 heads, MLP 128, 20 positions, 1024 tokens:
//!   `clip train`'s defaults) on 64 prompts of 20 ids, without the tape (what conditioning a batch costs);
//! - `fashion-text/train_step/batch64`: the cross-attention U-Net `fashion-text` on 64 28×28×1 images attending to
//!   64 contexts of 20×64: forward at spread timesteps, MSE against noise, backward, AdamW step.
//!
//! PyTorch peer (transformers' CLIPTextModel and diffusers' UNet2DConditionModel of the same configs, 2 threads):
//! `benches/peers/transformers_diffusers_text.py`; both side by side: `benches/peers/paired_text.sh`.
//! Run: `RAYON_NUM_THREADS=2 cargo bench -p diffuse-diffusion --bench text`.

use criterion::{criterion_group, criterion_main, Criterion};
use diffuse_autograd::Var;
use diffuse_models::clip::{ClipTextConfig, ClipTextModel};
use diffuse_models::unet_condition::{UNet2DConditionConfig, UNet2DConditionModel};
use diffuse_nn::{AdamW, ParamStore};
use diffuse_tensor::{Device, Tensor};
use std::time::Duration;

const BATCH: usize = 64;
const CONTEXT: usize = 20;

/// `diffuse clip train`'s default text tower.
fn text_config() -> ClipTextConfig {
    ClipTextConfig {
        vocab_size: 1024,
        hidden_size: 64,
        intermediate_size: 128,
        projection_dim: 64,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        max_position_embeddings: CONTEXT,
        pad_token_id: Some(0),
        bos_token_id: Some(0),
        eos_token_id: Some(2),
        ..ClipTextConfig::default()
    }
}

fn bench(c: &mut Criterion) {
    // As `diffuse` runs its models: the calling thread is worker 0 of the pool, the others spin between parallel
    // loops (`cpu-kernels/src/threads.rs`).
    diffuse_tensor::pool_with_calling_thread().expect("the bench builds the global pool first");
    let mut group = c.benchmark_group("text");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(10));

    let store = ParamStore::new(0, Device::Cpu);
    let encoder = ClipTextModel::new(text_config(), &store).unwrap();
    // Deterministic ids below the vocabulary, each sequence ending in the end token 2 (where the pooling reads).
    let ids: Vec<u32> = (0..BATCH * CONTEXT)
        .map(|i| {
            if i % CONTEXT == CONTEXT - 1 {
                2
            } else {
                3 + (i * 7919 % 1000) as u32
            }
        })
        .collect();
    group.bench_function(format!("encoder/prompts{BATCH}"), |b| {
        b.iter(|| encoder.encode(&ids, BATCH).unwrap())
    });

    let store = ParamStore::new(0, Device::Cpu);
    let config = UNet2DConditionConfig::named("fashion-text").unwrap();
    let unet = UNet2DConditionModel::new(config, &store).unwrap();
    let params = store.params().into_iter().map(|(_, v)| v);
    let mut opt = AdamW::new(params, AdamW::default_config(1e-4)).unwrap();
    let x = Tensor::randn(&[BATCH, 1, 28, 28], 1, 0, Device::Cpu).unwrap();
    let noise = Var::constant(Tensor::randn(&[BATCH, 1, 28, 28], 2, 0, Device::Cpu).unwrap());
    let context = Var::constant(Tensor::randn(&[BATCH, CONTEXT, 64], 3, 0, Device::Cpu).unwrap());
    let t: Vec<f64> = (0..BATCH).map(|i| ((i * 397) % 1000) as f64).collect();
    group.bench_function(format!("fashion-text/train_step/batch{BATCH}"), |b| {
        b.iter(|| {
            let out = unet
                .forward(&Var::constant(x.clone()), &t, &context, None)
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
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
