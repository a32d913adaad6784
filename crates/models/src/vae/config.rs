//! The autoencoder's `config.json`: diffusers' `AutoencoderKL` arguments under their own names, with diffusers'
//! defaults for the ones a file leaves out. Every key of the file must be one of those arguments (or a `_`-prefixed
//! bookkeeping key such as `_class_name`), and every argument must have a value this implementation builds: anything
//! else is an error naming the key.

use crate::config_json::{config_error, diffusers_config_json};
use crate::error::{Error, Result};
use crate::unet::SampleSize;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The diffusers class this module reproduces.
pub const CLASS_NAME: &str = "AutoencoderKL";

/// Architecture of an [`super::AutoencoderKL`]: the arguments of diffusers' `AutoencoderKL.__init__`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AutoencoderKLConfig {
    /// Channels of the images.
    pub in_channels: usize,
    /// Channels of the decoded images.
    pub out_channels: usize,
    /// Only `"DownEncoderBlock2D"`, one per level.
    pub down_block_types: Vec<String>,
    /// Only `"UpDecoderBlock2D"`, one per level.
    pub up_block_types: Vec<String>,
    /// Width of each level, outermost first; each level but the last halves the image.
    pub block_out_channels: Vec<usize>,
    /// Residual blocks per encoder level (the decoder has one more).
    pub layers_per_block: usize,
    /// Only `"silu"` (or its alias `"swish"`).
    pub act_fn: String,
    /// Channels of the latent.
    pub latent_channels: usize,
    pub norm_num_groups: usize,
    /// Image height and width the autoencoder was trained at (informational; any size the levels can halve).
    pub sample_size: SampleSize,
    /// The latents a diffusion model sees are `(z − shift_factor)·scaling_factor`, chosen so that they have about
    /// unit variance (LDM: 1 / the standard deviation of the training latents).
    pub scaling_factor: f64,
    /// Subtracted from a latent before scaling (`None`: 0, as Stable Diffusion 1 and 2).
    pub shift_factor: Option<f64>,
    /// Only `None` (per-channel latent statistics are not used).
    pub latents_mean: Option<Vec<f64>>,
    /// Only `None`.
    pub latents_std: Option<Vec<f64>>,
    /// diffusers runs the autoencoder in f32 when set; diffuse always computes in f32. Kept for the round trip.
    pub force_upcast: bool,
    /// A 1×1 convolution on the encoder's output (2·latent_channels → 2·latent_channels).
    pub use_quant_conv: bool,
    /// A 1×1 convolution on the latent before the decoder.
    pub use_post_quant_conv: bool,
    /// Self-attention in the encoder's and the decoder's mid blocks.
    pub mid_block_add_attention: bool,
}

impl Default for AutoencoderKLConfig {
    /// diffusers' `AutoencoderKL.__init__` defaults.
    fn default() -> Self {
        AutoencoderKLConfig {
            in_channels: 3,
            out_channels: 3,
            down_block_types: vec!["DownEncoderBlock2D".into()],
            up_block_types: vec!["UpDecoderBlock2D".into()],
            block_out_channels: vec![64],
            layers_per_block: 1,
            act_fn: "silu".into(),
            latent_channels: 4,
            norm_num_groups: 32,
            sample_size: SampleSize::Square(32),
            scaling_factor: 0.18215,
            shift_factor: None,
            latents_mean: None,
            latents_std: None,
            force_upcast: true,
            use_quant_conv: true,
            use_post_quant_conv: true,
            mid_block_add_attention: true,
        }
    }
}

/// Every argument of diffusers' `AutoencoderKL.__init__` (0.42.1), the keys a `config.json` may hold.
const KNOWN_KEYS: [&str; 18] = [
    "in_channels",
    "out_channels",
    "down_block_types",
    "up_block_types",
    "block_out_channels",
    "layers_per_block",
    "act_fn",
    "latent_channels",
    "norm_num_groups",
    "sample_size",
    "scaling_factor",
    "shift_factor",
    "latents_mean",
    "latents_std",
    "force_upcast",
    "use_quant_conv",
    "use_post_quant_conv",
    "mid_block_add_attention",
];

/// The names [`AutoencoderKLConfig::named`] knows.
pub const NAMED_CONFIGS: [&str; 1] = ["fashion-vae"];

fn unsupported(option: &str, value: impl std::fmt::Debug, supported: &str) -> Error {
    config_error(format!(
        "{option} = {value:?} is not supported by diffuse's AutoencoderKL; supported: {supported}"
    ))
}

impl AutoencoderKLConfig {
    /// A built-in architecture:
    ///
    /// - `fashion-vae`: 28×28 grey images (Fashion-MNIST) to a 4×7×7 latent: three levels of (32, 64, 64) channels
    ///   (28 → 14 → 7), one residual block per encoder level (two per decoder level), attention in the mid blocks,
    ///   8 normalisation groups. Its `scaling_factor` is 1 until training measures it.
    pub fn named(name: &str) -> Result<AutoencoderKLConfig> {
        match name {
            "fashion-vae" => Ok(AutoencoderKLConfig {
                in_channels: 1,
                out_channels: 1,
                down_block_types: vec!["DownEncoderBlock2D".into(); 3],
                up_block_types: vec!["UpDecoderBlock2D".into(); 3],
                block_out_channels: vec![32, 64, 64],
                layers_per_block: 1,
                latent_channels: 4,
                norm_num_groups: 8,
                sample_size: SampleSize::Square(28),
                scaling_factor: 1.0,
                ..AutoencoderKLConfig::default()
            }),
            other => Err(config_error(format!(
                "unknown autoencoder config '{other}'; known: {}",
                NAMED_CONFIGS.join(", ")
            ))),
        }
    }

    /// Parses a diffusers `config.json` and checks every key and option (see [`AutoencoderKLConfig::validate`]).
    pub fn from_json_str(s: &str) -> Result<AutoencoderKLConfig> {
        let value: Value =
            serde_json::from_str(s).map_err(|e| config_error(format!("not valid JSON: {e}")))?;
        let Value::Object(map) = &value else {
            return Err(config_error("is not a JSON object"));
        };
        if let Some(class) = map.get("_class_name").and_then(Value::as_str) {
            if class != CLASS_NAME {
                return Err(unsupported("_class_name", class, "\"AutoencoderKL\""));
            }
        }
        let mut unknown: Vec<&str> = map
            .keys()
            .map(String::as_str)
            .filter(|k| !k.starts_with('_') && !KNOWN_KEYS.contains(k))
            .collect();
        if !unknown.is_empty() {
            unknown.sort_unstable();
            return Err(config_error(format!(
                "{} not an argument of diffusers' AutoencoderKL: {unknown:?} (known: {})",
                if unknown.len() == 1 { "is" } else { "are" },
                KNOWN_KEYS.join(", ")
            )));
        }
        let config: AutoencoderKLConfig = serde_json::from_value(value)
            .map_err(|e| config_error(format!("unexpected value: {e}")))?;
        config.validate()?;
        Ok(config)
    }

    /// A `config.json` diffusers' `AutoencoderKL.from_pretrained` reads.
    pub fn to_json_string(&self) -> String {
        let value = serde_json::to_value(self).expect("a config always serialises");
        diffusers_config_json(value, CLASS_NAME)
    }

    /// How many times the encoder halves the image: `2^(levels − 1)`.
    pub fn downsampling_factor(&self) -> usize {
        1 << (self.block_out_channels.len().saturating_sub(1))
    }

    /// The (height, width) of the latent of an image of `height × width`: each downsampling (3×3, stride 2, after
    /// one zero row and column at the bottom and right) maps `n` to `⌊(n − 2)/2⌋ + 1`.
    pub fn latent_size(&self, height: usize, width: usize) -> (usize, usize) {
        let halve = |n: usize| (n.saturating_sub(2)) / 2 + 1;
        let levels = self.block_out_channels.len().saturating_sub(1);
        (0..levels).fold((height, width), |(h, w), _| (halve(h), halve(w)))
    }

    /// The (height, width) the decoder makes of a latent of `height × width`: each level doubles it.
    pub fn image_size(&self, height: usize, width: usize) -> (usize, usize) {
        let f = self.downsampling_factor();
        (height * f, width * f)
    }

    /// Checks that every option has a value this implementation builds, and that the numbers fit together.
    pub fn validate(&self) -> Result<()> {
        let levels = self.block_out_channels.len();
        if levels == 0 {
            return Err(config_error("block_out_channels is empty"));
        }
        for (key, kinds, want) in [
            (
                "down_block_types",
                &self.down_block_types,
                "DownEncoderBlock2D",
            ),
            ("up_block_types", &self.up_block_types, "UpDecoderBlock2D"),
        ] {
            if let Some((i, kind)) = kinds.iter().enumerate().find(|(_, k)| *k != want) {
                return Err(unsupported(
                    &format!("{key}[{i}]"),
                    kind,
                    &format!("\"{want}\""),
                ));
            }
            if kinds.len() != levels {
                return Err(config_error(format!(
                    "{key} has {} entries but block_out_channels has {levels}; each level needs one",
                    kinds.len()
                )));
            }
        }
        if self.act_fn != "silu" && self.act_fn != "swish" {
            return Err(unsupported("act_fn", &self.act_fn, "\"silu\""));
        }
        for (key, value) in [
            ("latents_mean", &self.latents_mean),
            ("latents_std", &self.latents_std),
        ] {
            if let Some(v) = value {
                return Err(unsupported(key, v, "null"));
            }
        }
        for (key, value) in [
            ("in_channels", self.in_channels),
            ("out_channels", self.out_channels),
            ("latent_channels", self.latent_channels),
            ("layers_per_block", self.layers_per_block),
        ] {
            if value == 0 {
                return Err(config_error(format!("{key} must be at least 1, got 0")));
            }
        }
        let groups = self.norm_num_groups;
        for (i, &c) in self.block_out_channels.iter().enumerate() {
            if groups == 0 || c == 0 || !c.is_multiple_of(groups) {
                return Err(config_error(format!(
                    "block_out_channels[{i}] = {c} is not a positive multiple of norm_num_groups = {groups}"
                )));
            }
        }
        if !(self.scaling_factor.is_finite() && self.scaling_factor > 0.0) {
            return Err(config_error(format!(
                "scaling_factor = {} must be positive and finite",
                self.scaling_factor
            )));
        }
        if let Some(shift) = self.shift_factor.filter(|s| !s.is_finite()) {
            return Err(config_error(format!(
                "shift_factor = {shift} must be finite"
            )));
        }
        Ok(())
    }
}
