//! Training checkpoints: one directory per saved step, written so that a crash at any moment leaves either the
//! previous checkpoint or the new one, never a torn one.
//!
//! ```text
//! DIR/latest                       "step-N": the newest complete checkpoint
//! DIR/step-N/model/                config.json + diffusion_pytorch_model.safetensors (diffusers layout)
//! DIR/step-N/ema/                  the same for the EMA weights
//! DIR/step-N/scheduler/            scheduler_config.json
//! DIR/step-N/optimizer.safetensors AdamW moments and step
//! DIR/step-N/trainer_state.json    step, seed, data position, sampler history, loss smoothing, full config
//! ```
//!
//! A checkpoint of a latent diffusion run is also a diffusers pipeline folder: the EMA weights, the pipeline's
//! denoiser, are in `unet/` instead of `ema/`, beside `model_index.json`, `vae/` and `scheduler/`
//! ([`Trainer::save_pipeline_checkpoint`]).
//!
//! Writing: everything goes into `DIR/.tmp-step-N/`; every file and folder is fsync-ed; the folder is renamed to
//! `DIR/step-N/` (atomic within one file system) and `DIR` fsync-ed; then `latest` is replaced atomically (write
//! `DIR/.latest.tmp`, fsync, rename over `latest`, fsync `DIR`). Only then are older checkpoints beyond the last `keep`
//! removed.

use super::model::TrainableModel;
use super::trainer::{Trainer, TrainerState};
use crate::error::{Error, Result};
use diffuse_nn::ParamStore;
use diffuse_tensor::Device;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The diffusers weights file name.
pub const WEIGHTS_FILE: &str = "diffusion_pytorch_model.safetensors";
/// The file that makes a folder a diffusers pipeline.
pub const MODEL_INDEX_FILE: &str = "model_index.json";
/// The denoiser's folder in a diffusers pipeline (the EMA weights, in a pipeline checkpoint).
pub const PIPELINE_UNET_DIR: &str = "unet";

/// The EMA weights' folder of a checkpoint: `unet/` when it is a pipeline folder, else `ema/`.
pub fn ema_dir(step_dir: &Path) -> PathBuf {
    if step_dir.join(MODEL_INDEX_FILE).is_file() {
        step_dir.join(PIPELINE_UNET_DIR)
    } else {
        step_dir.join("ema")
    }
}

fn io(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::train(path.display().to_string(), e.to_string())
}

pub(crate) fn sync(path: &Path) -> Result<()> {
    File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|e| io(path, e))
}

pub(crate) fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = File::create(path).map_err(|e| io(path, e))?;
    f.write_all(bytes).map_err(|e| io(path, e))?;
    f.sync_all().map_err(|e| io(path, e))
}

/// Writes `dir/config.json` and `dir/diffusion_pytorch_model.safetensors` (fsync-ed) for the weights in `store`.
pub fn write_diffusers_model(store: &ParamStore, config_json: &str, dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    write_synced(&dir.join("config.json"), config_json.as_bytes())?;
    let weights = dir.join(WEIGHTS_FILE);
    store.save(&weights)?;
    sync(&weights)?;
    sync(dir)
}

/// The folder `DIR/latest` names.
pub fn latest_checkpoint(dir: &Path) -> Result<PathBuf> {
    let pointer = dir.join("latest");
    let name = fs::read_to_string(&pointer).map_err(|e| {
        io(
            &pointer,
            format!("{e} (is {} a training output folder?)", dir.display()),
        )
    })?;
    let step_dir = dir.join(name.trim());
    if !step_dir.is_dir() {
        return Err(io(
            &pointer,
            format!("names {}, which is not a folder", step_dir.display()),
        ));
    }
    Ok(step_dir)
}

/// Reads `trainer_state.json` of a checkpoint folder.
pub fn read_trainer_state(step_dir: &Path) -> Result<TrainerState> {
    let path = step_dir.join("trainer_state.json");
    let text = fs::read_to_string(&path).map_err(|e| io(&path, e))?;
    serde_json::from_str(&text).map_err(|e| io(&path, e))
}

/// The checkpoint folders `step-N` in `dir`, oldest first.
fn checkpoints(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| io(dir, e))? {
        let entry = entry.map_err(|e| io(dir, e))?;
        let name = entry.file_name();
        if let Some(n) = name.to_str().and_then(|n| n.strip_prefix("step-")) {
            if let Ok(n) = n.parse::<u64>() {
                found.push((n, entry.path()));
            }
        }
    }
    found.sort();
    Ok(found)
}

/// Writes checkpoint `step-{step}` of the run in `dir` as the module documentation describes: `fill` writes the
/// checkpoint's files into a temporary folder (each synced), which is then renamed into place and named by
/// `DIR/latest`; older checkpoints beyond the newest `keep` (at least one) are removed. Returns the new folder.
pub fn write_checkpoint_folder(
    dir: &Path,
    step: u64,
    keep: usize,
    fill: impl FnOnce(&Path) -> Result<()>,
) -> Result<PathBuf> {
    let name = format!("step-{step}");
    let tmp = dir.join(format!(".tmp-{name}"));
    if tmp.exists() {
        fs::remove_dir_all(&tmp).map_err(|e| io(&tmp, e))?;
    }
    fs::create_dir_all(&tmp).map_err(|e| io(&tmp, e))?;
    fill(&tmp)?;
    sync(&tmp)?;

    let target = dir.join(&name);
    if target.exists() {
        fs::remove_dir_all(&target).map_err(|e| io(&target, e))?;
    }
    fs::rename(&tmp, &target).map_err(|e| io(&target, e))?;
    sync(dir)?;
    let pointer_tmp = dir.join(".latest.tmp");
    write_synced(&pointer_tmp, format!("{name}\n").as_bytes())?;
    fs::rename(&pointer_tmp, dir.join("latest")).map_err(|e| io(dir, e))?;
    sync(dir)?;

    let all = checkpoints(dir)?;
    let excess = all.len().saturating_sub(keep.max(1));
    for (n, path) in &all[..excess] {
        if *n != step {
            fs::remove_dir_all(path).map_err(|e| io(path, e))?;
        }
    }
    Ok(target)
}

impl<M: TrainableModel> Trainer<M> {
    /// Saves the run at its current step into `dir` (see the module documentation) and keeps the newest `keep`
    /// checkpoints (at least one). Returns the new checkpoint's folder.
    pub fn save_checkpoint(&self, dir: &Path, keep: usize) -> Result<PathBuf> {
        write_checkpoint_folder(dir, self.state.step, keep, |tmp| {
            self.write_state(tmp, "ema")
        })
    }

    /// As [`Trainer::save_checkpoint`], the checkpoint also being a diffusers pipeline folder: the EMA weights go in
    /// `unet/`, and `add_components` writes the rest of the pipeline (`model_index.json`, `vae/`, ...) into it.
    pub fn save_pipeline_checkpoint(
        &self,
        dir: &Path,
        keep: usize,
        add_components: impl FnOnce(&Path) -> Result<()>,
    ) -> Result<PathBuf> {
        write_checkpoint_folder(dir, self.state.step, keep, |tmp| {
            self.write_state(tmp, PIPELINE_UNET_DIR)?;
            add_components(tmp)
        })
    }

    /// Writes the weights (the EMA ones into `tmp/ema_name`), scheduler, optimiser and trainer state into `tmp`.
    fn write_state(&self, tmp: &Path, ema_name: &str) -> Result<()> {
        let config_json = self.model.config_json();
        write_diffusers_model(&self.store, &config_json, &tmp.join("model"))?;
        write_diffusers_model(self.ema.store(), &config_json, &tmp.join(ema_name))?;
        let scheduler = tmp.join("scheduler");
        fs::create_dir_all(&scheduler).map_err(|e| io(&scheduler, e))?;
        write_synced(
            &scheduler.join("scheduler_config.json"),
            self.state.config.scheduler_json()?.as_bytes(),
        )?;
        sync(&scheduler)?;
        let optimizer = tmp.join("optimizer.safetensors");
        self.optimizer.save_state(&optimizer)?;
        sync(&optimizer)?;
        let state = serde_json::to_string_pretty(&self.state).map_err(|e| io(tmp, e))?;
        write_synced(&tmp.join("trainer_state.json"), state.as_bytes())
    }

    /// Continues the run saved in `dir` (its `latest` checkpoint) with the model `build` makes, exactly where it
    /// stopped: weights, EMA, optimiser moments, data position, timestep-sampler history and loss smoothing.
    pub fn resume<E: Into<Error>>(
        dir: &Path,
        build: impl Fn(&ParamStore) -> std::result::Result<M, E>,
    ) -> Result<Self> {
        Self::resume_on(dir, Device::Cpu, build)
    }

    /// As [`Trainer::resume`], with the run's state loaded onto `device` (a run may continue on another device).
    pub fn resume_on<E: Into<Error>>(
        dir: &Path,
        device: Device,
        build: impl Fn(&ParamStore) -> std::result::Result<M, E>,
    ) -> Result<Self> {
        let step_dir = latest_checkpoint(dir)?;
        let state = read_trainer_state(&step_dir)?;
        let mut trainer = Trainer::new_on(state.config.clone(), device, build)?;
        trainer
            .store
            .load(step_dir.join("model").join(WEIGHTS_FILE))?;
        trainer
            .ema
            .store()
            .load(ema_dir(&step_dir).join(WEIGHTS_FILE))?;
        trainer
            .optimizer
            .load_state(step_dir.join("optimizer.safetensors"))?;
        trainer.ema.set_updates(trainer.optimizer.steps());
        trainer.state = state;
        Ok(trainer)
    }
}
