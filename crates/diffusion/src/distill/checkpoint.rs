//! Distillation checkpoints and round folders, written atomically as training checkpoints are
//! ([`crate::train::checkpoint`]).
//!
//! ```text
//! OUT/latest                         "step-G": the newest resumable checkpoint (G = steps over all rounds)
//! OUT/step-G/model/, ema/            the student's raw and EMA weights (diffusers model folders)
//! OUT/step-G/target/                 consistency distillation's target network
//! OUT/step-G/scheduler/              the student's scheduler config
//! OUT/step-G/optimizer.safetensors   AdamW moments and step
//! OUT/step-G/distill_state.json      round, steps, smoothed loss, the whole DistillConfig
//! OUT/round-K/                       the student of round K: model/, ema/, scheduler/, distillation.json
//! ```
//!
//! A progressive student's scheduler is DDIM on the trailing grid with the teacher's schedule, prediction and
//! clipping, and `distillation.json` ([`SamplingInfo`]) says how many steps it was distilled for and that DDIM takes
//! its noise from the clipped x̂0, so `diffuse sample` runs it at that count as it was trained; a consistency student
//! keeps the teacher's scheduler (its schedule maps σ to the network's timesteps) and is sampled with `--sampler
//! consistency`.

use super::method::{DistillConfig, Method};
use super::trainer::{DistillState, Distiller};
use crate::error::{Error, Result};
use crate::schedule::{SchedulerConfig, TimestepSpacing};
use crate::train::checkpoint::{
    sync, write_checkpoint_folder, write_diffusers_model, write_synced,
};
use crate::train::TrainableModel;
use serde::{Deserialize, Serialize};
use std::fs;
use std::path::{Path, PathBuf};

/// The file that says how a distilled student is sampled.
pub const SAMPLING_INFO_FILE: &str = "distillation.json";
/// The state file of a distillation checkpoint.
pub const STATE_FILE: &str = "distill_state.json";

/// How a distilled student is sampled.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SamplingInfo {
    /// "ddim" (a progressive student) or "consistency".
    pub sampler: String,
    /// The steps it was distilled for (progressive), or none.
    pub steps: Option<usize>,
    /// The teacher's guidance scale baked into the student.
    pub guidance: f64,
    /// progressive distillation, consistency distillation or consistency training.
    pub method: String,
    pub round: u32,
    /// Whether DDIM takes its noise from the clipped x̂0 (diffusers' `use_clipped_model_output`): a progressive
    /// student's target is one such step ([`super::progressive::ddim_step`]), so it is sampled that way. Absent in
    /// folders written before it existed (false).
    #[serde(default)]
    pub clipped_model_output: bool,
}

impl SamplingInfo {
    /// The info of a checkpoint folder, if it has one.
    pub fn read(dir: &Path) -> Result<Option<Self>> {
        let path = dir.join(SAMPLING_INFO_FILE);
        if !path.is_file() {
            return Ok(None);
        }
        let text = fs::read_to_string(&path).map_err(|e| io(&path, e))?;
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| io(&path, e))
    }
}

fn io(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::train(path.display().to_string(), e.to_string())
}

/// Reads `distill_state.json` of a checkpoint folder.
pub fn read_state(dir: &Path) -> Result<DistillState> {
    let path = dir.join(STATE_FILE);
    let text = fs::read_to_string(&path).map_err(|e| io(&path, e))?;
    serde_json::from_str(&text).map_err(|e| io(&path, e))
}

/// The DDIM scheduler config a progressive student is sampled with: the teacher's schedule, prediction and clipping,
/// trailing timesteps, `ᾱ = 1` after the last step.
pub fn ddim_student_config(teacher: &SchedulerConfig) -> SchedulerConfig {
    let mut config = teacher.clone();
    config.class_name = Some("DDIMScheduler".into());
    config.timestep_spacing = TimestepSpacing::Trailing;
    config.steps_offset = 0;
    config.extra.remove("set_alpha_to_one");
    config
}

/// What the student of `config` at `round` is, for [`SAMPLING_INFO_FILE`].
fn sampling_info(config: &DistillConfig, round: u32) -> SamplingInfo {
    let (sampler, steps) = match config.method.student_steps(round) {
        Some(steps) => ("ddim", Some(steps)),
        None => ("consistency", None),
    };
    SamplingInfo {
        sampler: sampler.into(),
        steps,
        guidance: config.guidance,
        method: config.method.name().into(),
        round,
        clipped_model_output: steps.is_some(),
    }
}

/// The scheduler config the student is saved with.
fn student_scheduler_json(config: &DistillConfig) -> String {
    match config.method {
        Method::Progressive { .. } => {
            // DDIM has no variance type; leaving it out spares every reader diffusers' "ignored" note.
            let mut value = ddim_student_config(&config.scheduler).to_json_value();
            if let Some(map) = value.as_object_mut() {
                map.remove("variance_type");
            }
            format!(
                "{}\n",
                crate::schedule::python_json::to_string_pretty(&value)
            )
        }
        _ => config.scheduler.to_json_string(),
    }
}

impl<M: TrainableModel> Distiller<M> {
    /// Writes the student's weights, scheduler and sampling info into `dir`.
    fn write_student(&self, dir: &Path) -> Result<()> {
        let config_json = self.student.config_json();
        write_diffusers_model(&self.store, &config_json, &dir.join("model"))?;
        write_diffusers_model(self.ema_store(), &config_json, &dir.join("ema"))?;
        let scheduler = dir.join("scheduler");
        fs::create_dir_all(&scheduler).map_err(|e| io(&scheduler, e))?;
        write_synced(
            &scheduler.join("scheduler_config.json"),
            student_scheduler_json(self.config()).as_bytes(),
        )?;
        sync(&scheduler)?;
        let info = serde_json::to_string_pretty(&sampling_info(self.config(), self.state().round))
            .map_err(|e| io(dir, e))?;
        write_synced(&dir.join(SAMPLING_INFO_FILE), info.as_bytes())
    }

    /// Saves a resumable checkpoint `OUT/step-G` with `state` (this round's, or the next round's at its start) and
    /// keeps the newest `keep`.
    pub fn save_checkpoint(
        &self,
        dir: &Path,
        state: &DistillState,
        keep: usize,
    ) -> Result<PathBuf> {
        write_checkpoint_folder(dir, state.step, keep, |tmp| {
            self.write_student(tmp)?;
            let config_json = self.student.config_json();
            if let Some(target) = self.target_store() {
                write_diffusers_model(target, &config_json, &tmp.join("target"))?;
            }
            let optimizer = tmp.join("optimizer.safetensors");
            self.optimizer().save_state(&optimizer)?;
            sync(&optimizer)?;
            let text = serde_json::to_string_pretty(state).map_err(|e| io(tmp, e))?;
            write_synced(&tmp.join(STATE_FILE), text.as_bytes())
        })
    }

    /// Writes the round's student as `OUT/round-K` (atomically: a temporary folder renamed into place).
    pub fn write_round(&self, dir: &Path) -> Result<PathBuf> {
        let name = round_name(self.state().round);
        let tmp = dir.join(format!(".tmp-{name}"));
        if tmp.exists() {
            fs::remove_dir_all(&tmp).map_err(|e| io(&tmp, e))?;
        }
        fs::create_dir_all(&tmp).map_err(|e| io(&tmp, e))?;
        self.write_student(&tmp)?;
        sync(&tmp)?;
        let target = dir.join(&name);
        if target.exists() {
            fs::remove_dir_all(&target).map_err(|e| io(&target, e))?;
        }
        fs::rename(&tmp, &target).map_err(|e| io(&target, e))?;
        sync(dir)?;
        Ok(target)
    }
}

/// `round-K`.
pub fn round_name(round: u32) -> String {
    format!("round-{round}")
}
