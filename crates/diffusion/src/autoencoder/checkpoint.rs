//! Autoencoder training checkpoints, written like the diffusion trainer's ([`crate::train::checkpoint`]: a temporary
//! folder renamed into place, then `DIR/latest`):
//!
//! ```text
//! DIR/step-N/vae/                              the live weights, a diffusers AutoencoderKL folder
//! DIR/step-N/ema/                              the EMA weights, the same layout: the autoencoder to use
//! DIR/step-N/optimizer.safetensors             AdamW moments and step
//! DIR/step-N/discriminator.safetensors         with an adversarial loss: the discriminator's weights,
//! DIR/step-N/discriminator_optimizer.safetensors    and its AdamW state
//! DIR/step-N/trainer_state.json                step, data position, loss smoothing, full config
//! ```
//!
//! Each `config.json` carries the `scaling_factor` measured for its own weights on the first training images
//! ([`super::latents::measure_scaling_factor`]), so either folder is ready for latent diffusion as it stands.

use super::latents::measure_scaling_factor;
use super::trainer::{AutoencoderTrainer, AutoencoderTrainerState};
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::eval::ImageClassifier;
use crate::train::checkpoint::{latest_checkpoint, sync, write_checkpoint_folder, write_synced};
use diffuse_models::folder::{read_config, save_folder, DIFFUSERS_WEIGHTS_FILE};
use diffuse_models::vae::{AutoencoderKL, AutoencoderKLConfig};
use diffuse_nn::ParamStore;
use diffuse_tensor::Device;
use std::path::{Path, PathBuf};

/// The live weights' folder in a checkpoint.
pub const LIVE_DIR: &str = "vae";
/// The EMA weights' folder in a checkpoint.
pub const EMA_DIR: &str = "ema";
const STATE_FILE: &str = "trainer_state.json";

fn io(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::train(path.display().to_string(), e.to_string())
}

/// Writes `model`'s folder (weights from `store`) into `dir` with the scaling factor measured for those weights.
fn save_measured(
    model: &AutoencoderKL,
    store: &ParamStore,
    dir: &Path,
    data: &Dataset,
    count: usize,
    seed: u64,
) -> Result<()> {
    let mut config = model.config().clone();
    config.scaling_factor = measure_scaling_factor(model, data, count, seed)?;
    save_folder(dir, &config.to_json_string(), store, DIFFUSERS_WEIGHTS_FILE)?;
    Ok(())
}

/// Reads `trainer_state.json` of an autoencoder checkpoint folder.
pub fn read_autoencoder_state(step_dir: &Path) -> Result<AutoencoderTrainerState> {
    let path = step_dir.join(STATE_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| io(&path, e))?;
    serde_json::from_str(&text).map_err(|e| io(&path, e))
}

impl AutoencoderTrainer {
    /// Saves the run at its current step into `dir` and keeps the newest `keep` checkpoints; the scaling factors
    /// are measured on the first images of `data` (the training set). Returns the new checkpoint's folder.
    pub fn save_checkpoint(&self, dir: &Path, keep: usize, data: &Dataset) -> Result<PathBuf> {
        let config = &self.state.config;
        let (count, seed) = (config.scale_images, config.seed);
        write_checkpoint_folder(dir, self.state.step, keep, |tmp| {
            save_measured(
                &self.model,
                &self.store,
                &tmp.join(LIVE_DIR),
                data,
                count,
                seed,
            )?;
            save_measured(
                &self.ema_model,
                self.ema.store(),
                &tmp.join(EMA_DIR),
                data,
                count,
                seed,
            )?;
            let optimizer = tmp.join("optimizer.safetensors");
            self.optimizer.save_state(&optimizer)?;
            sync(&optimizer)?;
            if let Some(critic) = &self.critic {
                let weights = tmp.join("discriminator.safetensors");
                critic.store.save(&weights)?;
                sync(&weights)?;
                let state = tmp.join("discriminator_optimizer.safetensors");
                critic.optimizer.save_state(&state)?;
                sync(&state)?;
            }
            let state = serde_json::to_string_pretty(&self.state).map_err(|e| io(tmp, e))?;
            write_synced(&tmp.join(STATE_FILE), state.as_bytes())
        })
    }

    /// Continues the run saved in `dir` (its `latest` checkpoint) on `device`, exactly where it stopped: weights,
    /// EMA, both optimisers, data position and loss smoothing. `perceptual` as for [`AutoencoderTrainer::new_on`].
    pub fn resume_on(
        dir: &Path,
        device: Device,
        perceptual: Option<ImageClassifier>,
    ) -> Result<Self> {
        let step_dir = latest_checkpoint(dir)?;
        let state = read_autoencoder_state(&step_dir)?;
        let model_config =
            read_config(&step_dir.join(LIVE_DIR), AutoencoderKLConfig::from_json_str)?;
        let mut trainer =
            AutoencoderTrainer::new_on(state.config.clone(), model_config, device, perceptual)?;
        trainer
            .store
            .load(step_dir.join(LIVE_DIR).join(DIFFUSERS_WEIGHTS_FILE))?;
        trainer
            .ema
            .store()
            .load(step_dir.join(EMA_DIR).join(DIFFUSERS_WEIGHTS_FILE))?;
        trainer
            .optimizer
            .load_state(step_dir.join("optimizer.safetensors"))?;
        trainer.ema.set_updates(trainer.optimizer.steps());
        if let Some(critic) = &mut trainer.critic {
            critic
                .store
                .load(step_dir.join("discriminator.safetensors"))?;
            critic
                .optimizer
                .load_state(step_dir.join("discriminator_optimizer.safetensors"))?;
        }
        trainer.state = state;
        Ok(trainer)
    }
}
