//! `diffuse vae`: the autoencoder of latent diffusion. `train` trains one ([`crate::vae_train`]); `encode` and
//! `decode` map images to latents and back ([`crate::vae_codec`]); `eval` scores reconstructions of the test images
//! ([`crate::vae_eval`]). Every subcommand finds the autoencoder the same way ([`resolve_vae`]).

use clap::Subcommand;
use diffuse_diffusion::autoencoder::{read_autoencoder_state, EMA_DIR, LIVE_DIR};
use diffuse_diffusion::train::checkpoint::latest_checkpoint;
use diffuse_models::folder::CONFIG_FILE;
use diffuse_models::vae::config::CLASS_NAME;
use diffuse_models::vae::AutoencoderKL;
use diffuse_nn::ParamStore;
use diffuse_tensor::Device;
use std::path::{Path, PathBuf};

/// The component folder of an autoencoder in a diffusers pipeline folder.
pub const PIPELINE_VAE_DIR: &str = "vae";
/// The file that makes a folder a diffusers pipeline.
pub const MODEL_INDEX_FILE: &str = "model_index.json";

#[derive(Subcommand, Debug)]
pub enum VaeCommand {
    /// Train an AutoencoderKL (reconstruction + β·KL, optional perceptual and adversarial terms) with EMA, atomic
    /// checkpoints, reconstruction grids and metrics; saves diffusers vae/ folders with the measured scaling factor.
    Train(Box<crate::vae_train::VaeTrainArgs>),
    /// Encode PNG images (a file or a folder) or a safetensors tensor of images into latents (a safetensors file).
    Encode(crate::vae_codec::EncodeArgs),
    /// Decode latents (a safetensors tensor) into images: a PNG grid and optionally a safetensors tensor.
    Decode(crate::vae_codec::DecodeArgs),
    /// Score reconstructions of the test images: PSNR, SSIM, and the Fréchet distance and accuracy in the
    /// Fashion-MNIST classifier's features.
    Eval(crate::vae_eval::VaeEvalArgs),
}

pub fn run(command: &VaeCommand) -> Result<(), String> {
    match command {
        VaeCommand::Train(args) => crate::vae_train::run(args),
        VaeCommand::Encode(args) => crate::vae_codec::encode(args),
        VaeCommand::Decode(args) => crate::vae_codec::decode(args),
        VaeCommand::Eval(args) => crate::vae_eval::run(args),
    }
}

/// The autoencoder folder `dir` names: an autoencoder training run (its latest checkpoint), one of its `step-N`
/// checkpoints (the EMA weights when `ema`, else the live ones), a diffusers pipeline folder (its `vae/`), or a
/// diffusers `AutoencoderKL` folder itself.
pub fn resolve_vae(dir: &Path, ema: bool) -> Result<PathBuf, String> {
    let step_dir = if dir.join("latest").is_file() {
        latest_checkpoint(dir).map_err(|e| e.to_string())?
    } else {
        dir.to_path_buf()
    };
    let candidates = [
        step_dir.join(if ema { EMA_DIR } else { LIVE_DIR }),
        step_dir.join(PIPELINE_VAE_DIR),
        step_dir.clone(),
    ];
    let found = if step_dir.join(MODEL_INDEX_FILE).is_file() {
        Some(step_dir.join(PIPELINE_VAE_DIR))
    } else {
        candidates
            .into_iter()
            .find(|d| d.join(CONFIG_FILE).is_file())
    };
    match found {
        Some(vae_dir) if vae_dir.join(CONFIG_FILE).is_file() => Ok(vae_dir),
        Some(vae_dir) => Err(format!(
            "{} has no {CONFIG_FILE}: the pipeline folder {} names no usable autoencoder",
            vae_dir.display(),
            dir.display()
        )),
        None => Err(format!(
            "{} is neither an autoencoder training run, a checkpoint, a pipeline folder with {PIPELINE_VAE_DIR}/, \
             nor an AutoencoderKL folder (no {CONFIG_FILE})",
            dir.display()
        )),
    }
}

/// Loads the autoencoder `dir` names (see [`resolve_vae`]) onto `device`.
pub fn load_vae(
    dir: &Path,
    ema: bool,
    device: Device,
) -> Result<(AutoencoderKL, ParamStore, PathBuf), String> {
    let vae_dir = resolve_vae(dir, ema)?;
    let (model, store) = AutoencoderKL::load_diffusers(&vae_dir, device)
        .map_err(|e| format!("the autoencoder in {}: {e}", vae_dir.display()))?;
    Ok((model, store, vae_dir))
}

/// `diffuse info` for an autoencoder: a `vae train` run or checkpoint, or an `AutoencoderKL` folder. Returns false,
/// printing nothing, when `dir` is none of these.
pub fn describe(dir: &Path) -> Result<bool, String> {
    let step_dir = if dir.join("latest").is_file() {
        latest_checkpoint(dir).map_err(|e| e.to_string())?
    } else {
        dir.to_path_buf()
    };
    let state = read_autoencoder_state(&step_dir).ok();
    let vae_dir = match &state {
        Some(_) => step_dir.join(EMA_DIR),
        None => step_dir.clone(),
    };
    let is_autoencoder = std::fs::read_to_string(vae_dir.join(CONFIG_FILE))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .is_some_and(|v| v["_class_name"] == CLASS_NAME);
    if !is_autoencoder {
        return Ok(false);
    }
    let (vae, store) =
        AutoencoderKL::load_diffusers(&vae_dir, Device::Cpu).map_err(|e| e.to_string())?;
    let c = vae.config();
    let (h, w) = c.sample_size.height_width();
    let (lh, lw) = c.latent_size(h, w);
    println!("autoencoder  {}", vae_dir.display());
    println!(
        "architecture AutoencoderKL, {} levels {:?}, {} per level, mid attention {}",
        c.block_out_channels.len(),
        c.block_out_channels,
        c.layers_per_block,
        c.mid_block_add_attention
    );
    println!(
        "latents      {}×{lh}×{lw} of {}×{h}×{w} images, scaling_factor {}{}",
        c.latent_channels,
        c.in_channels,
        c.scaling_factor,
        c.shift_factor
            .map_or(String::new(), |s| format!(", shift_factor {s}"))
    );
    println!("parameters   {} in {} tensors", store.numel(), store.len());
    if let Some(state) = state {
        let t = &state.config;
        println!(
            "step         {} of {} (epoch {}, batch {})",
            state.step, t.steps, state.epoch, state.batch_in_epoch
        );
        if let Some(s) = state.smoothed {
            println!(
                "loss         {} {:.5}/pixel, KL {:.3}, perceptual {:.4} (smoothed), {} steps skipped",
                t.reconstruction.name(),
                s.reconstruction,
                s.kl,
                s.perceptual,
                state.skipped_steps
            );
        }
        let adversarial = t.adversarial.map_or("none".to_string(), |a| {
            format!("from step {}, weight {}", a.start_step, a.weight)
        });
        println!(
            "training     batch {}, lr {:?}, β {}, perceptual weight {}, discriminator {adversarial}, EMA ≤ {}, seed {}",
            t.batch_size, t.lr, t.kl_weight, t.perceptual_weight, t.ema_decay, t.seed
        );
    }
    Ok(true)
}
