//! The denoising network of a diffusion model, whichever architecture it is. A diffusion process (training, the
//! samplers) needs only a forward pass `(x_t, t, condition) → output` and the network's `config.json`; this enum
//! gives it that for every architecture here, so that the command line can train and sample any of them.
//!
//! A folder's `config.json` names its architecture in `_class_name`, as diffusers writes it; a file without one is
//! read as a `UNet2DModel` (diffusers' own older files).

use crate::dit::{DiTConfig, DiTTransformer2DModel, NAMED_CONFIGS as DIT_NAMED_CONFIGS};
use crate::error::{Error, Result};
use crate::folder::{load_weights, read_config, save_folder, DIFFUSERS_WEIGHTS_FILE};
use crate::unet::{UNet2DModel, UNetConfig, NAMED_CONFIGS as UNET_NAMED_CONFIGS};
use crate::unet_condition::{
    UNet2DConditionConfig, UNet2DConditionModel, NAMED_CONFIGS as TEXT_NAMED_CONFIGS,
};
use diffuse_autograd::Var;
use diffuse_nn::ParamStore;
use diffuse_tensor::{Device, Tensor};
use serde_json::Value;
use std::path::Path;

/// The architecture and its settings.
// One value per model, made once: the variants' sizes do not matter enough to box them.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
pub enum BackboneConfig {
    UNet2D(UNetConfig),
    DiT(DiTConfig),
    /// A U-Net with cross-attention to a context (Stable Diffusion's denoiser).
    UNet2DCondition(UNet2DConditionConfig),
}

impl BackboneConfig {
    /// Every named configuration, of every architecture.
    pub fn named_configs() -> Vec<&'static str> {
        [
            &UNET_NAMED_CONFIGS[..],
            &DIT_NAMED_CONFIGS[..],
            &TEXT_NAMED_CONFIGS[..],
        ]
        .concat()
    }

    /// A built-in architecture by name (see [`BackboneConfig::named_configs`]).
    pub fn named(name: &str) -> Result<BackboneConfig> {
        if UNET_NAMED_CONFIGS.contains(&name) {
            return Ok(BackboneConfig::UNet2D(UNetConfig::named(name)?));
        }
        if DIT_NAMED_CONFIGS.contains(&name) {
            return Ok(BackboneConfig::DiT(DiTConfig::named(name)?));
        }
        if TEXT_NAMED_CONFIGS.contains(&name) {
            return Ok(BackboneConfig::UNet2DCondition(
                UNet2DConditionConfig::named(name)?,
            ));
        }
        Err(Error::model(
            "config",
            format!(
                "unknown model config '{name}'; known: {}",
                Self::named_configs().join(", ")
            ),
        ))
    }

    /// Parses a diffusers `config.json` of any architecture here, chosen by its `_class_name`.
    pub fn from_json_str(text: &str) -> Result<BackboneConfig> {
        let value: Value = serde_json::from_str(text)
            .map_err(|e| Error::model("config.json", format!("not valid JSON: {e}")))?;
        match value.get("_class_name").and_then(Value::as_str) {
            None | Some("UNet2DModel") => Ok(BackboneConfig::UNet2D(UNetConfig::from_json_str(
                text,
            )?)),
            Some("DiTTransformer2DModel") => Ok(BackboneConfig::DiT(DiTConfig::from_json_str(text)?)),
            Some("UNet2DConditionModel") => Ok(BackboneConfig::UNet2DCondition(
                UNet2DConditionConfig::from_json_str(text)?,
            )),
            Some(other) => Err(Error::model(
                "config.json",
                format!("_class_name = \"{other}\" is not a denoising network diffuse builds; supported: \"UNet2DModel\", \"DiTTransformer2DModel\", \"UNet2DConditionModel\""),
            )),
        }
    }

    /// The `config.json` its reference library reads.
    pub fn to_json_string(&self) -> String {
        match self {
            BackboneConfig::UNet2D(c) => c.to_json_string(),
            BackboneConfig::DiT(c) => c.to_json_string(),
            BackboneConfig::UNet2DCondition(c) => c.to_json_string(),
        }
    }

    /// The diffusers class name of the architecture.
    pub fn class_name(&self) -> &'static str {
        match self {
            BackboneConfig::UNet2D(_) => "UNet2DModel",
            BackboneConfig::DiT(_) => "DiTTransformer2DModel",
            BackboneConfig::UNet2DCondition(_) => "UNet2DConditionModel",
        }
    }

    /// Channels of the noisy input.
    pub fn in_channels(&self) -> usize {
        match self {
            BackboneConfig::UNet2D(c) => c.in_channels,
            BackboneConfig::DiT(c) => c.in_channels,
            BackboneConfig::UNet2DCondition(c) => c.in_channels,
        }
    }

    /// Channels of the output (twice the input's when the network predicts a variance beside the mean).
    pub fn out_channels(&self) -> usize {
        match self {
            BackboneConfig::UNet2D(c) => c.out_channels,
            BackboneConfig::DiT(c) => c.output_channels(),
            BackboneConfig::UNet2DCondition(c) => c.out_channels,
        }
    }

    /// Whether the output's second half is a learned variance (Nichol & Dhariwal 2021): `out = 2 · in` channels.
    pub fn learns_variance(&self) -> bool {
        match self {
            BackboneConfig::UNet2D(_) | BackboneConfig::UNet2DCondition(_) => false,
            BackboneConfig::DiT(c) => c.learns_variance(),
        }
    }

    /// Floating-point operations of one forward pass of one `height × width` sample, where counted.
    pub fn flops_per_sample(&self, height: usize, width: usize) -> Option<f64> {
        match self {
            BackboneConfig::UNet2D(_) | BackboneConfig::UNet2DCondition(_) => None,
            BackboneConfig::DiT(c) => Some(crate::dit::flops::flops_per_image(c, height, width)),
        }
    }

    /// (height, width) the network was configured for, if the config says.
    pub fn sample_size(&self) -> Option<(usize, usize)> {
        match self {
            BackboneConfig::UNet2D(c) => c.sample_size.map(|s| s.height_width()),
            BackboneConfig::DiT(c) => Some((c.sample_size, c.sample_size)),
            BackboneConfig::UNet2DCondition(c) => c.sample_size.map(|s| s.height_width()),
        }
    }

    /// Whether the network is conditioned on a noise level σ and returns a score (diffusers' score-SDE convention:
    /// a Fourier time embedding of ln σ and the output divided by σ) rather than on a training timestep.
    pub fn takes_noise_level(&self) -> bool {
        match self {
            BackboneConfig::UNet2D(c) => c.is_fourier(),
            BackboneConfig::DiT(_) | BackboneConfig::UNet2DCondition(_) => false,
        }
    }

    /// The same network conditioned on noise levels (a Fourier time embedding), for score-SDE training; `None` for
    /// an architecture that has no such embedding.
    pub fn with_noise_level_embedding(&self) -> Option<BackboneConfig> {
        match self {
            BackboneConfig::UNet2D(c) => Some(BackboneConfig::UNet2D(UNetConfig {
                time_embedding_type: "fourier".into(),
                ..c.clone()
            })),
            BackboneConfig::DiT(_) | BackboneConfig::UNet2DCondition(_) => None,
        }
    }

    /// Number of class embeddings (the null class included), if the network is class-conditional.
    pub fn num_class_embeds(&self) -> Option<usize> {
        match self {
            BackboneConfig::UNet2D(c) => c.num_class_embeds,
            BackboneConfig::DiT(c) => Some(c.label_table_len()),
            BackboneConfig::UNet2DCondition(c) => c.num_class_embeds,
        }
    }

    /// Features per token of the cross-attention context the network takes (a text encoder's hidden size), if it
    /// attends to one.
    pub fn context_dim(&self) -> Option<usize> {
        match self {
            BackboneConfig::UNet2D(_) | BackboneConfig::DiT(_) => None,
            BackboneConfig::UNet2DCondition(c) => Some(c.context_dim()),
        }
    }
}

/// A denoising network of any architecture here.
// One value per model, made once: the variants' sizes do not matter enough to box them.
#[allow(clippy::large_enum_variant)]
pub enum Backbone {
    UNet2D(UNet2DModel),
    DiT(DiTTransformer2DModel),
    UNet2DCondition(UNet2DConditionModel),
}

impl Backbone {
    /// Builds the network in `store`, initialised as its reference library initialises it.
    pub fn new(config: BackboneConfig, store: &ParamStore) -> Result<Backbone> {
        Ok(match config {
            BackboneConfig::UNet2D(c) => Backbone::UNet2D(UNet2DModel::new(c, store)?),
            BackboneConfig::DiT(c) => Backbone::DiT(DiTTransformer2DModel::new(c, store)?),
            BackboneConfig::UNet2DCondition(c) => {
                Backbone::UNet2DCondition(UNet2DConditionModel::new(c, store)?)
            }
        })
    }

    /// Loads a diffusers model folder of any architecture here onto `device`.
    pub fn load_diffusers(dir: &Path, device: Device) -> Result<(Backbone, ParamStore)> {
        let config = read_config(dir, BackboneConfig::from_json_str)?;
        let store = ParamStore::new(0, device);
        let model = Backbone::new(config, &store)?;
        load_weights(&store, &dir.join(DIFFUSERS_WEIGHTS_FILE))?;
        Ok((model, store))
    }

    /// Writes the network's folder (its `config.json` and its parameters from `store`) into `dir`.
    pub fn save_diffusers(&self, store: &ParamStore, dir: &Path) -> Result<()> {
        save_folder(
            dir,
            &self.config().to_json_string(),
            store,
            DIFFUSERS_WEIGHTS_FILE,
        )
    }

    /// The architecture and its settings.
    pub fn config(&self) -> BackboneConfig {
        match self {
            Backbone::UNet2D(m) => BackboneConfig::UNet2D(m.config().clone()),
            Backbone::DiT(m) => BackboneConfig::DiT(m.config().clone()),
            Backbone::UNet2DCondition(m) => BackboneConfig::UNet2DCondition(m.config().clone()),
        }
    }

    /// The device the parameters live on.
    pub fn device(&self) -> Device {
        match self {
            Backbone::UNet2D(m) => m.device(),
            Backbone::DiT(m) => m.device(),
            Backbone::UNet2DCondition(m) => m.device(),
        }
    }

    /// The output for the noisy batch `sample` (N, C, H, W) at per-sample `timesteps`, conditioned on class labels
    /// and/or a cross-attention `context` (N, L, D) when the architecture takes them.
    pub fn forward(
        &self,
        sample: &Var,
        timesteps: &[f64],
        class_labels: Option<&[u32]>,
        context: Option<&Tensor>,
    ) -> Result<Var> {
        match self {
            Backbone::UNet2D(m) => {
                if context.is_some() {
                    return Err(Error::model(
                        "UNet2DModel",
                        "has no cross-attention, so it cannot be conditioned on a context (a prompt)",
                    ));
                }
                m.forward(sample, timesteps, class_labels)
            }
            Backbone::DiT(m) => {
                if context.is_some() {
                    return Err(Error::model(
                        "DiTTransformer2DModel",
                        "has no cross-attention, so it cannot be conditioned on a context (a prompt)",
                    ));
                }
                m.forward(sample, timesteps, class_labels)
            }
            Backbone::UNet2DCondition(m) => {
                let context = context.ok_or_else(|| {
                    Error::model(
                        "UNet2DConditionModel",
                        "attends to a context (a prompt's text-encoder states, diffusers' encoder_hidden_states): \
                         pass one, the empty prompt's for an unconditional sample",
                    )
                })?;
                m.forward(
                    sample,
                    timesteps,
                    &Var::constant(context.clone()),
                    class_labels,
                )
            }
        }
    }
}
