//! `diffuse info DIR`: what a diffusers pipeline, model folder, training run or checkpoint holds, and the sampler and
//! every setting `diffuse sample` would use on it (with the same sampler options); an autoencoder's folder is
//! described by [`crate::vae::describe`]; `--devices` lists the devices.

use crate::latent::decoder_for;
use crate::sample::open_folder;
use crate::sampling::SamplerArgs;
use crate::score::{AnySampler, ScoreArgs};
use clap::Args;
use diffuse_diffusion::pipeline::Weights;
use diffuse_diffusion::train::checkpoint::read_trainer_state;
use diffuse_models::{Backbone, BackboneConfig};
use diffuse_tensor::Device;
use std::path::{Path, PathBuf};

#[derive(Args, Debug)]
pub struct InfoArgs {
    /// The folder.
    #[arg(required_unless_present = "devices")]
    dir: Option<PathBuf>,
    /// List the CPU and every CUDA device the driver sees, whether each opens, and what --device auto picks.
    #[arg(long)]
    devices: bool,
    #[command(flatten)]
    sampling: SamplerArgs,
    #[command(flatten)]
    score: ScoreArgs,
}

pub fn run(args: &InfoArgs) -> Result<(), String> {
    if args.devices {
        crate::devices::run()?;
    }
    match &args.dir {
        Some(dir) => describe(dir, &args.sampling, &args.score),
        None => Ok(()),
    }
}

fn describe(dir: &Path, sampling: &SamplerArgs, score: &ScoreArgs) -> Result<(), String> {
    if crate::vae::describe(dir)? {
        return Ok(());
    }
    let opened = open_folder(dir, Weights::Model)?;
    let folder = &opened.pipeline;
    let model_dir = &folder.denoiser;
    let (model, store) =
        Backbone::load_diffusers(model_dir, Device::Cpu).map_err(|e| e.to_string())?;
    let config = model.config();
    let (sampler, view) = opened.sampler(&config, sampling, score)?;
    println!(
        "folder       {} ({})",
        folder.root.display(),
        folder.kind.describe()
    );
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
        BackboneConfig::UNet2DCondition(c) => println!(
            "architecture UNet2DConditionModel, {} levels {:?}, blocks {:?}, cross-attention to {}-wide context, \
             heads {:?}",
            c.block_out_channels.len(),
            c.block_out_channels,
            c.down_block_types,
            c.context_dim(),
            c.attention_head_dim
        ),
    }
    println!("parameters   {} in {} tensors", store.numel(), store.len());
    if let Some(decoder) = decoder_for(model_dir, Device::Cpu)? {
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
    if let Some(state) = folder
        .checkpoint
        .as_deref()
        .and_then(|dir| read_trainer_state(dir).ok())
    {
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
    println!(
        "scheduler    {}",
        folder
            .scheduler_config
            .as_ref()
            .map_or("none (DDPMScheduler defaults)".into(), |p| p
                .display()
                .to_string())
    );
    let scheduler = match sampler {
        AnySampler::Discrete(scheduler) => scheduler,
        AnySampler::Consistency(sampler) => {
            for (key, value) in sampler.settings() {
                println!("  {key:<25} {value}");
            }
            return Ok(());
        }
        AnySampler::Score(sampler) => {
            let view = view?;
            println!("  {:<25} {}", "sampler", sampler.name);
            println!("  {:<25} {}", "steps", sampler.steps);
            println!("  {:<25} {:?}", "sde", view.sde);
            println!("  {:<25} {:?}", "network", view.parameterization.network);
            println!("  {:<25} {}", "sampling_eps", view.sampling_eps);
            println!("  {:<25} {}", "snr", view.snr);
            println!("  {:<25} {}", "correct_steps", view.correct_steps);
            return Ok(());
        }
    };
    for (key, value) in scheduler.settings() {
        println!("  {key:<25} {value}");
    }
    let timesteps = scheduler
        .sampler
        .model_timesteps(&scheduler.schedule, &scheduler.options)
        .map_err(|e| e.to_string())?;
    let shown: Vec<String> = timesteps.iter().map(|t| format!("{t}")).collect();
    println!("  {:<25} {}", "model timesteps", shown.join(" "));
    Ok(())
}
