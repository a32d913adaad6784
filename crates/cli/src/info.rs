//! `diffuse info DIR`: what a training run, checkpoint or diffusers model folder holds (an autoencoder's is described
//! by [`crate::vae::describe`]).

use crate::latent::{decoder_for, pipeline_denoiser_dir};
use diffuse_diffusion::train::checkpoint::{latest_checkpoint, read_trainer_state};
use diffuse_models::folder::CONFIG_FILE;
use diffuse_models::{Backbone, BackboneConfig};
use diffuse_tensor::Device;
use std::path::Path;

pub fn run(dir: &Path) -> Result<(), String> {
    if crate::vae::describe(dir)? {
        return Ok(());
    }
    let step_dir = if dir.join("latest").is_file() {
        latest_checkpoint(dir).map_err(|e| e.to_string())?
    } else {
        dir.to_path_buf()
    };
    let model_dir = if step_dir.join(CONFIG_FILE).is_file() {
        step_dir.clone()
    } else if let Some(denoiser) = pipeline_denoiser_dir(&step_dir, false) {
        denoiser
    } else {
        step_dir.join("model")
    };
    let (model, store) =
        Backbone::load_diffusers(&model_dir, Device::Cpu).map_err(|e| e.to_string())?;
    let config = model.config();
    println!("model        {}", model_dir.display());
    match &config {
        BackboneConfig::UNet2D(c) => println!(
            "architecture UNet2DModel, {} levels {:?}, {} per level, blocks {:?}",
            c.block_out_channels.len(),
            c.block_out_channels,
            c.layers_per_block,
            c.down_block_types
        ),
        BackboneConfig::DiT(c) => println!(
            "architecture DiTTransformer2DModel, width {} in {} heads, {} blocks, patch {} ({} tokens at {}×{}){}",
            c.inner_dim(),
            c.num_attention_heads,
            c.num_layers,
            c.patch_size,
            (c.sample_size / c.patch_size).pow(2),
            c.sample_size,
            c.sample_size,
            if c.learns_variance() { ", learned variance" } else { "" }
        ),
    }
    println!("parameters   {} in {} tensors", store.numel(), store.len());
    if let Some(decoder) = decoder_for(&model_dir, Device::Cpu)? {
        let c = decoder.vae.config();
        let (h, w) = config.sample_size().unwrap_or((0, 0));
        let (ic, ih, iw) = decoder.image_shape((h, w));
        println!(
            "latents      {}×{h}×{w} of {ic}×{ih}×{iw} images, AutoencoderKL {:?} in {}, scaling_factor {}{}",
            c.latent_channels,
            c.block_out_channels,
            decoder.dir.display(),
            c.scaling_factor,
            c.shift_factor.map_or(String::new(), |s| format!(", shift_factor {s}"))
        );
    }
    if let Some((h, w)) = config.sample_size() {
        if let Some(flops) = config.flops_per_sample(h, w) {
            println!(
                "compute      {:.3} GFLOPs per forward pass of one {h}×{w} sample ({:.3} G multiply-adds)",
                flops / 1e9,
                flops / 2e9
            );
        }
    }
    println!(
        "classes      {}",
        config
            .num_class_embeds()
            .map_or("unconditional".to_string(), |n| format!(
                "{} embeddings (last = null class)",
                n
            ))
    );
    if let Ok(state) = read_trainer_state(&step_dir) {
        let t = &state.config;
        println!(
            "step         {} of {} (epoch {}, batch {})",
            state.step, t.steps, state.epoch, state.batch_in_epoch
        );
        println!(
            "loss         {} (smoothed), {} steps skipped",
            state
                .smoothed_loss
                .map_or("-".into(), |l| format!("{l:.5}")),
            state.skipped_steps
        );
        match &t.score_matching {
            Some(o) => println!(
                "objective    score matching of {:?}, {:?} network, {:?} weighting, t from {} to 1{}",
                o.sde,
                o.parameterization.network,
                o.weighting,
                o.eps,
                o.noise_levels
                    .map_or(String::new(), |l| format!(" at {l} levels"))
            ),
            None => println!(
                "schedule     {} over {} steps, predicting {}",
                t.scheduler.beta_schedule.name(),
                t.scheduler.num_train_timesteps,
                t.scheduler.prediction_type.name()
            ),
        }
        println!(
            "training     batch {}, lr {:?}, weighting {:?}, EMA ≤ {}, seed {}",
            t.batch_size, t.lr, t.loss_weighting, t.ema_decay, t.seed
        );
    }
    Ok(())
}
