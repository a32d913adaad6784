//! The U-Net's `config.json`: diffusers' `UNet2DModel` arguments under their own names, with diffusers' defaults for
//! the ones a file leaves out, and a check that every option is one this implementation builds.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The diffusers version whose `UNet2DModel` this module reproduces (written into saved `config.json` files).
pub const DIFFUSERS_VERSION: &str = "0.42.1";

/// Architecture of a [`super::UNet2DModel`]: the arguments of diffusers' `UNet2DModel.__init__`.
///
/// Fields a file omits take diffusers' defaults; fields this struct does not know (`_class_name`, `_name_or_path`,
/// ...) are ignored. [`UNetConfig::from_json_str`] rejects every value of an option that is not implemented.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct UNetConfig {
    /// Height and width the model was trained at (informational: any size the down/up path can halve and double).
    pub sample_size: Option<SampleSize>,
    pub in_channels: usize,
    pub out_channels: usize,
    /// Map the input from `[0, 1]` to `[-1, 1]` (`2x − 1`) before the first convolution.
    pub center_input_sample: bool,
    /// `"positional"` (sinusoidal code of the timestep) or `"fourier"` (Gaussian Fourier code of the noise level σ
    /// passed as the timestep, with the output divided by σ: diffusers' score-SDE models).
    pub time_embedding_type: String,
    /// Width of the time embedding; `None` means `4 · block_out_channels[0]` (the only supported value).
    pub time_embedding_dim: Option<usize>,
    /// Shift of the frequency denominator: frequencies `exp(−ln(10⁴)·i/(half − freq_shift))` (positional only).
    pub freq_shift: f64,
    /// Order of the sinusoid halves: `[cos, sin]` when true, `[sin, cos]` when false (positional only; the Fourier
    /// code is always `[sin, cos]`, as diffusers builds it).
    pub flip_sin_to_cos: bool,
    pub down_block_types: Vec<String>,
    /// Only `"UNetMidBlock2D"`.
    pub mid_block_type: Option<String>,
    pub up_block_types: Vec<String>,
    pub block_out_channels: Vec<usize>,
    pub layers_per_block: usize,
    /// Only 1.
    pub mid_block_scale_factor: f64,
    /// Padding of the stride-2 downsampling convolutions; 0 pads one zero row and column at the bottom and right.
    pub downsample_padding: usize,
    /// Only `"conv"`.
    pub downsample_type: String,
    /// Only `"conv"`.
    pub upsample_type: String,
    /// Only 0.
    pub dropout: f64,
    /// Only `"silu"` (or its alias `"swish"`).
    pub act_fn: String,
    /// Channels per attention head; `None` means one head over all channels of the block.
    pub attention_head_dim: Option<usize>,
    pub norm_num_groups: usize,
    /// Only `None` (attention normalises in `norm_num_groups` groups).
    pub attn_norm_num_groups: Option<usize>,
    pub norm_eps: f64,
    /// Only `"default"` (the time embedding is added after the first convolution of each residual block).
    pub resnet_time_scale_shift: String,
    /// Attention between the two residual blocks of the mid block (only true).
    pub add_attention: bool,
    /// Only `None` (with `num_class_embeds`, a learned embedding table).
    pub class_embed_type: Option<String>,
    /// Number of class labels; their embeddings are added to the time embedding.
    pub num_class_embeds: Option<usize>,
    /// Used by diffusers only for `"learned"` time embeddings; kept for the round trip.
    pub num_train_timesteps: Option<usize>,
}

impl Default for UNetConfig {
    /// diffusers' `UNet2DModel.__init__` defaults.
    fn default() -> Self {
        UNetConfig {
            sample_size: None,
            in_channels: 3,
            out_channels: 3,
            center_input_sample: false,
            time_embedding_type: "positional".into(),
            time_embedding_dim: None,
            freq_shift: 0.0,
            flip_sin_to_cos: true,
            down_block_types: strings(&[
                "DownBlock2D",
                "AttnDownBlock2D",
                "AttnDownBlock2D",
                "AttnDownBlock2D",
            ]),
            mid_block_type: Some("UNetMidBlock2D".into()),
            up_block_types: strings(&[
                "AttnUpBlock2D",
                "AttnUpBlock2D",
                "AttnUpBlock2D",
                "UpBlock2D",
            ]),
            block_out_channels: vec![224, 448, 672, 896],
            layers_per_block: 2,
            mid_block_scale_factor: 1.0,
            downsample_padding: 1,
            downsample_type: "conv".into(),
            upsample_type: "conv".into(),
            dropout: 0.0,
            act_fn: "silu".into(),
            attention_head_dim: Some(8),
            norm_num_groups: 32,
            attn_norm_num_groups: None,
            norm_eps: 1e-5,
            resnet_time_scale_shift: "default".into(),
            add_attention: true,
            class_embed_type: None,
            num_class_embeds: None,
            num_train_timesteps: None,
        }
    }
}

pub(crate) fn strings(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

/// `sample_size`: one number for square samples or `[height, width]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SampleSize {
    Square(usize),
    Rect(usize, usize),
}

impl SampleSize {
    /// (height, width).
    pub fn height_width(self) -> (usize, usize) {
        match self {
            SampleSize::Square(s) => (s, s),
            SampleSize::Rect(h, w) => (h, w),
        }
    }
}

/// The names [`UNetConfig::named`] knows.
pub const NAMED_CONFIGS: [&str; 7] = [
    "fashion-small",
    "fashion-base",
    "fashion-latent",
    "fashion-small-14",
    "fashion-sr",
    "fashion-inpaint",
    "ddpm-cifar10",
];

pub(crate) fn config_error(message: impl Into<String>) -> Error {
    Error::model("config.json", message)
}

// The checks and the writing that diffusers' two U-Net configs (`UNet2DModel`, `UNet2DConditionModel`) share.

/// A diffusers `config.json` of `class_name` from a config serialised by serde: the arguments, the class name and
/// the diffusers version this crate reproduces.
pub(crate) fn diffusers_config_json(mut value: Value, class_name: &str) -> String {
    let map = value
        .as_object_mut()
        .expect("a U-Net config serialises to an object");
    map.insert("_class_name".into(), Value::from(class_name));
    map.insert("_diffusers_version".into(), Value::from(DIFFUSERS_VERSION));
    serde_json::to_string_pretty(&value).expect("a JSON value always serialises")
}

/// At least one level, and one down and one up block for each.
pub(crate) fn check_levels(levels: usize, down_blocks: usize, up_blocks: usize) -> Result<()> {
    if levels == 0 {
        return Err(config_error("block_out_channels is empty"));
    }
    if down_blocks != levels || up_blocks != levels {
        return Err(config_error(format!(
            "block_out_channels has {levels} entries but down_block_types has {down_blocks} and up_block_types \
             {up_blocks}; each level needs one of each"
        )));
    }
    Ok(())
}

pub(crate) fn check_in_out_channels(in_channels: usize, out_channels: usize) -> Result<()> {
    if in_channels == 0 || out_channels == 0 {
        return Err(config_error(format!(
            "in_channels = {in_channels} and out_channels = {out_channels} must both be at least 1"
        )));
    }
    Ok(())
}

/// Level `i`'s `channels` split into `groups` normalisation groups.
pub(crate) fn check_level_groups(i: usize, channels: usize, groups: usize) -> Result<()> {
    if groups == 0 || channels == 0 || !channels.is_multiple_of(groups) {
        return Err(config_error(format!(
            "block_out_channels[{i}] = {channels} is not a positive multiple of norm_num_groups = {groups}"
        )));
    }
    Ok(())
}

pub(crate) fn check_norm_eps(norm_eps: f64) -> Result<()> {
    if !(norm_eps > 0.0 && norm_eps.is_finite()) {
        return Err(config_error(format!(
            "norm_eps = {norm_eps} must be positive"
        )));
    }
    Ok(())
}

fn unsupported(option: &str, value: impl std::fmt::Debug, supported: &str) -> Error {
    config_error(format!(
        "{option} = {value:?} is not supported; supported: {supported}"
    ))
}

impl UNetConfig {
    /// A built-in architecture:
    ///
    /// - `fashion-small`: 28×28×1 (Fashion-MNIST), channels (32, 64, 64), one residual block per level, attention
    ///   only at the 7×7 level, 10 classes plus the null class 10 for classifier-free guidance.
    /// - `fashion-base`: the same data at (64, 128, 128) channels, two residual blocks per level, attention at 14×14
    ///   and 7×7.
    /// - `fashion-latent`: the denoiser of latent diffusion on the 4×7×7 latents of the `fashion-vae` autoencoder:
    ///   one level of 64 channels (7×7 leaves nothing to halve evenly), two residual blocks with attention, 10
    ///   classes plus the null class. About as many parameters as `fashion-small`, a fifth of its arithmetic.
    /// - `fashion-small-14`: the base model of a 14 → 28 cascade, on 14×14 images: channels (32, 64), attention at
    ///   7×7 (a third level would halve 7), 10 classes plus the null class.
    /// - `fashion-sr`: the super-resolution stage of that cascade: `fashion-small` at 28×28 with a second input
    ///   channel (the upsampled low-resolution image) and 11 class embeddings, one per noise-augmentation level
    ///   (`diffuse train --super-resolution 14:28`).
    /// - `fashion-inpaint`: the trained inpainting network: `fashion-small` with the mask and the masked image as two
    ///   more input channels (`diffuse train --inpainting`), class-conditional.
    /// - `ddpm-cifar10`: the published `google/ddpm-cifar10-32` model (Ho et al. 2020's CIFAR-10 network).
    ///
    /// The Fashion configs use 32-channel attention heads and 8 normalisation groups.
    pub fn named(name: &str) -> Result<UNetConfig> {
        let fashion = |channels: Vec<usize>, layers, down: &[&str], up: &[&str]| UNetConfig {
            sample_size: Some(SampleSize::Square(28)),
            in_channels: 1,
            out_channels: 1,
            block_out_channels: channels,
            layers_per_block: layers,
            down_block_types: strings(down),
            up_block_types: strings(up),
            attention_head_dim: Some(32),
            norm_num_groups: 8,
            num_class_embeds: Some(11),
            ..UNetConfig::default()
        };
        match name {
            "fashion-small" => Ok(fashion(
                vec![32, 64, 64],
                1,
                &["DownBlock2D", "DownBlock2D", "AttnDownBlock2D"],
                &["AttnUpBlock2D", "UpBlock2D", "UpBlock2D"],
            )),
            "fashion-base" => Ok(fashion(
                vec![64, 128, 128],
                2,
                &["DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"],
                &["AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"],
            )),
            "fashion-latent" => Ok(UNetConfig {
                sample_size: Some(SampleSize::Square(7)),
                in_channels: 4,
                out_channels: 4,
                ..fashion(vec![64], 2, &["AttnDownBlock2D"], &["AttnUpBlock2D"])
            }),
            "fashion-small-14" => Ok(UNetConfig {
                sample_size: Some(SampleSize::Square(14)),
                ..fashion(
                    vec![32, 64],
                    1,
                    &["DownBlock2D", "AttnDownBlock2D"],
                    &["AttnUpBlock2D", "UpBlock2D"],
                )
            }),
            "fashion-sr" => Ok(UNetConfig {
                in_channels: 2,
                ..UNetConfig::named("fashion-small")?
            }),
            "fashion-inpaint" => Ok(UNetConfig {
                in_channels: 3,
                ..UNetConfig::named("fashion-small")?
            }),
            "ddpm-cifar10" => UNetConfig::from_json_str(DDPM_CIFAR10_CONFIG),
            other => Err(config_error(format!(
                "unknown model config '{other}'; known: {}",
                NAMED_CONFIGS.join(", ")
            ))),
        }
    }

    /// Parses a diffusers `config.json` and checks every option (see [`UNetConfig::validate`]).
    pub fn from_json_str(s: &str) -> Result<UNetConfig> {
        let value: Value =
            serde_json::from_str(s).map_err(|e| config_error(format!("not valid JSON: {e}")))?;
        if let Some(class) = value.get("_class_name").and_then(Value::as_str) {
            if class != "UNet2DModel" {
                return Err(unsupported("_class_name", class, "\"UNet2DModel\""));
            }
        }
        let config: UNetConfig = serde_json::from_value(value)
            .map_err(|e| config_error(format!("unexpected value: {e}")))?;
        config.validate()?;
        Ok(config)
    }

    /// A `config.json` diffusers' `UNet2DModel.from_pretrained` reads.
    pub fn to_json_string(&self) -> String {
        let value = serde_json::to_value(self).expect("a UNetConfig always serialises");
        diffusers_config_json(value, "UNet2DModel")
    }

    /// Width of the time (and class) embedding: `4 · block_out_channels[0]`.
    pub fn time_embed_dim(&self) -> usize {
        self.block_out_channels[0] * 4
    }

    /// Whether the time embedding is the Fourier code of a noise level (and the output is divided by it).
    pub fn is_fourier(&self) -> bool {
        self.time_embedding_type == "fourier"
    }

    /// Channels per attention head in a block of `channels` (all of them when `attention_head_dim` is null).
    pub fn head_dim(&self, channels: usize) -> usize {
        self.attention_head_dim.unwrap_or(channels)
    }

    /// Checks that every option has a value this implementation builds, and that the numbers fit together.
    pub fn validate(&self) -> Result<()> {
        if self.time_embedding_type != "positional" && !self.is_fourier() {
            return Err(unsupported(
                "time_embedding_type",
                &self.time_embedding_type,
                "\"positional\", \"fourier\"",
            ));
        }
        if let Some(dim) = self.time_embedding_dim {
            return Err(unsupported(
                "time_embedding_dim",
                dim,
                "null (4 × block_out_channels[0])",
            ));
        }
        if self.mid_block_type.as_deref() != Some("UNetMidBlock2D") {
            return Err(unsupported(
                "mid_block_type",
                &self.mid_block_type,
                "\"UNetMidBlock2D\"",
            ));
        }
        if self.mid_block_scale_factor != 1.0 {
            return Err(unsupported(
                "mid_block_scale_factor",
                self.mid_block_scale_factor,
                "1",
            ));
        }
        for (option, value) in [
            ("downsample_type", &self.downsample_type),
            ("upsample_type", &self.upsample_type),
        ] {
            if value != "conv" {
                return Err(unsupported(option, value, "\"conv\""));
            }
        }
        if self.dropout != 0.0 {
            return Err(unsupported("dropout", self.dropout, "0"));
        }
        if self.act_fn != "silu" && self.act_fn != "swish" {
            return Err(unsupported("act_fn", &self.act_fn, "\"silu\""));
        }
        if let Some(groups) = self.attn_norm_num_groups {
            return Err(unsupported(
                "attn_norm_num_groups",
                groups,
                "null (attention uses norm_num_groups)",
            ));
        }
        if self.resnet_time_scale_shift != "default" {
            return Err(unsupported(
                "resnet_time_scale_shift",
                &self.resnet_time_scale_shift,
                "\"default\"",
            ));
        }
        if !self.add_attention {
            return Err(unsupported("add_attention", false, "true"));
        }
        if let Some(kind) = &self.class_embed_type {
            return Err(unsupported(
                "class_embed_type",
                kind,
                "null (a table of num_class_embeds embeddings)",
            ));
        }
        if self.num_class_embeds == Some(0) {
            return Err(unsupported("num_class_embeds", 0, "null or at least 1"));
        }
        self.validate_blocks()?;
        self.validate_sizes()
    }

    fn validate_blocks(&self) -> Result<()> {
        for (i, kind) in self.down_block_types.iter().enumerate() {
            if kind != "DownBlock2D" && kind != "AttnDownBlock2D" {
                return Err(unsupported(
                    &format!("down_block_types[{i}]"),
                    kind,
                    "\"DownBlock2D\", \"AttnDownBlock2D\"",
                ));
            }
        }
        for (i, kind) in self.up_block_types.iter().enumerate() {
            if kind != "UpBlock2D" && kind != "AttnUpBlock2D" {
                return Err(unsupported(
                    &format!("up_block_types[{i}]"),
                    kind,
                    "\"UpBlock2D\", \"AttnUpBlock2D\"",
                ));
            }
        }
        check_levels(
            self.block_out_channels.len(),
            self.down_block_types.len(),
            self.up_block_types.len(),
        )
    }

    fn validate_sizes(&self) -> Result<()> {
        check_in_out_channels(self.in_channels, self.out_channels)?;
        if self.layers_per_block == 0 {
            return Err(config_error("layers_per_block must be at least 1"));
        }
        let groups = self.norm_num_groups;
        for (i, &c) in self.block_out_channels.iter().enumerate() {
            check_level_groups(i, c, groups)?;
            let attends = self.down_block_types[i] == "AttnDownBlock2D"
                || self.up_block_types[self.block_out_channels.len() - 1 - i] == "AttnUpBlock2D"
                || i + 1 == self.block_out_channels.len();
            if attends && self.head_dim(c) > c {
                return Err(config_error(format!(
                    "attention_head_dim = {} exceeds the {c} channels of level {i}, which would have no head",
                    self.head_dim(c)
                )));
            }
        }
        if self.attention_head_dim == Some(0) {
            return Err(unsupported("attention_head_dim", 0, "null or at least 1"));
        }
        check_norm_eps(self.norm_eps)
    }
}

/// `google/ddpm-cifar10-32`'s `config.json` as published on the Hugging Face Hub (the DDPM paper's CIFAR-10 model
/// converted to diffusers). Every field was checked against a copy of that config kept in a public research
/// repository (re-saved by diffusers 0.24, which adds only the defaults we also use). The model mirrors the original
/// TensorFlow code, so its timestep embedding is `[sin, cos]` with denominator `half − 1` and its downsampling pads bottom/right only.
const DDPM_CIFAR10_CONFIG: &str = r#"{
  "_class_name": "UNet2DModel",
  "_diffusers_version": "0.1.1",
  "act_fn": "silu",
  "attention_head_dim": null,
  "block_out_channels": [128, 256, 256, 256],
  "center_input_sample": false,
  "down_block_types": ["DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"],
  "downsample_padding": 0,
  "flip_sin_to_cos": false,
  "freq_shift": 1,
  "in_channels": 3,
  "layers_per_block": 2,
  "mid_block_scale_factor": 1,
  "norm_eps": 1e-06,
  "norm_num_groups": 32,
  "out_channels": 3,
  "sample_size": 32,
  "time_embedding_type": "positional",
  "up_block_types": ["UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"]
}"#;
