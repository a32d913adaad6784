//! The text side of `diffuse train --text CLIP_DIR`: Stable Diffusion in miniature.
//!
//! - the tokenizer and text encoder come from a `diffuse clip train` run (its latest checkpoint's `tokenizer/` and
//!   `text_encoder/`), one of its checkpoints, or a text-to-image pipeline folder; they stay frozen;
//! - a named config's `cross_attention_dim` becomes the encoder's width; an explicit `config.json` must already
//!   agree, or the error names both sides;
//! - every training image gets one caption (Fashion-MNIST's generated from its label and measured attributes, in a
//!   training template drawn from the run's seed and the image's index; a folder's from its `captions.txt`), and
//!   each distinct caption is encoded once ([`CaptionContexts`]); caption dropout replaces it by the empty prompt;
//! - every checkpoint is a diffusers `StableDiffusionPipeline` folder: `model_index.json`, `unet/` (the EMA
//!   weights), `text_encoder/`, `tokenizer/`, `scheduler/`, and `vae/` for a latent run (`[null, null]` for pixels).

use crate::datasets::DataSource;
use crate::latent::LatentDecoder;
use crate::prompt::TextEncoder;
use crate::vae::{MODEL_INDEX_FILE, PIPELINE_VAE_DIR};
use diffuse_diffusion::contrastive::{ImageCaptions, TEXT_ENCODER_DIR, TOKENIZER_DIR};
use diffuse_diffusion::data::captions::{class_prompt, FASHION_CLASSES, TRAIN_TEMPLATES};
use diffuse_diffusion::data::{Dataset, Split};
use diffuse_diffusion::pipeline::STABLE_DIFFUSION_PIPELINE;
use diffuse_diffusion::train::checkpoint::{latest_checkpoint, PIPELINE_UNET_DIR};
use diffuse_diffusion::train::CaptionContexts;
use diffuse_models::unet::config::DIFFUSERS_VERSION;
use diffuse_models::unet_condition::PerLevel;
use diffuse_models::BackboneConfig;
use diffuse_tensor::{Device, Tensor};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Captions per text-encoder batch.
const ENCODE_BATCH: usize = 64;
/// Rows of a training grid of a run on captions from a folder: its first distinct captions.
const GRID_PROMPTS: usize = 8;

/// A frozen tokenizer and text encoder, and the folder they came from.
pub struct TextConditioning {
    pub text: TextEncoder,
    /// The folder holding `tokenizer/` and `text_encoder/`.
    pub dir: PathBuf,
}

/// The folder with `tokenizer/` and `text_encoder/` that `dir` names: a run (its latest checkpoint) or a folder that
/// holds both.
fn text_folder(dir: &Path) -> Result<PathBuf, String> {
    if !dir.is_dir() {
        return Err(format!(
            "--text {}: no such folder; pass a `diffuse clip train` run",
            dir.display()
        ));
    }
    let folder = if dir.join("latest").is_file() {
        latest_checkpoint(dir).map_err(|e| e.to_string())?
    } else {
        dir.to_path_buf()
    };
    for part in [TOKENIZER_DIR, TEXT_ENCODER_DIR] {
        if !folder.join(part).is_dir() {
            return Err(format!(
                "--text {}: {} has no {part}/ folder; pass a `diffuse clip train` run, one of its step-N \
                 checkpoints, or a text-to-image pipeline folder (each holds tokenizer/ and text_encoder/)",
                dir.display(),
                folder.display()
            ));
        }
    }
    Ok(folder)
}

impl TextConditioning {
    /// The tokenizer and text encoder of `dir` (see [`text_folder`]) on `device`, checked against each other.
    pub fn load(dir: &Path, device: Device) -> Result<TextConditioning, String> {
        let folder = text_folder(dir)?;
        let text = TextEncoder::load(
            &folder.join(TOKENIZER_DIR),
            &folder.join(TEXT_ENCODER_DIR),
            None,
            device,
        )?;
        Ok(TextConditioning { text, dir: folder })
    }

    /// The width of the encoder's states (its `hidden_size`).
    pub fn width(&self) -> usize {
        self.text.encoder.config().hidden_size
    }

    /// `model` made to attend to this encoder's states: a named config (`named`) takes the encoder's width as its
    /// `cross_attention_dim`, with a note; a `config.json` must already have it, or the error names both sides.
    pub fn fit(
        &self,
        model: BackboneConfig,
        config_name: &str,
        named: bool,
    ) -> Result<(BackboneConfig, Option<String>), String> {
        let width = self.width();
        let BackboneConfig::UNet2DCondition(mut unet) = model else {
            return Err(format!(
                "--text: --config {config_name} is a {} without cross-attention; a text-to-image run trains a \
                 UNet2DConditionModel (--config fashion-text, or fashion-text-latent with --vae)",
                model.class_name()
            ));
        };
        let dims: Vec<usize> = (0..unet.levels())
            .map(|i| unet.cross_attention_dim.at(i))
            .collect();
        if dims.iter().all(|&d| d == width) {
            return Ok((BackboneConfig::UNet2DCondition(unet), None));
        }
        if !named {
            return Err(format!(
                "the text encoder {} gives {width}-wide states (hidden_size) but {config_name} attends to \
                 cross_attention_dim = {dims:?}: set cross_attention_dim to {width}, or pass the text encoder the \
                 config was made for",
                self.dir.join(TEXT_ENCODER_DIR).display()
            ));
        }
        unet.cross_attention_dim = PerLevel::All(width);
        let note = format!(
            "{config_name}: cross_attention_dim {width} (the text encoder's hidden_size) instead of {}",
            dims[0]
        );
        Ok((BackboneConfig::UNet2DCondition(unet), Some(note)))
    }

    /// Each image's caption (see the module documentation) encoded once per distinct caption, the empty prompt last.
    pub fn caption_contexts(
        &self,
        captions: &ImageCaptions,
        seed: u64,
    ) -> Result<CaptionContexts, String> {
        let mut rows: HashMap<String, usize> = HashMap::new();
        let mut distinct = Vec::new();
        let mut caption_of = Vec::with_capacity(captions.len());
        for index in 0..captions.len() {
            let caption = captions
                .training_caption(index, &TRAIN_TEMPLATES, (seed, 0, index))
                .map_err(|e| e.to_string())?;
            let row = *rows.entry(caption.clone()).or_insert_with(|| {
                distinct.push(caption);
                distinct.len() - 1
            });
            caption_of.push(row);
        }
        distinct.push(String::new());
        let mut parts = Vec::new();
        for chunk in distinct.chunks(ENCODE_BATCH) {
            parts.push(self.text.encode(chunk)?);
        }
        let refs: Vec<&Tensor> = parts.iter().collect();
        let states = Tensor::concat(&refs, 0).map_err(|e| e.to_string())?;
        CaptionContexts::new(states, caption_of).map_err(|e| e.to_string())
    }

    /// Writes the text side and `model_index.json` of a `StableDiffusionPipeline` into the checkpoint folder `dir`
    /// (whose `unet/` and `scheduler/` the trainer writes), with `vae/` for a latent run.
    pub fn write_pipeline(
        &self,
        dir: &Path,
        model: &BackboneConfig,
        decoder: Option<&LatentDecoder>,
    ) -> diffuse_models::Result<()> {
        self.text
            .save(&dir.join(TOKENIZER_DIR), &dir.join(TEXT_ENCODER_DIR))?;
        let vae = match decoder {
            Some(decoder) => {
                decoder.write_vae(dir)?;
                serde_json::json!(["diffusers", "AutoencoderKL"])
            }
            None => serde_json::json!([null, null]),
        };
        let index = serde_json::json!({
            "_class_name": STABLE_DIFFUSION_PIPELINE,
            "_diffusers_version": DIFFUSERS_VERSION,
            "feature_extractor": [null, null],
            "image_encoder": [null, null],
            "requires_safety_checker": false,
            "safety_checker": [null, null],
            "scheduler": ["diffusers", "DDPMScheduler"],
            TEXT_ENCODER_DIR: ["transformers", "CLIPTextModel"],
            TOKENIZER_DIR: ["transformers", "CLIPTokenizer"],
            PIPELINE_UNET_DIR: ["diffusers", model.class_name()],
            PIPELINE_VAE_DIR: vae,
        });
        let text = serde_json::to_string_pretty(&index).expect("a JSON value always serialises");
        diffuse_models::folder::write_atomically(&dir.join(MODEL_INDEX_FILE), text.as_bytes())
    }
}

/// The captions of the training images of `source`: a folder's `captions.txt` / `captions.csv`, else generated from
/// Fashion-MNIST labels.
pub fn training_captions(source: &DataSource, data: &Dataset) -> Result<ImageCaptions, String> {
    match source {
        DataSource::Folder(dir) => ImageCaptions::for_dataset(dir, Split::Train, data),
        DataSource::Shipped => ImageCaptions::from_labels(data, &source.to_string()),
    }
    .map_err(|e| e.to_string())
}

/// The prompts of the training grids, one row each: "a photo of a {class}" for every Fashion-MNIST class of
/// generated captions, else the first distinct captions.
pub fn grid_prompts(captions: &ImageCaptions) -> Vec<String> {
    match captions {
        ImageCaptions::Fashion(_) => FASHION_CLASSES.iter().map(|c| class_prompt(c)).collect(),
        ImageCaptions::Fixed(all) => {
            let mut prompts: Vec<String> = Vec::new();
            for caption in all {
                if prompts.len() == GRID_PROMPTS {
                    break;
                }
                if !prompts.contains(caption) {
                    prompts.push(caption.clone());
                }
            }
            prompts
        }
    }
}
