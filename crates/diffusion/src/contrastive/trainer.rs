//! [`ClipTrainer`]: one optimiser step of the symmetric contrastive loss on a batch of images and their captions.
//!
//! ```text
//! step s:  indices = batch (s mod B) of epoch ⌊s / B⌋'s permutation under the seed     (B = ⌊images / batch⌋)
//!          captions = each image's caption, its template drawn from (seed, s, position)
//!          loss = contrastive_loss(exp(logit_scale) · t·vᵀ)                             (crate diffuse-models)
//!          clip the gradient norm to 1, AdamW at the schedule's rate,
//!          logit_scale ≤ ln 100 (CLIP's cap on the inverse temperature)
//! ```
//!
//! Data parallel (`mpirun -np N diffuse clip train`, docs/distributed.md): rank `r` encodes its [`Shard`] of the
//! batch (the same images and captions, caption templates drawn at their positions in the global batch), the unit
//! embeddings of every rank are gathered in rank order ([`all_gather_rows`]), and every rank computes the loss of the
//! whole batch from them and back-propagates `loss / N`: the all-gather's backward sums the embeddings' gradients
//! over the ranks, and the parameter gradients are summed too, before clipping and AdamW, so every rank takes the
//! single process's step.

use super::captions::ImageCaptions;
use crate::data::captions::TRAIN_TEMPLATES;
use crate::data::{Dataset, EpochBatches};
use crate::error::{Error, Result};
use crate::train::checkpoint::{latest_checkpoint, write_checkpoint_folder};
use crate::train::collective::{all_reduce_gradients, BUCKET_ELEMENTS};
use crate::train::{all_gather_rows, Collective, Shard, SingleProcess};
use diffuse_autograd::Var;
use diffuse_models::clip::{
    contrastive_loss, ClipConfig, ClipModel, ClipTextConfig, ClipTokenizer, ClipVisionConfig,
};
use diffuse_nn::{clip_grad_norm, AdamW, LrSchedule, ParamStore};
use diffuse_tensor::{AdamWConfig, Device, Tensor};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::rc::Rc;

/// The text tower's folder in a checkpoint.
pub const TEXT_ENCODER_DIR: &str = "text_encoder";
/// The tokenizer's folder in a checkpoint.
pub const TOKENIZER_DIR: &str = "tokenizer";
/// The trainer's own state in a checkpoint.
pub const STATE_FILE: &str = "clip_trainer_state.json";
const OPTIMIZER_FILE: &str = "optimizer.safetensors";
/// ln 100: CLIP caps the inverse temperature at 100.
const MAX_LOGIT_SCALE: f32 = 4.605_170_2;

/// The sizes of both towers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClipArchitecture {
    pub width: usize,
    pub layers: usize,
    pub heads: usize,
    pub mlp: usize,
    pub patch_size: usize,
    pub projection_dim: usize,
    /// Tokens per caption, start and end included: the tokenizer's `model_max_length` and the text tower's positions.
    pub context_length: usize,
    /// The most entries of the BPE vocabulary trained on the captions.
    pub vocab_size: usize,
}

/// Everything a run needs to be repeated.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClipTrainConfig {
    pub seed: u64,
    pub steps: u64,
    pub batch_size: usize,
    pub lr: LrSchedule,
    pub weight_decay: f32,
    pub grad_clip: f32,
    pub architecture: ClipArchitecture,
}

/// What a checkpoint stores beside the weights.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClipTrainerState {
    pub step: u64,
    pub config: ClipTrainConfig,
}

/// One step's numbers.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ClipStepReport {
    pub step: u64,
    pub loss: f32,
    /// Accuracy of the batch's own matching: the share of images whose most similar caption is theirs.
    pub batch_accuracy: f32,
    pub temperature: f32,
    pub grad_norm: f32,
    pub lr: f32,
}

pub struct ClipTrainer {
    pub model: ClipModel,
    pub store: ParamStore,
    pub tokenizer: ClipTokenizer,
    optimizer: AdamW,
    state: ClipTrainerState,
    /// The ranks of a data-parallel run ([`SingleProcess`] by default).
    collective: Rc<dyn Collective>,
}

fn adamw(config: &ClipTrainConfig) -> AdamWConfig {
    AdamWConfig {
        weight_decay: config.weight_decay,
        ..AdamW::default_config(config.lr.lr_at(0))
    }
}

impl ClipTrainer {
    /// A new run on `device`: the tokenizer trained on the captions of every training image in every training
    /// template (and the zero-shot prompts' phrasing), then the model sized by `config.architecture` for `data`'s images.
    pub fn new(
        config: ClipTrainConfig,
        data: &Dataset,
        captions: &ImageCaptions,
        device: Device,
    ) -> Result<ClipTrainer> {
        let a = &config.architecture;
        let mut corpus = Vec::with_capacity(captions.len() * TRAIN_TEMPLATES.len());
        for i in 0..captions.len() {
            for template in TRAIN_TEMPLATES {
                corpus.push(captions.caption(i, template)?);
            }
        }
        let tokenizer = ClipTokenizer::train(&corpus, a.vocab_size, a.context_length)?;
        if data.height != data.width || !data.height.is_multiple_of(a.patch_size) {
            return Err(Error::train(
                "--patch-size",
                format!(
                    "the images are {}×{}; the vision tower needs square images whose side the patch size {} divides",
                    data.height, data.width, a.patch_size
                ),
            ));
        }
        let text = ClipTextConfig {
            vocab_size: tokenizer.vocab_size(),
            hidden_size: a.width,
            intermediate_size: a.mlp,
            projection_dim: a.projection_dim,
            num_hidden_layers: a.layers,
            num_attention_heads: a.heads,
            max_position_embeddings: a.context_length,
            pad_token_id: Some(tokenizer.pad_id()),
            bos_token_id: Some(tokenizer.bos_id()),
            eos_token_id: Some(tokenizer.eos_id()),
            ..ClipTextConfig::default()
        };
        let vision = ClipVisionConfig {
            hidden_size: a.width,
            intermediate_size: a.mlp,
            projection_dim: a.projection_dim,
            num_hidden_layers: a.layers,
            num_attention_heads: a.heads,
            num_channels: data.channels,
            image_size: data.height,
            patch_size: a.patch_size,
            ..ClipVisionConfig::default()
        };
        let model_config = ClipConfig {
            text_config: text,
            vision_config: vision,
            projection_dim: a.projection_dim,
            logit_scale_init_value: 2.6592,
            initializer_factor: 1.0,
        };
        let store = ParamStore::new(config.seed, device);
        let model = ClipModel::new(model_config, &store)?;
        let optimizer = AdamW::for_store(&store, adamw(&config))?;
        Ok(ClipTrainer {
            model,
            store,
            tokenizer,
            optimizer,
            state: ClipTrainerState { step: 0, config },
            collective: Rc::new(SingleProcess),
        })
    }

    /// Continues the run in `dir` from its latest checkpoint, on `device`.
    pub fn resume(dir: &Path, device: Device) -> Result<ClipTrainer> {
        let step_dir = latest_checkpoint(dir)?;
        let state_path = step_dir.join(STATE_FILE);
        let text = std::fs::read_to_string(&state_path)
            .map_err(|e| Error::train(state_path.display().to_string(), e.to_string()))?;
        let state: ClipTrainerState = serde_json::from_str(&text)
            .map_err(|e| Error::train(state_path.display().to_string(), e.to_string()))?;
        let (model, store) = ClipModel::load(&step_dir, device)?;
        let tokenizer = ClipTokenizer::load(&step_dir.join(TOKENIZER_DIR))?;
        let mut optimizer = AdamW::for_store(&store, adamw(&state.config))?;
        optimizer.load_state(step_dir.join(OPTIMIZER_FILE))?;
        Ok(ClipTrainer {
            model,
            store,
            tokenizer,
            optimizer,
            state,
            collective: Rc::new(SingleProcess),
        })
    }

    /// Trains as one rank of `collective`: this rank encodes its shard of every batch, and the embeddings and
    /// gradients are shared with the other ranks (see the module documentation).
    pub fn set_collective(&mut self, collective: Rc<dyn Collective>) {
        self.collective = collective;
    }

    /// This rank's part of every batch; an error when the batch has fewer pairs than there are ranks.
    pub fn shard(&self) -> Result<Shard> {
        Shard::of(
            self.state.config.batch_size,
            self.collective.rank(),
            self.collective.size(),
        )
    }

    pub fn config(&self) -> &ClipTrainConfig {
        &self.state.config
    }

    pub fn step_index(&self) -> u64 {
        self.state.step
    }

    /// Continue to `steps` in all (the learning-rate schedule keeps its own length).
    pub fn set_total_steps(&mut self, steps: u64) {
        self.state.config.steps = steps;
    }

    /// The image indices of step `step`.
    fn batch_indices(&self, len: usize, step: u64) -> Result<Vec<usize>> {
        let batch = self.state.config.batch_size;
        let per_epoch = (len / batch.max(1)) as u64;
        if per_epoch == 0 {
            return Err(Error::train(
                "--batch-size",
                format!("a batch of {batch} is larger than the {len} training images"),
            ));
        }
        let mut epoch =
            EpochBatches::new(len, batch, self.state.config.seed, step / per_epoch, true)?;
        Ok(epoch
            .nth((step % per_epoch) as usize)
            .expect("step mod batches per epoch is a whole batch"))
    }

    /// One optimiser step on `data` with `captions`.
    pub fn step(&mut self, data: &Dataset, captions: &ImageCaptions) -> Result<ClipStepReport> {
        let step = self.state.step;
        let config = &self.state.config;
        let indices = self.batch_indices(data.len(), step)?;
        let n = indices.len();
        let ranks = self.collective.size();
        let shard = self.shard()?;
        let rows = (0..ranks)
            .map(|r| Ok(Shard::of(n, r, ranks)?.len()))
            .collect::<Result<Vec<usize>>>()?;
        let local = &indices[shard.start..shard.end];
        let texts = local
            .iter()
            .zip(shard.start..)
            .map(|(&i, position)| {
                captions.training_caption(i, &TRAIN_TEMPLATES, (config.seed, step, position))
            })
            .collect::<Result<Vec<_>>>()?;
        let ids = self.tokenizer.encode_batch(&texts)?.ids;
        let (pixels, _) = data.batch(local, None)?;
        let device = self.model.device();
        let pixels = Var::constant(Tensor::from_vec(
            pixels,
            &[local.len(), data.channels, data.height, data.width],
            device,
        )?);
        let text_embeds = self.model.text_embeds(&ids, local.len())?;
        let image_embeds = self.model.image_embeds(&pixels)?;
        let logits = self.model.logits_per_text(
            &all_gather_rows(&self.collective, &text_embeds, &rows)?,
            &all_gather_rows(&self.collective, &image_embeds, &rows)?,
        )?;
        let loss = contrastive_loss(&logits)?;
        // Every rank computes the whole batch's loss; each back-propagates its 1/N share, so that the sums over the
        // ranks (of the embeddings' gradients in the all-gather's backward, then of the parameters' gradients) are
        // the gradient of the loss itself. With N = 2 the halving and the sum of the two halves are exact.
        let mut grads = match ranks {
            1 => loss.backward()?,
            _ => loss.mul_scalar(1.0 / ranks as f32)?.backward()?,
        };
        all_reduce_gradients(
            self.collective.as_ref(),
            &self.store.trainable(),
            &mut grads,
            BUCKET_ELEMENTS,
        )?;
        let grad_norm = clip_grad_norm(&mut grads, config.grad_clip)?;
        let lr = config.lr.lr_at(step);
        self.optimizer.config.lr = lr;
        self.optimizer.step(&grads)?;
        let scale = self.model.logit_scale.tensor();
        let value = scale.to_vec()?[0];
        if value > MAX_LOGIT_SCALE {
            scale.assign(&Tensor::from_vec(vec![MAX_LOGIT_SCALE], &[], device)?)?;
        }
        let logits = logits.tensor().to_vec()?;
        let correct = (0..n)
            .filter(|&image| {
                let column = |text: usize| logits[text * n + image];
                (0..n).all(|text| column(text) <= column(image))
            })
            .count();
        self.state.step += 1;
        Ok(ClipStepReport {
            step,
            loss: loss.tensor().to_vec()?[0],
            batch_accuracy: correct as f32 / n as f32,
            temperature: (-value.min(MAX_LOGIT_SCALE)).exp(),
            grad_norm,
            lr,
        })
    }

    /// Writes checkpoint `step-N` into `dir` (see the module documentation), keeping the newest `keep`.
    pub fn save_checkpoint(&self, dir: &Path, keep: usize) -> Result<PathBuf> {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::train(dir.display().to_string(), e.to_string()))?;
        write_checkpoint_folder(dir, self.state.step, keep, |tmp| {
            self.model.save(&self.store, tmp)?;
            self.model
                .text_model
                .save(&self.store, &tmp.join(TEXT_ENCODER_DIR))?;
            self.tokenizer.save(&tmp.join(TOKENIZER_DIR))?;
            self.optimizer.save_state(tmp.join(OPTIMIZER_FILE))?;
            let state =
                serde_json::to_string_pretty(&self.state).expect("the state always serialises");
            diffuse_models::folder::write_atomically(&tmp.join(STATE_FILE), state.as_bytes())?;
            Ok(())
        })
    }
}
