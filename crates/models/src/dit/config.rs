//! The DiT's `config.json`: diffusers' `DiTTransformer2DModel` arguments under their own names, with diffusers'
//! defaults for the ones a file leaves out, a check that every option is one this implementation builds, and the
//! named architectures of `diffuse train --config dit-…`.

use crate::config_json::{config_error, diffusers_config_json};
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Architecture of a [`super::DiTTransformer2DModel`]: the arguments of diffusers' `DiTTransformer2DModel.__init__`.
///
/// Fields a file omits take diffusers' defaults; bookkeeping fields (`_class_name`, `_diffusers_version`,
/// `_name_or_path`, `_use_default_values`) are ignored; any other unknown key is an error naming it.
/// [`DiTConfig::validate`] rejects every value of an option that is not implemented.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DiTConfig {
    pub num_attention_heads: usize,
    /// Channels per head; the width of the network is `num_attention_heads · attention_head_dim`.
    pub attention_head_dim: usize,
    pub in_channels: usize,
    /// `None` means `in_channels`; `2 · in_channels` adds a learned variance (the second half of the channels).
    pub out_channels: Option<usize>,
    /// Transformer blocks.
    pub num_layers: usize,
    /// Only 0.
    pub dropout: f64,
    /// Unused by the DiT (kept for the round trip).
    pub norm_num_groups: usize,
    /// Biases on the query, key and value projections.
    pub attention_bias: bool,
    /// Height and width the model is trained at; sets the scale of the position embedding at other sizes.
    pub sample_size: usize,
    pub patch_size: usize,
    /// `"gelu-approximate"` (the tanh GELU) or `"gelu"` (exact).
    pub activation_fn: String,
    /// Number of classes; the label table has one more row, the null class `num_embeds_ada_norm`.
    pub num_embeds_ada_norm: Option<usize>,
    /// Computes attention in f32 under f16 in diffusers; diffuse always does (kept for the round trip).
    pub upcast_attention: bool,
    /// Only `"ada_norm_zero"`.
    pub norm_type: String,
    /// Only false (the modulation takes the place of the affine).
    pub norm_elementwise_affine: bool,
    /// ε of the layer norm before the feed-forward (the one before attention and the final one use 1e-6).
    pub norm_eps: f64,
}

impl Default for DiTConfig {
    /// diffusers' `DiTTransformer2DModel.__init__` defaults (DiT-XL/2 on 32 × 32 × 4 latents).
    fn default() -> Self {
        DiTConfig {
            num_attention_heads: 16,
            attention_head_dim: 72,
            in_channels: 4,
            out_channels: None,
            num_layers: 28,
            dropout: 0.0,
            norm_num_groups: 32,
            attention_bias: true,
            sample_size: 32,
            patch_size: 2,
            activation_fn: "gelu-approximate".into(),
            num_embeds_ada_norm: Some(1000),
            upcast_attention: false,
            norm_type: "ada_norm_zero".into(),
            norm_elementwise_affine: false,
            norm_eps: 1e-5,
        }
    }
}

/// The names [`DiTConfig::named`] knows: `dit-{s,b}-{2,4}` on 28 × 28 pixels, `dit-latent-{s,b}` on the 4 × 7 × 7
/// latents of the VAE (patch 1), and the wider `dit-m-2`.
pub const NAMED_CONFIGS: [&str; 7] = [
    "dit-s-2",
    "dit-s-4",
    "dit-m-2",
    "dit-b-2",
    "dit-b-4",
    "dit-latent-s",
    "dit-latent-b",
];

/// Keys diffusers writes that are not arguments.
const BOOKKEEPING_KEYS: [&str; 4] = [
    "_class_name",
    "_diffusers_version",
    "_name_or_path",
    "_use_default_values",
];

fn unsupported(option: &str, value: impl std::fmt::Debug, supported: &str) -> Error {
    config_error(format!(
        "{option} = {value:?} is not supported; supported: {supported}"
    ))
}

impl DiTConfig {
    /// A DiT of `width` channels in `heads` heads, `depth` blocks and patches of `patch`, over `in_channels` ×
    /// `sample_size`² inputs, class-conditional on `classes` classes, with a learned variance when `learn_sigma`
    /// (the DiT paper's choice). An error when the heads do not divide the width.
    pub fn sized(
        width: usize,
        heads: usize,
        depth: usize,
        patch: usize,
        (in_channels, sample_size): (usize, usize),
        classes: usize,
        learn_sigma: bool,
    ) -> Result<DiTConfig> {
        if heads == 0 || !width.is_multiple_of(heads) {
            return Err(config_error(format!(
                "a width of {width} channels does not split into {heads} attention heads; choose a number of \
                 heads that divides the width"
            )));
        }
        let config = DiTConfig {
            num_attention_heads: heads,
            attention_head_dim: width / heads,
            in_channels,
            out_channels: Some(if learn_sigma { 2 } else { 1 } * in_channels),
            num_layers: depth,
            sample_size,
            patch_size: patch,
            num_embeds_ada_norm: Some(classes),
            ..DiTConfig::default()
        };
        config.validate()?;
        Ok(config)
    }

    /// A built-in architecture, in the DiT paper's naming (S = 384 wide in 6 heads, B = 768 in 12, 12 blocks each,
    /// scaled down here to fit a CPU) with an M in between:
    ///
    /// - `dit-s-2`, `dit-s-4`: 28 × 28 × 1 (Fashion-MNIST), width 192 in 3 heads of 64, 6 blocks, patch 2 (196
    ///   tokens) or 4 (49 tokens);
    /// - `dit-m-2`: the same at width 256 in 4 heads, 8 blocks, patch 2;
    /// - `dit-b-2`, `dit-b-4`: width 384 in 6 heads, 12 blocks, patch 2 or 4;
    /// - `dit-latent-s`, `dit-latent-b`: the 4 × 7 × 7 latents of diffuse's VAE for Fashion-MNIST, patch 1 (49
    ///   tokens), at the widths and depths of `dit-s` and `dit-b`.
    ///
    /// All predict a learned variance beside the noise (the DiT paper's setting) and are conditional on 10 classes
    /// (label 10 is the null class of classifier-free guidance).
    pub fn named(name: &str) -> Result<DiTConfig> {
        let pixels = (1, 28);
        let latents = (4, 7);
        let (width, heads, depth, patch, input) = match name {
            "dit-s-2" => (192, 3, 6, 2, pixels),
            "dit-s-4" => (192, 3, 6, 4, pixels),
            "dit-m-2" => (256, 4, 8, 2, pixels),
            "dit-b-2" => (384, 6, 12, 2, pixels),
            "dit-b-4" => (384, 6, 12, 4, pixels),
            "dit-latent-s" => (192, 3, 6, 1, latents),
            "dit-latent-b" => (384, 6, 12, 1, latents),
            other => {
                return Err(config_error(format!(
                    "unknown model config '{other}'; known: {}",
                    NAMED_CONFIGS.join(", ")
                )))
            }
        };
        DiTConfig::sized(width, heads, depth, patch, input, 10, true)
    }

    /// Parses a diffusers `config.json` and checks every option (see [`DiTConfig::validate`]).
    pub fn from_json_str(s: &str) -> Result<DiTConfig> {
        let value: Value =
            serde_json::from_str(s).map_err(|e| config_error(format!("not valid JSON: {e}")))?;
        let Value::Object(mut map) = value else {
            return Err(config_error("the top level must be a JSON object"));
        };
        if let Some(class) = map.get("_class_name").and_then(Value::as_str) {
            if class != "DiTTransformer2DModel" {
                return Err(unsupported(
                    "_class_name",
                    class,
                    "\"DiTTransformer2DModel\"",
                ));
            }
        }
        for key in BOOKKEEPING_KEYS {
            map.remove(key);
        }
        let known = serde_json::to_value(DiTConfig::default()).expect("a DiTConfig serialises");
        let mut unknown: Vec<&String> = map
            .keys()
            .filter(|k| known.get(k.as_str()).is_none())
            .collect();
        if !unknown.is_empty() {
            unknown.sort();
            return Err(config_error(format!(
                "options DiTTransformer2DModel does not take: {unknown:?}"
            )));
        }
        let config: DiTConfig = serde_json::from_value(Value::Object(map))
            .map_err(|e| config_error(format!("unexpected value: {e}")))?;
        config.validate()?;
        Ok(config)
    }

    /// A `config.json` diffusers' `DiTTransformer2DModel.from_pretrained` reads.
    pub fn to_json_string(&self) -> String {
        let value = serde_json::to_value(self).expect("a DiTConfig always serialises");
        diffusers_config_json(value, "DiTTransformer2DModel")
    }

    /// The width of every token: `num_attention_heads · attention_head_dim`.
    pub fn inner_dim(&self) -> usize {
        self.num_attention_heads * self.attention_head_dim
    }

    /// Channels of the output (`in_channels` when `out_channels` is null).
    pub fn output_channels(&self) -> usize {
        self.out_channels.unwrap_or(self.in_channels)
    }

    /// Whether the network predicts a variance beside its mean: twice the input's channels out.
    pub fn learns_variance(&self) -> bool {
        self.output_channels() == 2 * self.in_channels
    }

    /// Rows of the label table: the classes and the null class.
    pub fn label_table_len(&self) -> usize {
        self.num_embeds_ada_norm.unwrap_or(0) + 1
    }

    /// Checks that every option has a value this implementation builds, and that the numbers fit together.
    pub fn validate(&self) -> Result<()> {
        if self.norm_type != "ada_norm_zero" {
            return Err(unsupported(
                "norm_type",
                &self.norm_type,
                "\"ada_norm_zero\"",
            ));
        }
        if self.norm_elementwise_affine {
            return Err(unsupported(
                "norm_elementwise_affine",
                true,
                "false (the adaptive modulation replaces the affine)",
            ));
        }
        if self.activation_fn != "gelu-approximate" && self.activation_fn != "gelu" {
            return Err(unsupported(
                "activation_fn",
                &self.activation_fn,
                "\"gelu-approximate\", \"gelu\"",
            ));
        }
        if self.dropout != 0.0 {
            return Err(unsupported("dropout", self.dropout, "0"));
        }
        match self.num_embeds_ada_norm {
            None | Some(0) => {
                return Err(unsupported(
                    "num_embeds_ada_norm",
                    self.num_embeds_ada_norm,
                    "at least 1 (ada_norm_zero conditions on class labels)",
                ))
            }
            Some(_) => {}
        }
        for (option, value) in [
            ("num_attention_heads", self.num_attention_heads),
            ("attention_head_dim", self.attention_head_dim),
            ("in_channels", self.in_channels),
            ("num_layers", self.num_layers),
            ("patch_size", self.patch_size),
            ("sample_size", self.sample_size),
        ] {
            if value == 0 {
                return Err(config_error(format!("{option} must be at least 1")));
            }
        }
        if self.out_channels == Some(0) {
            return Err(config_error("out_channels must be null or at least 1"));
        }
        if !self.inner_dim().is_multiple_of(4) {
            return Err(config_error(format!(
                "the width num_attention_heads × attention_head_dim = {} × {} = {} must be a multiple of 4 (the 2-D \
                 position embedding gives each axis half the width, as sines and cosines)",
                self.num_attention_heads,
                self.attention_head_dim,
                self.inner_dim()
            )));
        }
        if !self.sample_size.is_multiple_of(self.patch_size) {
            return Err(config_error(format!(
                "patch_size = {} does not divide sample_size = {}: choose a patch size that divides the image",
                self.patch_size, self.sample_size
            )));
        }
        if !(self.norm_eps > 0.0 && self.norm_eps.is_finite()) {
            return Err(config_error(format!(
                "norm_eps = {} must be positive",
                self.norm_eps
            )));
        }
        Ok(())
    }
}
