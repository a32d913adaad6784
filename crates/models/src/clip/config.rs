//! The `config.json` of transformers' `CLIPTextModel` (`CLIPTextConfig`), of the vision tower (`CLIPVisionConfig`)
//! and of `CLIPModel` (`CLIPConfig`, which nests the two), under transformers' names and defaults.
//!
//! Reading is strict: a key that changes the architecture and that this implementation does not know is refused by
//! name. Keys transformers writes for its own bookkeeping or for text generation (`architectures`, `dtype`,
//! `transformers_version`, `num_beams`, ...) never change what the encoder computes and are skipped.

use crate::config_json::config_error;
use crate::error::Result;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The transformers version whose format is written.
pub const TRANSFORMERS_VERSION: &str = "5.25.0";

/// Keys of `PretrainedConfig` that never change the encoder's computation: bookkeeping and generation settings (the
/// latter written by transformers 4.x into nested configs).
const IGNORED_KEYS: [&str; 53] = [
    "_name_or_path",
    "architectures",
    "model_type",
    "transformers_version",
    "dtype",
    "torch_dtype",
    "output_hidden_states",
    "output_attentions",
    "return_dict",
    "chunk_size_feed_forward",
    "is_encoder_decoder",
    "id2label",
    "label2id",
    "problem_type",
    "use_cache",
    "tie_word_embeddings",
    "pruned_heads",
    "torchscript",
    "use_bfloat16",
    "tf_legacy_loss",
    "add_cross_attention",
    "bad_words_ids",
    "begin_suppress_tokens",
    "cross_attention_hidden_size",
    "decoder_start_token_id",
    "diversity_penalty",
    "do_sample",
    "early_stopping",
    "encoder_no_repeat_ngram_size",
    "exponential_decay_length_penalty",
    "finetuning_task",
    "forced_bos_token_id",
    "forced_eos_token_id",
    "is_decoder",
    "length_penalty",
    "max_length",
    "min_length",
    "no_repeat_ngram_size",
    "num_beam_groups",
    "num_beams",
    "num_return_sequences",
    "output_scores",
    "prefix",
    "remove_invalid_values",
    "repetition_penalty",
    "return_dict_in_generate",
    "sep_token_id",
    "suppress_tokens",
    "task_specific_params",
    "temperature",
    "tie_encoder_decoder",
    "top_k",
    "top_p",
];

/// Keys transformers 4.x wrote that the model reads nowhere (`dropout` of CLIP's first configs, `typical_p`).
const UNUSED_KEYS: [&str; 3] = ["dropout", "typical_p", "_attn_implementation_autoset"];

/// `value` as an object without the ignored keys.
fn strip(value: Value, what: &str) -> Result<Map<String, Value>> {
    let Value::Object(mut map) = value else {
        return Err(config_error(format!("{what} must be a JSON object")));
    };
    for key in IGNORED_KEYS.iter().chain(&UNUSED_KEYS) {
        map.remove(*key);
    }
    Ok(map)
}

fn parse<T: for<'de> Deserialize<'de>>(map: Map<String, Value>, what: &str) -> Result<T> {
    serde_json::from_value(Value::Object(map)).map_err(|e| {
        config_error(format!(
            "{what}: {e} (a key this implementation does not build is refused)"
        ))
    })
}

/// The activations transformers' `ACT2FN` names that CLIP configs use.
fn check_activation(act: &str) -> Result<()> {
    match act {
        "quick_gelu" | "gelu" | "gelu_new" | "gelu_pytorch_tanh" => Ok(()),
        other => Err(config_error(format!(
            "hidden_act = {other:?} is not supported; supported: \"quick_gelu\", \"gelu\", \"gelu_new\", \"gelu_pytorch_tanh\""
        ))),
    }
}

/// What the transformer layers of both towers share.
fn check_tower(
    what: &str,
    hidden: usize,
    heads: usize,
    layers: usize,
    inner: usize,
    dropout: f64,
) -> Result<()> {
    if hidden == 0 || heads == 0 || inner == 0 || layers == 0 {
        return Err(config_error(format!(
            "{what}: hidden_size, num_attention_heads, num_hidden_layers and intermediate_size must be at least 1"
        )));
    }
    if !hidden.is_multiple_of(heads) {
        return Err(config_error(format!(
            "{what}: hidden_size = {hidden} does not split into num_attention_heads = {heads} heads; choose a number of heads that divides it"
        )));
    }
    if dropout != 0.0 {
        return Err(config_error(format!(
            "{what}: attention_dropout = {dropout} is not supported; supported: 0"
        )));
    }
    Ok(())
}

/// transformers' `CLIPTextConfig`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClipTextConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub projection_dim: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub max_position_embeddings: usize,
    pub hidden_act: String,
    pub layer_norm_eps: f64,
    pub attention_dropout: f64,
    pub initializer_range: f64,
    pub initializer_factor: f64,
    pub pad_token_id: Option<u32>,
    pub bos_token_id: Option<u32>,
    pub eos_token_id: Option<u32>,
}

impl Default for ClipTextConfig {
    fn default() -> Self {
        ClipTextConfig {
            vocab_size: 49408,
            hidden_size: 512,
            intermediate_size: 2048,
            projection_dim: 512,
            num_hidden_layers: 12,
            num_attention_heads: 8,
            max_position_embeddings: 77,
            hidden_act: "quick_gelu".into(),
            layer_norm_eps: 1e-5,
            attention_dropout: 0.0,
            initializer_range: 0.02,
            initializer_factor: 1.0,
            pad_token_id: Some(1),
            bos_token_id: Some(49406),
            eos_token_id: Some(49407),
        }
    }
}

impl ClipTextConfig {
    pub fn from_json_str(s: &str) -> Result<ClipTextConfig> {
        let value: Value =
            serde_json::from_str(s).map_err(|e| config_error(format!("not valid JSON: {e}")))?;
        ClipTextConfig::from_value(value)
    }

    fn from_value(value: Value) -> Result<ClipTextConfig> {
        let config: ClipTextConfig = parse(strip(value, "the text config")?, "the text config")?;
        config.validate()?;
        Ok(config)
    }

    /// The config as transformers writes it for a `CLIPTextModel` folder.
    pub fn to_json_string(&self) -> String {
        let mut value = self.to_value();
        value["architectures"] = serde_json::json!(["CLIPTextModel"]);
        value["dtype"] = "float32".into();
        value["transformers_version"] = TRANSFORMERS_VERSION.into();
        serde_json::to_string_pretty(&value).expect("a JSON value always serialises")
    }

    fn to_value(&self) -> Value {
        let mut value = serde_json::to_value(self).expect("a ClipTextConfig always serialises");
        value["model_type"] = "clip_text_model".into();
        value
    }

    pub fn validate(&self) -> Result<()> {
        check_tower(
            "the text config",
            self.hidden_size,
            self.num_attention_heads,
            self.num_hidden_layers,
            self.intermediate_size,
            self.attention_dropout,
        )?;
        check_activation(&self.hidden_act)?;
        if self.vocab_size == 0 || self.max_position_embeddings == 0 {
            return Err(config_error(
                "vocab_size and max_position_embeddings must be at least 1",
            ));
        }
        if self.eos_token_id.is_none() {
            return Err(config_error(
                "eos_token_id is null; the pooled output is read at the end token, so set it to the tokenizer's end token id",
            ));
        }
        Ok(())
    }

    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }
}

/// transformers' `CLIPVisionConfig`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClipVisionConfig {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub projection_dim: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_channels: usize,
    pub image_size: usize,
    pub patch_size: usize,
    pub hidden_act: String,
    pub layer_norm_eps: f64,
    pub attention_dropout: f64,
    pub initializer_range: f64,
    pub initializer_factor: f64,
}

impl Default for ClipVisionConfig {
    fn default() -> Self {
        ClipVisionConfig {
            hidden_size: 768,
            intermediate_size: 3072,
            projection_dim: 512,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            num_channels: 3,
            image_size: 224,
            patch_size: 32,
            hidden_act: "quick_gelu".into(),
            layer_norm_eps: 1e-5,
            attention_dropout: 0.0,
            initializer_range: 0.02,
            initializer_factor: 1.0,
        }
    }
}

impl ClipVisionConfig {
    fn from_value(value: Value) -> Result<ClipVisionConfig> {
        let config: ClipVisionConfig =
            parse(strip(value, "the vision config")?, "the vision config")?;
        config.validate()?;
        Ok(config)
    }

    fn to_value(&self) -> Value {
        let mut value = serde_json::to_value(self).expect("a ClipVisionConfig always serialises");
        value["model_type"] = "clip_vision_model".into();
        value
    }

    pub fn validate(&self) -> Result<()> {
        check_tower(
            "the vision config",
            self.hidden_size,
            self.num_attention_heads,
            self.num_hidden_layers,
            self.intermediate_size,
            self.attention_dropout,
        )?;
        check_activation(&self.hidden_act)?;
        if self.num_channels == 0
            || self.patch_size == 0
            || !self.image_size.is_multiple_of(self.patch_size)
            || self.image_size == 0
        {
            return Err(config_error(format!(
                "the vision config: patch_size = {} must divide image_size = {} (both at least 1), with at least one channel",
                self.patch_size, self.image_size
            )));
        }
        Ok(())
    }

    /// Patches per side.
    pub fn grid(&self) -> usize {
        self.image_size / self.patch_size
    }

    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }
}

/// transformers' `CLIPConfig`: the two towers, the shared embedding width and the initial temperature.
#[derive(Clone, Debug, PartialEq)]
pub struct ClipConfig {
    pub text_config: ClipTextConfig,
    pub vision_config: ClipVisionConfig,
    pub projection_dim: usize,
    pub logit_scale_init_value: f64,
    pub initializer_factor: f64,
}

impl ClipConfig {
    pub fn from_json_str(s: &str) -> Result<ClipConfig> {
        let value: Value =
            serde_json::from_str(s).map_err(|e| config_error(format!("not valid JSON: {e}")))?;
        let mut map = strip(value, "the config")?;
        let mut take = |key: &str| map.remove(key);
        let text_config =
            ClipTextConfig::from_value(take("text_config").unwrap_or(Value::Object(Map::new())))?;
        let vision_config = ClipVisionConfig::from_value(
            take("vision_config").unwrap_or(Value::Object(Map::new())),
        )?;
        let number = |value: Option<Value>, key: &str, default: f64| -> Result<f64> {
            value.map_or(Ok(default), |v| {
                v.as_f64()
                    .ok_or_else(|| config_error(format!("{key} = {v} is not a number")))
            })
        };
        let projection_dim = number(take("projection_dim"), "projection_dim", 512.0)?;
        let logit_scale_init_value = number(
            take("logit_scale_init_value"),
            "logit_scale_init_value",
            2.6592,
        )?;
        let initializer_factor = number(take("initializer_factor"), "initializer_factor", 1.0)?;
        if let Some(key) = map.keys().next() {
            return Err(config_error(format!(
                "unknown key {key:?}; a CLIPModel config has text_config, vision_config, projection_dim, logit_scale_init_value, initializer_factor"
            )));
        }
        if projection_dim < 1.0 || projection_dim.fract() != 0.0 {
            return Err(config_error(format!(
                "projection_dim = {projection_dim} is not a positive integer"
            )));
        }
        Ok(ClipConfig {
            text_config,
            vision_config,
            projection_dim: projection_dim as usize,
            logit_scale_init_value,
            initializer_factor,
        })
    }

    pub fn to_json_string(&self) -> String {
        let value = serde_json::json!({
            "architectures": ["CLIPModel"],
            "dtype": "float32",
            "initializer_factor": self.initializer_factor,
            "logit_scale_init_value": self.logit_scale_init_value,
            "model_type": "clip",
            "projection_dim": self.projection_dim,
            "text_config": self.text_config.to_value(),
            "transformers_version": TRANSFORMERS_VERSION,
            "vision_config": self.vision_config.to_value(),
        });
        serde_json::to_string_pretty(&value).expect("a JSON value always serialises")
    }
}
