//! A loop over one of the steps that `benches/peers/paired_vae.sh` and `benches/peers/paired_text.sh` time against
//! PyTorch, for a profiler to attach to (the benches' criterion harness would profile itself too):
//!
//! - `vae`: `AutoencoderTrainer::step` of `fashion-vae` at batch 64 with the bench's settings (L1 + β·KL, no
//!   perceptual or adversarial term);
//! - `encoder`: the CLIP text encoder of `diffuse clip train`'s defaults on 64 prompts of 20 tokens, without the tape;
//! - `text-unet`: the `fashion-text` cross-attention U-Net's training step at batch 64 (forward, MSE, backward, AdamW).
//!
//! Each configuration is the one of `crates/diffusion/benches/{latent,text}.rs`. Run on one core, e.g.
//! `RAYON_NUM_THREADS=1 taskset -c 1 perf record -g target/release/examples/text_latent_profile vae 20`
//! and read `perf report --no-children` (fractions, not times, on a shared machine).
//!
//! Run: `cargo run --release -p diffuse-diffusion --example text_latent_profile -- vae|encoder|text-unet [STEPS]`.

use diffuse_autograd::Var;
use diffuse_diffusion::autoencoder::{AutoencoderTrainConfig, AutoencoderTrainer, Reconstruction};
use diffuse_diffusion::data::Dataset;
use diffuse_models::clip::{ClipTextConfig, ClipTextModel};
use diffuse_models::unet_condition::{UNet2DConditionConfig, UNet2DConditionModel};
use diffuse_models::vae::AutoencoderKLConfig;
use diffuse_nn::{AdamW, EmaWarmup, LrSchedule, ParamStore};
use diffuse_tensor::{Device, Tensor};

const BATCH: usize = 64;
const CONTEXT: usize = 20;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn main() -> Result<()> {
    diffuse_tensor::pool_with_calling_thread()?;
    let args: Vec<String> = std::env::args().skip(1).collect();
    let steps: usize = args.get(1).map_or(Ok(10), |s| s.parse())?;
    match args.first().map(String::as_str) {
        Some("vae") => vae(steps),
        Some("encoder") => encoder(steps),
        Some("text-unet") => text_unet(steps),
        _ => Err("usage: text_latent_profile vae|encoder|text-unet [STEPS]".into()),
    }
}

/// As `benches/latent.rs`: `diffuse vae train`'s defaults without the optional terms.
fn vae(steps: usize) -> Result<()> {
    let config = AutoencoderTrainConfig {
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
    };
    let pixels: Vec<u8> = (0..BATCH * 28 * 28).map(|i| (i * 37 % 251) as u8).collect();
    let data = Dataset::from_u8(&pixels, None, 1, 28, 28)?;
    let vae = AutoencoderKLConfig::named("fashion-vae")?;
    let mut trainer = AutoencoderTrainer::new_on(config, vae, Device::Cpu, None)?;
    for _ in 0..steps {
        trainer.step(&data)?;
    }
    Ok(())
}

/// As `benches/text.rs`: `diffuse clip train`'s default text tower.
fn encoder(steps: usize) -> Result<()> {
    let config = ClipTextConfig {
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
    };
    let store = ParamStore::new(0, Device::Cpu);
    let encoder = ClipTextModel::new(config, &store)?;
    let ids: Vec<u32> = (0..BATCH * CONTEXT)
        .map(|i| {
            if i % CONTEXT == CONTEXT - 1 {
                2
            } else {
                3 + (i * 7919 % 1000) as u32
            }
        })
        .collect();
    for _ in 0..steps {
        encoder.encode(&ids, BATCH)?;
    }
    Ok(())
}

/// As `benches/text.rs`: `fashion-text`'s training step on random images and contexts.
fn text_unet(steps: usize) -> Result<()> {
    let store = ParamStore::new(0, Device::Cpu);
    let unet = UNet2DConditionModel::new(UNet2DConditionConfig::named("fashion-text")?, &store)?;
    let params = store.params().into_iter().map(|(_, v)| v);
    let mut opt = AdamW::new(params, AdamW::default_config(1e-4))?;
    let x = Tensor::randn(&[BATCH, 1, 28, 28], 1, 0, Device::Cpu)?;
    let noise = Var::constant(Tensor::randn(&[BATCH, 1, 28, 28], 2, 0, Device::Cpu)?);
    let context = Var::constant(Tensor::randn(&[BATCH, CONTEXT, 64], 3, 0, Device::Cpu)?);
    let t: Vec<f64> = (0..BATCH).map(|i| ((i * 397) % 1000) as f64).collect();
    for _ in 0..steps {
        let out = unet.forward(&Var::constant(x.clone()), &t, &context, None)?;
        let loss = out.sub(&noise)?.square()?.mean_all()?;
        let grads = loss.backward()?;
        opt.step(&grads)?;
    }
    Ok(())
}
