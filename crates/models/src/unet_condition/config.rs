//! The conditional U-Net's `config.json`: every argument of diffusers' `UNet2DConditionModel.__init__` (diffusers
//! 0.42.1) under its own name, with diffusers' defaults for the ones a file leaves out. A key diffusers does not
//! know is refused by name, and so is every value of an option this implementation does not build.
//!
//! diffusers' naming quirk, kept for compatibility: in this class `attention_head_dim` is the number of attention
//! *heads* per level (it is passed on as `num_attention_heads`), and each head has `channels / heads` channels.

use crate::error::{Error, Result};
use crate::unet::config::{
    check_in_out_channels, check_level_groups, check_levels, check_norm_eps, config_error,
    diffusers_config_json, strings,
};
use crate::unet::SampleSize;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One value for every level, or one per level (in `down_block_types` order).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PerLevel<T> {
    All(T),
    Each(Vec<T>),
}

impl<T: Copy> PerLevel<T> {
    /// The value at level `i` (of `levels`; checked by [`UNet2DConditionConfig::validate`]).
    pub fn at(&self, i: usize) -> T {
        match self {
            PerLevel::All(v) => *v,
            PerLevel::Each(values) => values[i],
        }
    }

    fn len_fits(&self, levels: usize) -> bool {
        match self {
            PerLevel::All(_) => true,
            PerLevel::Each(values) => values.len() == levels,
        }
    }
}

/// Architecture of a [`super::UNet2DConditionModel`]: the arguments of diffusers' `UNet2DConditionModel.__init__`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UNet2DConditionConfig {
    pub sample_size: Option<SampleSize>,
    pub in_channels: usize,
    pub out_channels: usize,
    /// Map the input from `[0, 1]` to `[-1, 1]` (`2x − 1`) before the first convolution.
    pub center_input_sample: bool,
    pub flip_sin_to_cos: bool,
    pub freq_shift: f64,
    /// `"CrossAttnDownBlock2D"` or `"DownBlock2D"` per level.
    pub down_block_types: Vec<String>,
    /// Only `"UNetMidBlock2DCrossAttn"`.
    pub mid_block_type: Option<String>,
    /// `"CrossAttnUpBlock2D"` or `"UpBlock2D"` per level, innermost first.
    pub up_block_types: Vec<String>,
    /// Only false.
    pub only_cross_attention: PerLevel<bool>,
    pub block_out_channels: Vec<usize>,
    pub layers_per_block: PerLevel<usize>,
    pub downsample_padding: usize,
    /// Only 1.
    pub mid_block_scale_factor: f64,
    /// Only 0.
    pub dropout: f64,
    /// Only `"silu"` (or its alias `"swish"`).
    pub act_fn: String,
    /// Only a number (diffusers' null, no output norm, is not built).
    pub norm_num_groups: Option<usize>,
    pub norm_eps: f64,
    /// Features per token of the context the transformers attend to (a text encoder's hidden size).
    pub cross_attention_dim: PerLevel<usize>,
    /// Transformer blocks inside each `Transformer2DModel`.
    pub transformer_layers_per_block: PerLevel<usize>,
    /// Only null.
    pub reverse_transformer_layers_per_block: Option<Value>,
    /// Only null.
    pub encoder_hid_dim: Option<usize>,
    /// Only null.
    pub encoder_hid_dim_type: Option<String>,
    /// The number of attention heads per level (diffusers' name; see the module documentation).
    pub attention_head_dim: PerLevel<usize>,
    /// Only null (diffusers itself refuses it).
    pub num_attention_heads: Option<Value>,
    /// Only false.
    pub dual_cross_attention: bool,
    /// Linear `proj_in` / `proj_out` of the transformers (true) or 1×1 convolutions (false).
    pub use_linear_projection: bool,
    /// Only null (with `num_class_embeds`, a learned embedding table).
    pub class_embed_type: Option<String>,
    /// Only null.
    pub addition_embed_type: Option<String>,
    /// Only null.
    pub addition_time_embed_dim: Option<usize>,
    /// Number of class labels; their embeddings are added to the time embedding.
    pub num_class_embeds: Option<usize>,
    /// Attention in f32 under half precision; diffuse always computes attention in f32, so both values build.
    pub upcast_attention: bool,
    /// Only `"default"`.
    pub resnet_time_scale_shift: String,
    /// Only false.
    pub resnet_skip_time_act: bool,
    /// Only 1.
    pub resnet_out_scale_factor: f64,
    /// Only `"positional"`.
    pub time_embedding_type: String,
    /// Width of the time embedding; null: `4 · block_out_channels[0]`.
    pub time_embedding_dim: Option<usize>,
    /// Only null.
    pub time_embedding_act_fn: Option<String>,
    /// Only null.
    pub timestep_post_act: Option<String>,
    /// Only null.
    pub time_cond_proj_dim: Option<usize>,
    /// Only 3.
    pub conv_in_kernel: usize,
    /// Only 3.
    pub conv_out_kernel: usize,
    /// Only null.
    pub projection_class_embeddings_input_dim: Option<usize>,
    /// Only `"default"`.
    pub attention_type: String,
    /// Only false.
    pub class_embeddings_concat: bool,
    /// Only null or false.
    pub mid_block_only_cross_attention: Option<bool>,
    /// Only null.
    pub cross_attention_norm: Option<String>,
    /// Used by diffusers only with `addition_embed_type = "text_proj"`; kept for the round trip.
    pub addition_embed_type_num_heads: usize,
}

impl Default for UNet2DConditionConfig {
    /// diffusers' `UNet2DConditionModel.__init__` defaults (Stable Diffusion 1.x's U-Net).
    fn default() -> Self {
        UNet2DConditionConfig {
            sample_size: None,
            in_channels: 4,
            out_channels: 4,
            center_input_sample: false,
            flip_sin_to_cos: true,
            freq_shift: 0.0,
            down_block_types: strings(&[
                "CrossAttnDownBlock2D",
                "CrossAttnDownBlock2D",
                "CrossAttnDownBlock2D",
                "DownBlock2D",
            ]),
            mid_block_type: Some("UNetMidBlock2DCrossAttn".into()),
            up_block_types: strings(&[
                "UpBlock2D",
                "CrossAttnUpBlock2D",
                "CrossAttnUpBlock2D",
                "CrossAttnUpBlock2D",
            ]),
            only_cross_attention: PerLevel::All(false),
            block_out_channels: vec![320, 640, 1280, 1280],
            layers_per_block: PerLevel::All(2),
            downsample_padding: 1,
            mid_block_scale_factor: 1.0,
            dropout: 0.0,
            act_fn: "silu".into(),
            norm_num_groups: Some(32),
            norm_eps: 1e-5,
            cross_attention_dim: PerLevel::All(1280),
            transformer_layers_per_block: PerLevel::All(1),
            reverse_transformer_layers_per_block: None,
            encoder_hid_dim: None,
            encoder_hid_dim_type: None,
            attention_head_dim: PerLevel::All(8),
            num_attention_heads: None,
            dual_cross_attention: false,
            use_linear_projection: false,
            class_embed_type: None,
            addition_embed_type: None,
            addition_time_embed_dim: None,
            num_class_embeds: None,
            upcast_attention: false,
            resnet_time_scale_shift: "default".into(),
            resnet_skip_time_act: false,
            resnet_out_scale_factor: 1.0,
            time_embedding_type: "positional".into(),
            time_embedding_dim: None,
            time_embedding_act_fn: None,
            timestep_post_act: None,
            time_cond_proj_dim: None,
            conv_in_kernel: 3,
            conv_out_kernel: 3,
            projection_class_embeddings_input_dim: None,
            attention_type: "default".into(),
            class_embeddings_concat: false,
            mid_block_only_cross_attention: None,
            cross_attention_norm: None,
            addition_embed_type_num_heads: 64,
        }
    }
}

/// The class name in `config.json`.
pub const CLASS_NAME: &str = "UNet2DConditionModel";

/// The names [`UNet2DConditionConfig::named`] knows.
pub const NAMED_CONFIGS: [&str; 2] = ["fashion-text", "fashion-text-latent"];

/// The context width of the named configs: the width of the text encoder `diffuse clip train` makes by default
/// (`diffuse train --text` sets it to the encoder's own width).
const NAMED_CONTEXT_DIM: usize = 64;

/// Bookkeeping keys diffusers writes beside the arguments (`_class_name`, `_diffusers_version`, `_name_or_path`,
/// ...): every key starting with an underscore.
fn is_bookkeeping(key: &str) -> bool {
    key.starts_with('_')
}

fn unsupported(option: &str, value: impl std::fmt::Debug, supported: &str) -> Error {
    config_error(format!(
        "{option} = {value:?} is not supported by diffuse's UNet2DConditionModel; supported: {supported}"
    ))
}

impl UNet2DConditionConfig {
    /// A built-in text-to-image denoiser, small enough to train on a CPU in minutes:
    ///
    /// - `fashion-text`: 28×28×1 pixels (Fashion-MNIST), channels (32, 64, 64), one residual block per level, a
    ///   transformer (self-attention, cross-attention to the prompt, GEGLU feed-forward) at the 14×14 and 7×7 levels
    ///   and in the mid block, two heads per transformer;
    /// - `fashion-text-latent`: the 4×7×7 latents of the `fashion-vae` autoencoder, one level of 64 channels (7×7
    ///   leaves nothing to halve evenly) with two residual blocks, each followed by a transformer, and the mid block's.
    ///
    /// Both attend to 64-wide text states, 8 normalisation groups, linear transformer projections, no class labels.
    pub fn named(name: &str) -> Result<UNet2DConditionConfig> {
        let base = UNet2DConditionConfig {
            cross_attention_dim: PerLevel::All(NAMED_CONTEXT_DIM),
            attention_head_dim: PerLevel::All(2),
            norm_num_groups: Some(8),
            use_linear_projection: true,
            ..UNet2DConditionConfig::default()
        };
        match name {
            "fashion-text" => Ok(UNet2DConditionConfig {
                sample_size: Some(SampleSize::Square(28)),
                in_channels: 1,
                out_channels: 1,
                block_out_channels: vec![32, 64, 64],
                layers_per_block: PerLevel::All(1),
                down_block_types: strings(&[
                    "DownBlock2D",
                    "CrossAttnDownBlock2D",
                    "CrossAttnDownBlock2D",
                ]),
                up_block_types: strings(&["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"]),
                ..base
            }),
            "fashion-text-latent" => Ok(UNet2DConditionConfig {
                sample_size: Some(SampleSize::Square(7)),
                in_channels: 4,
                out_channels: 4,
                block_out_channels: vec![64],
                layers_per_block: PerLevel::All(2),
                down_block_types: strings(&["CrossAttnDownBlock2D"]),
                up_block_types: strings(&["CrossAttnUpBlock2D"]),
                ..base
            }),
            other => Err(config_error(format!(
                "unknown model config '{other}'; known: {}",
                NAMED_CONFIGS.join(", ")
            ))),
        }
    }

    /// Parses a diffusers `config.json` and checks every option (see [`UNet2DConditionConfig::validate`]).
    pub fn from_json_str(s: &str) -> Result<UNet2DConditionConfig> {
        let value: Value =
            serde_json::from_str(s).map_err(|e| config_error(format!("not valid JSON: {e}")))?;
        let Value::Object(mut map) = value else {
            return Err(config_error("the config must be a JSON object"));
        };
        if let Some(class) = map.get("_class_name").and_then(Value::as_str) {
            if class != CLASS_NAME {
                return Err(unsupported(
                    "_class_name",
                    class,
                    "\"UNet2DConditionModel\"",
                ));
            }
        }
        map.retain(|key, _| !is_bookkeeping(key));
        let config: UNet2DConditionConfig =
            serde_json::from_value(Value::Object(map)).map_err(|e| {
                config_error(format!(
                    "{e} (a UNet2DConditionModel argument diffuse does not know)"
                ))
            })?;
        config.validate()?;
        Ok(config)
    }

    /// A `config.json` diffusers' `UNet2DConditionModel.from_pretrained` reads.
    pub fn to_json_string(&self) -> String {
        let value = serde_json::to_value(self).expect("a UNet2DConditionConfig always serialises");
        diffusers_config_json(value, CLASS_NAME)
    }

    /// Number of levels (entries of `block_out_channels`).
    pub fn levels(&self) -> usize {
        self.block_out_channels.len()
    }

    /// Width of the time (and class) embedding: `time_embedding_dim`, else `4 · block_out_channels[0]`.
    pub fn time_embed_dim(&self) -> usize {
        self.time_embedding_dim
            .unwrap_or(4 * self.block_out_channels[0])
    }

    /// Groups of every group norm.
    pub fn groups(&self) -> usize {
        self.norm_num_groups.unwrap_or(0)
    }

    /// The context width the mid block attends to, which is the innermost level's (`cross_attention_dim[-1]`);
    /// the width a text encoder's hidden states must have when every level takes the same.
    pub fn context_dim(&self) -> usize {
        self.cross_attention_dim.at(self.levels() - 1)
    }

    /// Checks that every option has a value this implementation builds, and that the numbers fit together.
    pub fn validate(&self) -> Result<()> {
        self.validate_unsupported()?;
        self.validate_blocks()?;
        self.validate_sizes()
    }

    fn validate_unsupported(&self) -> Result<()> {
        if self.time_embedding_type != "positional" {
            return Err(unsupported(
                "time_embedding_type",
                &self.time_embedding_type,
                "\"positional\"",
            ));
        }
        if self.mid_block_type.as_deref() != Some("UNetMidBlock2DCrossAttn") {
            return Err(unsupported(
                "mid_block_type",
                &self.mid_block_type,
                "\"UNetMidBlock2DCrossAttn\"",
            ));
        }
        if self.only_cross_attention != PerLevel::All(false)
            && self.only_cross_attention != PerLevel::Each(vec![false; self.levels()])
        {
            return Err(unsupported(
                "only_cross_attention",
                &self.only_cross_attention,
                "false",
            ));
        }
        if self.mid_block_only_cross_attention == Some(true) {
            return Err(unsupported(
                "mid_block_only_cross_attention",
                true,
                "null, false",
            ));
        }
        for (option, value, supported) in [
            ("mid_block_scale_factor", self.mid_block_scale_factor, 1.0),
            ("resnet_out_scale_factor", self.resnet_out_scale_factor, 1.0),
            ("dropout", self.dropout, 0.0),
        ] {
            if value != supported {
                return Err(unsupported(option, value, &supported.to_string()));
            }
        }
        if self.act_fn != "silu" && self.act_fn != "swish" {
            return Err(unsupported("act_fn", &self.act_fn, "\"silu\""));
        }
        if self.norm_num_groups.is_none() {
            return Err(unsupported("norm_num_groups", "null", "a number of groups"));
        }
        for (option, value) in [
            ("resnet_time_scale_shift", &self.resnet_time_scale_shift),
            ("attention_type", &self.attention_type),
        ] {
            if value != "default" {
                return Err(unsupported(option, value, "\"default\""));
            }
        }
        for (option, value) in [
            ("dual_cross_attention", self.dual_cross_attention),
            ("resnet_skip_time_act", self.resnet_skip_time_act),
            ("class_embeddings_concat", self.class_embeddings_concat),
        ] {
            if value {
                return Err(unsupported(option, true, "false"));
            }
        }
        for (option, value) in [
            ("encoder_hid_dim_type", &self.encoder_hid_dim_type),
            ("class_embed_type", &self.class_embed_type),
            ("addition_embed_type", &self.addition_embed_type),
            ("time_embedding_act_fn", &self.time_embedding_act_fn),
            ("timestep_post_act", &self.timestep_post_act),
            ("cross_attention_norm", &self.cross_attention_norm),
        ] {
            if let Some(v) = value {
                return Err(unsupported(option, v, "null"));
            }
        }
        for (option, value) in [
            ("encoder_hid_dim", self.encoder_hid_dim),
            ("addition_time_embed_dim", self.addition_time_embed_dim),
            ("time_cond_proj_dim", self.time_cond_proj_dim),
            (
                "projection_class_embeddings_input_dim",
                self.projection_class_embeddings_input_dim,
            ),
        ] {
            if let Some(v) = value {
                return Err(unsupported(option, v, "null"));
            }
        }
        if let Some(v) = &self.reverse_transformer_layers_per_block {
            return Err(unsupported(
                "reverse_transformer_layers_per_block",
                v,
                "null",
            ));
        }
        if let Some(v) = &self.num_attention_heads {
            return Err(unsupported(
                "num_attention_heads",
                v,
                "null (diffusers refuses it too; the heads per level are `attention_head_dim`)",
            ));
        }
        for (option, value) in [
            ("conv_in_kernel", self.conv_in_kernel),
            ("conv_out_kernel", self.conv_out_kernel),
        ] {
            if value != 3 {
                return Err(unsupported(option, value, "3"));
            }
        }
        if self.num_class_embeds == Some(0) {
            return Err(unsupported("num_class_embeds", 0, "null or at least 1"));
        }
        Ok(())
    }

    fn validate_blocks(&self) -> Result<()> {
        for (i, kind) in self.down_block_types.iter().enumerate() {
            if kind != "DownBlock2D" && kind != "CrossAttnDownBlock2D" {
                return Err(unsupported(
                    &format!("down_block_types[{i}]"),
                    kind,
                    "\"DownBlock2D\", \"CrossAttnDownBlock2D\"",
                ));
            }
        }
        for (i, kind) in self.up_block_types.iter().enumerate() {
            if kind != "UpBlock2D" && kind != "CrossAttnUpBlock2D" {
                return Err(unsupported(
                    &format!("up_block_types[{i}]"),
                    kind,
                    "\"UpBlock2D\", \"CrossAttnUpBlock2D\"",
                ));
            }
        }
        let levels = self.levels();
        check_levels(
            levels,
            self.down_block_types.len(),
            self.up_block_types.len(),
        )?;
        let per_level = [
            (
                "only_cross_attention",
                self.only_cross_attention.len_fits(levels),
            ),
            ("layers_per_block", self.layers_per_block.len_fits(levels)),
            (
                "cross_attention_dim",
                self.cross_attention_dim.len_fits(levels),
            ),
            (
                "transformer_layers_per_block",
                self.transformer_layers_per_block.len_fits(levels),
            ),
            (
                "attention_head_dim",
                self.attention_head_dim.len_fits(levels),
            ),
        ];
        if let Some((option, _)) = per_level.iter().find(|(_, fits)| !fits) {
            return Err(config_error(format!(
                "{option} is a list whose length is not the {levels} levels of block_out_channels"
            )));
        }
        Ok(())
    }

    fn validate_sizes(&self) -> Result<()> {
        check_in_out_channels(self.in_channels, self.out_channels)?;
        let groups = self.groups();
        for (i, &c) in self.block_out_channels.iter().enumerate() {
            check_level_groups(i, c, groups)?;
            if self.layers_per_block.at(i) == 0 {
                return Err(config_error(format!(
                    "layers_per_block[{i}] must be at least 1"
                )));
            }
            if self.transformer_layers_per_block.at(i) == 0 || self.cross_attention_dim.at(i) == 0 {
                return Err(config_error(format!(
                    "transformer_layers_per_block[{i}] and cross_attention_dim[{i}] must be at least 1"
                )));
            }
            // The level's transformers (down, up, and the mid block's at the last level) split its channels into
            // `heads` heads of c / heads channels.
            let heads = self.attention_head_dim.at(i);
            if heads == 0 || heads > c {
                return Err(config_error(format!(
                    "attention_head_dim (the number of heads, in diffusers' naming) = {heads} at a level of {c} \
                     channels (block_out_channels[{i}]) leaves heads without a channel: give 1 to {c}"
                )));
            }
            if self.use_linear_projection && !c.is_multiple_of(heads) {
                return Err(config_error(format!(
                    "with use_linear_projection, the {heads} heads (attention_head_dim) must divide the {c} \
                     channels of block_out_channels[{i}] (diffusers cannot build it either)"
                )));
            }
        }
        if self.time_embed_dim() == 0 {
            return Err(config_error("time_embedding_dim must be at least 1"));
        }
        check_norm_eps(self.norm_eps)
    }
}
