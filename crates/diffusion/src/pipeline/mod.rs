//! The folders a sampling run starts from: where the denoising network is, and which scheduler config decides how
//! it is sampled.
//!
//! | folder | recognised by | network | scheduler config |
//! |---|---|---|---|
//! | diffusers pipeline | `model_index.json` | its `unet` component (a latent run's checkpoint: `unet/` = EMA, `model/` = raw) | its `scheduler` component |
//!
//! A `StableDiffusionPipeline` folder also names the text side: `text_encoder/` (a transformers `CLIPTextModel`)
//! and `tokenizer/` (a `CLIPTokenizer`), whose folders [`Pipeline::text_encoder`] and [`Pipeline::tokenizer`] give;
//! its `unet` is a `UNet2DConditionModel` that attends to the encoded prompt, and its `vae` decodes the latents (a
//! pixel-space one, as `diffuse train --text` without `--vae` saves, has `"vae": [null, null]`).
//! | diffuse training run | `latest` | the latest checkpoint's `ema/` or `model/` | that checkpoint's `scheduler/` |
//! | `step-N` checkpoint | `trainer_state.json` or `model/config.json` | its `ema/` or `model/` | its `scheduler/` |
//! | model folder | `config.json` | the folder | a sibling `../scheduler/`, else none |
//!
//! Without a scheduler config the sampler is diffusers' `DDPMScheduler` with its defaults. A pipeline's
//! `model_index.json` ([`model_index`]) must name a pipeline class and components diffuse reads ([`Component`]);
//! each named component's folder must exist; a component saved as `[null, null]` is absent and skipped.

pub mod model_index;

pub use model_index::{ComponentRef, ModelIndex, MODEL_INDEX_FILE};

use crate::error::{Error, Result};
use crate::sampler::scheduler::{Scheduler, SchedulerClass};
use crate::schedule::{python_json, SchedulerConfig};
use crate::sde::config as sde_config;
use crate::train::checkpoint::latest_checkpoint;
use std::path::{Path, PathBuf};

/// The model file every network folder has.
const CONFIG_FILE: &str = "config.json";
/// The scheduler config inside a scheduler folder.
pub const SCHEDULER_CONFIG_FILE: &str = "scheduler_config.json";

/// The pipeline classes diffuse runs (`_class_name` of `model_index.json`): diffusers' unconditional image pipelines,
/// which sample their `unet` with their `scheduler`, and the latent pipeline diffuse's latent training runs save
/// (the same, then the `vae` decodes), and diffusers' score-SDE pipeline, whose scheduler is a score-SDE config
/// ([`crate::sde::config`]) that the score samplers run, and Stable Diffusion's text-to-image pipeline.
pub const PIPELINES: [&str; 6] = [
    "DDPMPipeline",
    "DDIMPipeline",
    "PNDMPipeline",
    "LatentDiffusionPipeline",
    "ScoreSdeVePipeline",
    STABLE_DIFFUSION_PIPELINE,
];

/// diffusers' text-to-image latent pipeline: `unet`, `vae`, `text_encoder`, `tokenizer`, `scheduler`.
pub const STABLE_DIFFUSION_PIPELINE: &str = "StableDiffusionPipeline";

/// The components diffuse reads. A component of another name in `model_index.json` is refused; new networks join
/// here (with the classes they load) and in [`Pipeline`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Component {
    /// The denoising network.
    Unet,
    Scheduler,
    /// The autoencoder of a latent pipeline.
    Vae,
    /// The text encoder of a text-to-image pipeline.
    TextEncoder,
    /// Its tokenizer.
    Tokenizer,
}

impl Component {
    pub const ALL: [Component; 5] = [
        Component::Unet,
        Component::Scheduler,
        Component::Vae,
        Component::TextEncoder,
        Component::Tokenizer,
    ];

    /// Its name in `model_index.json`, which is also its folder's.
    pub fn name(self) -> &'static str {
        match self {
            Component::Unet => "unet",
            Component::Scheduler => "scheduler",
            Component::Vae => "vae",
            Component::TextEncoder => "text_encoder",
            Component::Tokenizer => "tokenizer",
        }
    }

    /// The component called `name`, if diffuse reads it.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.name() == name)
    }

    /// The classes of this component diffuse loads.
    pub fn classes(self) -> Vec<&'static str> {
        match self {
            // The denoisers `diffuse_models::Backbone` loads.
            Component::Unet => vec![
                "UNet2DModel",
                "DiTTransformer2DModel",
                "UNet2DConditionModel",
            ],
            Component::Scheduler => SchedulerClass::ALL
                .map(SchedulerClass::name)
                .into_iter()
                .chain([
                    sde_config::VE_CLASS,
                    sde_config::VP_CLASS,
                    sde_config::SUB_VP_CLASS,
                ])
                .collect(),
            Component::Vae => vec!["AutoencoderKL"],
            Component::TextEncoder => vec!["CLIPTextModel"],
            Component::Tokenizer => vec!["CLIPTokenizer", "CLIPTokenizerFast"],
        }
    }
}

/// What kind of folder was opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FolderKind {
    Pipeline,
    TrainingRun,
    Checkpoint,
    Model,
}

impl FolderKind {
    /// How it is described to a person.
    pub fn describe(self) -> &'static str {
        match self {
            FolderKind::Pipeline => "diffusers pipeline",
            FolderKind::TrainingRun => "training run",
            FolderKind::Checkpoint => "training checkpoint",
            FolderKind::Model => "model folder",
        }
    }
}

/// Which weights of a training checkpoint to sample.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Weights {
    /// The exponential moving average (`ema/`).
    Ema,
    /// The raw weights (`model/`).
    Model,
}

/// An opened folder: what it is, where its network is, and its scheduler config.
#[derive(Clone, Debug)]
pub struct Pipeline {
    pub kind: FolderKind,
    /// The folder that was opened.
    pub root: PathBuf,
    /// A pipeline's table of contents.
    pub index: Option<ModelIndex>,
    /// The denoising network's folder (`config.json` and weights).
    pub denoiser: PathBuf,
    /// The scheduler config file, when there is one.
    pub scheduler_config: Option<PathBuf>,
    /// A latent pipeline's autoencoder folder.
    pub vae: Option<PathBuf>,
    /// A text-to-image pipeline's text encoder folder.
    pub text_encoder: Option<PathBuf>,
    /// A text-to-image pipeline's tokenizer folder.
    pub tokenizer: Option<PathBuf>,
    /// The training checkpoint the weights come from (it holds `trainer_state.json`).
    pub checkpoint: Option<PathBuf>,
}

/// An error about the folder `dir`.
fn folder_error(dir: &Path, message: impl Into<String>) -> Error {
    Error::model(dir.display().to_string(), message)
}

impl Pipeline {
    /// Opens `dir` as whichever kind of folder it is (see the module documentation); `weights` chooses between a
    /// checkpoint's EMA and raw weights.
    pub fn open(dir: &Path, weights: Weights) -> Result<Self> {
        if !dir.is_dir() {
            return Err(folder_error(dir, "is not a folder"));
        }
        if dir.join("latest").is_file() {
            let step_dir = latest_checkpoint(dir)?;
            let mut opened = Self::open_step(&step_dir, weights)?;
            opened.kind = FolderKind::TrainingRun;
            opened.root = dir.to_path_buf();
            return Ok(opened);
        }
        Self::open_step(dir, weights)
    }

    /// A folder that is not a training run.
    fn open_step(dir: &Path, weights: Weights) -> Result<Self> {
        if dir.join(MODEL_INDEX_FILE).is_file() {
            return Self::open_pipeline(dir, weights);
        }
        if dir.join("trainer_state.json").is_file() || dir.join("model").join(CONFIG_FILE).is_file()
        {
            return Self::open_checkpoint(dir, weights);
        }
        if dir.join(CONFIG_FILE).is_file() {
            let sibling = dir.join("..").join("scheduler").join(SCHEDULER_CONFIG_FILE);
            return Ok(Self {
                kind: FolderKind::Model,
                root: dir.to_path_buf(),
                index: None,
                denoiser: dir.to_path_buf(),
                scheduler_config: sibling.is_file().then_some(sibling),
                vae: None,
                text_encoder: None,
                tokenizer: None,
                checkpoint: None,
            });
        }
        Err(folder_error(
            dir,
            "is neither a diffusers pipeline (model_index.json), a training run (latest), a checkpoint \
             (trainer_state.json, model/), nor a model folder (config.json)",
        ))
    }

    fn open_checkpoint(step_dir: &Path, weights: Weights) -> Result<Self> {
        let denoiser = step_dir.join(match weights {
            Weights::Ema => "ema",
            Weights::Model => "model",
        });
        if !denoiser.join(CONFIG_FILE).is_file() {
            return Err(folder_error(
                &denoiser,
                format!("the checkpoint has no {CONFIG_FILE} here"),
            ));
        }
        let scheduler = step_dir.join("scheduler").join(SCHEDULER_CONFIG_FILE);
        Ok(Self {
            kind: FolderKind::Checkpoint,
            root: step_dir.to_path_buf(),
            index: None,
            denoiser,
            scheduler_config: scheduler.is_file().then_some(scheduler),
            vae: None,
            text_encoder: None,
            tokenizer: None,
            checkpoint: Some(step_dir.to_path_buf()),
        })
    }

    /// A pipeline folder, which may also be a training checkpoint (a latent run's: `unet/` holds the EMA weights,
    /// `model/` the raw ones, beside `trainer_state.json`).
    fn open_pipeline(dir: &Path, weights: Weights) -> Result<Self> {
        let index = ModelIndex::read(dir)?;
        let index_path = dir.join(MODEL_INDEX_FILE);
        let bad = |message: String| folder_error(&index_path, message);
        if !PIPELINES.contains(&index.class_name.as_str()) {
            return Err(bad(format!(
                "_class_name '{}' is not a pipeline diffuse runs ({})",
                index.class_name,
                PIPELINES.join(", ")
            )));
        }
        for (name, component) in &index.components {
            let Some(component) = component else {
                continue;
            };
            let Some(known) = Component::from_name(name) else {
                return Err(bad(format!(
                    "names component '{name}' ({}, {}), which diffuse does not read",
                    component.library, component.class_name
                )));
            };
            if !known.classes().contains(&component.class_name.as_str()) {
                return Err(bad(format!(
                    "component '{name}' is a {}; diffuse reads {}",
                    component.class_name,
                    known.classes().join(", ")
                )));
            }
            if !dir.join(name).is_dir() {
                return Err(bad(format!(
                    "names component '{name}' ({}), but the folder {} is missing",
                    component.class_name,
                    dir.join(name).display()
                )));
            }
        }
        let present = |name: &str| matches!(index.components.get(name), Some(Some(_)));
        // A text-to-image pipeline without a `vae` (saved as `[null, null]`) denoises pixels: diffuse's
        // `train --text` without `--vae` writes one.
        let required: &[Component] = if index.class_name == STABLE_DIFFUSION_PIPELINE {
            &[
                Component::Unet,
                Component::Scheduler,
                Component::TextEncoder,
                Component::Tokenizer,
            ]
        } else {
            &[Component::Unet, Component::Scheduler]
        };
        for required in required.iter().map(|c| c.name()) {
            if !present(required) {
                return Err(bad(format!(
                    "{} has no '{required}' component",
                    index.class_name
                )));
            }
        }
        let scheduler = dir.join("scheduler").join(SCHEDULER_CONFIG_FILE);
        if !scheduler.is_file() {
            return Err(folder_error(
                &scheduler,
                "the scheduler component has no config",
            ));
        }
        let is_checkpoint = dir.join("trainer_state.json").is_file();
        let raw = dir.join("model");
        let denoiser = if weights == Weights::Model && raw.join(CONFIG_FILE).is_file() {
            raw
        } else {
            dir.join(Component::Unet.name())
        };
        Ok(Self {
            kind: if is_checkpoint {
                FolderKind::Checkpoint
            } else {
                FolderKind::Pipeline
            },
            root: dir.to_path_buf(),
            vae: present(Component::Vae.name()).then(|| dir.join(Component::Vae.name())),
            text_encoder: present(Component::TextEncoder.name())
                .then(|| dir.join(Component::TextEncoder.name())),
            tokenizer: present(Component::Tokenizer.name())
                .then(|| dir.join(Component::Tokenizer.name())),
            index: Some(index),
            denoiser,
            scheduler_config: Some(scheduler),
            checkpoint: is_checkpoint.then(|| dir.to_path_buf()),
        })
    }

    /// Whether the folder's scheduler config is a score-SDE one ([`crate::sde::config`]), which the score
    /// samplers run rather than a discrete-time [`Scheduler`].
    pub fn is_score_sde(&self) -> Result<bool> {
        let Some(path) = &self.scheduler_config else {
            return Ok(false);
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::model(path.display().to_string(), format!("cannot read: {e}")))?;
        let value = python_json::parse(&text).map_err(|e| {
            Error::model(path.display().to_string(), format!("not valid JSON: {e}"))
        })?;
        let class = value.get("_class_name").and_then(|c| c.as_str());
        Ok(sde_config::ScoreSdeConfig::is_score_sde_class(class))
    }

    /// The folder's score-SDE scheduler config as a typed [`SchedulerConfig`] (its SDE keys in `extra`), for
    /// [`sde_config::ScoreSdeConfig::from_scheduler_config`]; `None` when the scheduler is not a score-SDE one.
    pub fn score_sde_config(&self) -> Result<Option<SchedulerConfig>> {
        match &self.scheduler_config {
            Some(path) if self.is_score_sde()? => Ok(Some(SchedulerConfig::from_file(path)?)),
            _ => Ok(None),
        }
    }

    /// The discrete-time scheduler the folder's config describes, or diffusers' `DDPMScheduler` defaults without
    /// one.
    pub fn scheduler(&self) -> Result<Scheduler> {
        match &self.scheduler_config {
            Some(path) => Scheduler::from_file(path),
            None => {
                let mut scheduler = Scheduler::named("ddpm")?;
                scheduler
                    .notes
                    .push("no scheduler config in the folder: DDPMScheduler's defaults".into());
                Ok(scheduler)
            }
        }
    }
}
