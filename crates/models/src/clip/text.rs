//! transformers' `CLIPTextModel`: the text encoder of CLIP and of Stable Diffusion.
//!
//! ```text
//! ids (N, L) ─ token_embedding[ids] + position_embedding[0..L]          (N, L, D)
//!            ─ encoder: pre-LayerNorm layers with a causal mask           (N, L, D)
//!            ─ final_layer_norm                                          last_hidden_state (N, L, D)
//!            ─ the row at each sequence's end token                      pooled (N, D)
//! ```
//!
//! The end token's position follows transformers: with `eos_token_id = 2` (the value of configs written before
//! transformers fixed it) the position of the largest id, which is `<|endoftext|>` in OpenAI's vocabulary; otherwise
//! the first position holding `eos_token_id` (position 0 when there is none). Every position attends only to itself and
//! earlier ones, so padding after the end token changes neither output at or before it; like diffusers' pipelines, no
//! padding mask is taken.
//!
//! Parameter names are transformers' (`text_model.embeddings.token_embedding.weight`, ...), so a `text_encoder/`
//! folder (`config.json` + `model.safetensors`) loads and saves in both directions.

use super::config::ClipTextConfig;
use super::encoder::{ClipEncoder, TowerShape};
use super::init::embedding;
use crate::error::{Error, Result};
use crate::folder::{
    file_error, load_weights_except, load_weights_mapped, read_config, save_folder_prefixed,
    TRANSFORMERS_WEIGHTS_FILE,
};
use diffuse_autograd::Var;
use diffuse_nn::{Embedding, LayerNorm, Module, ParamStore, Path};
use diffuse_tensor::{Device, Tensor};

/// Where the text encoder's parameters live, in a `text_encoder/` folder and in a `CLIPModel`.
pub const TEXT_MODEL_PREFIX: &str = "text_model.";

/// A buffer older transformers versions saved with the weights; it holds `0..max_position_embeddings` and is skipped.
pub const POSITION_IDS_BUFFER: &str = "text_model.embeddings.position_ids";

/// The two outputs of the text encoder.
pub struct ClipTextOutput {
    /// (N, L, D): the U-Net's cross-attention context.
    pub last_hidden_state: Var,
    /// (N, D): the end token's row, which CLIP projects into the joint embedding space.
    pub pooled: Var,
}

/// `text_model`: embeddings, encoder, final LayerNorm.
pub struct ClipTextModel {
    pub token_embedding: Embedding,
    pub position_embedding: Embedding,
    pub encoder: ClipEncoder,
    pub final_layer_norm: LayerNorm,
    config: ClipTextConfig,
}

impl ClipTextModel {
    /// Builds the encoder in `store` under `text_model.`, initialised as transformers initialises it (normal
    /// embeddings of std 0.02, scaled normal projections, zero biases).
    pub fn new(config: ClipTextConfig, store: &ParamStore) -> Result<ClipTextModel> {
        ClipTextModel::at(&store.root().sub("text_model"), config)
    }

    pub(crate) fn at(path: &Path, config: ClipTextConfig) -> Result<ClipTextModel> {
        config.validate()?;
        let shape = TowerShape::of_text(&config);
        let std = (config.initializer_range * config.initializer_factor) as f32;
        let embeddings = path.sub("embeddings");
        let model = ClipTextModel {
            token_embedding: embedding(
                &embeddings.sub("token_embedding"),
                config.vocab_size,
                config.hidden_size,
                std,
            )?,
            position_embedding: embedding(
                &embeddings.sub("position_embedding"),
                config.max_position_embeddings,
                config.hidden_size,
                std,
            )?,
            encoder: ClipEncoder::new(
                &path.sub("encoder"),
                &shape,
                config.initializer_factor as f32,
            )?,
            final_layer_norm: LayerNorm::new(
                &path.sub("final_layer_norm"),
                config.hidden_size,
                shape.eps,
            )?,
            config,
        };
        Ok(model)
    }

    pub fn config(&self) -> &ClipTextConfig {
        &self.config
    }

    pub fn device(&self) -> Device {
        self.token_embedding.weight.tensor().device()
    }

    /// Encodes `ids`, `n` sequences of `ids.len() / n` tokens each (row-major, as [`super::TokenBatch`] holds them).
    pub fn forward(&self, ids: &[u32], n: usize) -> Result<ClipTextOutput> {
        let c = &self.config;
        let err = |m: String| Error::model("CLIPTextModel", m);
        if n == 0 || ids.is_empty() || !ids.len().is_multiple_of(n) {
            return Err(err(format!(
                "{} token ids do not make {n} sequences of at least one token",
                ids.len()
            )));
        }
        let len = ids.len() / n;
        if len > c.max_position_embeddings {
            return Err(err(format!(
                "sequences of {len} tokens are longer than max_position_embeddings = {}; tokenize to that context length",
                c.max_position_embeddings
            )));
        }
        if let Some(&bad) = ids.iter().find(|&&id| id as usize >= c.vocab_size) {
            return Err(err(format!(
                "token id {bad} is outside the vocabulary of {} tokens; the tokenizer does not fit this text encoder",
                c.vocab_size
            )));
        }
        let rows: Vec<usize> = ids.iter().map(|&id| id as usize).collect();
        let tokens = self
            .token_embedding
            .forward(&rows)?
            .reshape(&[n, len, c.hidden_size])?;
        let positions: Vec<usize> = (0..len).collect();
        let h = tokens.add(&self.position_embedding.forward(&positions)?)?;
        let h = self.encoder.forward(&h, true)?;
        let last_hidden_state = self.final_layer_norm.forward(&h)?;
        let eos = c.eos_token_id.expect("validated: eos_token_id is set");
        let pooled_rows: Vec<usize> = ids
            .chunks_exact(len)
            .enumerate()
            .map(|(row, seq)| row * len + end_position(seq, eos))
            .collect();
        let pooled = last_hidden_state
            .reshape(&[n * len, c.hidden_size])?
            .index_select(0, &pooled_rows)?;
        Ok(ClipTextOutput {
            last_hidden_state,
            pooled,
        })
    }

    /// [`Self::forward`] without the tape: `last_hidden_state` (N, L, D) as a tensor, for conditioning a frozen U-Net.
    pub fn encode(&self, ids: &[u32], n: usize) -> Result<Tensor> {
        diffuse_autograd::no_grad(|| Ok(self.forward(ids, n)?.last_hidden_state.tensor().clone()))
    }

    /// Loads a transformers `text_encoder/` folder onto `device`, in either layout of the weights: transformers 4.x's
    /// (and diffusers' pipelines'), every name under `text_model.`, or transformers 5's, the same names without it.
    pub fn load(dir: &std::path::Path, device: Device) -> Result<(ClipTextModel, ParamStore)> {
        let config = read_config(dir, ClipTextConfig::from_json_str)?;
        let store = ParamStore::new(0, device);
        let model = ClipTextModel::new(config, &store)?;
        let weights = dir.join(TRANSFORMERS_WEIGHTS_FILE);
        let bytes = std::fs::read(&weights).map_err(|e| file_error(&weights, e))?;
        let unprefixed = safetensors::SafeTensors::deserialize(&bytes)
            .map_err(|e| file_error(&weights, e))?
            .names()
            .iter()
            .any(|name| name.starts_with("embeddings."));
        if unprefixed {
            let strip = |name: &str| {
                name.strip_prefix(TEXT_MODEL_PREFIX)
                    .unwrap_or(name)
                    .to_string()
            };
            load_weights_mapped(&store, &weights, &["embeddings.position_ids"], &strip)?;
        } else {
            load_weights_except(&store, &weights, &[POSITION_IDS_BUFFER])?;
        }
        Ok((model, store))
    }

    /// Writes `config.json` and `model.safetensors` (the `text_model.` parameters of `store`, under those names, the
    /// layout that transformers 4.x and 5 and diffusers all load) into `dir`.
    pub fn save(&self, store: &ParamStore, dir: &std::path::Path) -> Result<()> {
        save_folder_prefixed(
            dir,
            &self.config.to_json_string(),
            store,
            TRANSFORMERS_WEIGHTS_FILE,
            TEXT_MODEL_PREFIX,
        )
    }
}

/// Where transformers reads the pooled output of one sequence (see the module documentation).
pub fn end_position(seq: &[u32], eos_token_id: u32) -> usize {
    // torch.argmax returns the first of equal maxima.
    let first_max = |values: &mut dyn Iterator<Item = u32>| {
        let mut best = (0, 0u32);
        for (i, v) in values.enumerate() {
            if i == 0 || v > best.1 {
                best = (i, v);
            }
        }
        best.0
    };
    if eos_token_id == 2 {
        first_max(&mut seq.iter().copied())
    } else {
        first_max(&mut seq.iter().map(|&id| u32::from(id == eos_token_id)))
    }
}
