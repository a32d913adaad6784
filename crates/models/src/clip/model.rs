//! transformers' `CLIPModel`: both towers, their projections into one joint space, and the learned temperature.
//!
//! ```text
//! t = text_projection(text pooled) / ‖·‖          (N, P)   unit rows
//! v = visual_projection(image pooled) / ‖·‖       (M, P)
//! logits_per_text = exp(logit_scale) · t·vᵀ       (N, M);   logits_per_image is its transpose
//! loss = ½ [CE(logits_per_text, diag) + CE(logits_per_image, diag)]       for N = M matched pairs
//! ```
//!
//! The folder is transformers': `config.json` ([`ClipConfig`]) + `model.safetensors` with `text_model.*`,
//! `vision_model.*`, `text_projection.weight`, `visual_projection.weight` and the scalar `logit_scale`.

use super::config::ClipConfig;
use super::init::projection;
use super::text::{ClipTextModel, POSITION_IDS_BUFFER};
use super::vision::ClipVisionModel;
use crate::error::{Error, Result};
use crate::folder::{load_weights_except, read_config, save_folder, TRANSFORMERS_WEIGHTS_FILE};
use diffuse_autograd::Var;
use diffuse_nn::{Init, Linear, Module, ParamStore};
use diffuse_tensor::Device;
use std::path::Path;

/// The vision tower's position buffer, skipped on load like the text tower's.
const VISION_POSITION_IDS_BUFFER: &str = "vision_model.embeddings.position_ids";

pub struct ClipModel {
    pub text_model: ClipTextModel,
    pub vision_model: ClipVisionModel,
    pub text_projection: Linear,
    pub visual_projection: Linear,
    /// log of the inverse temperature, a scalar (shape []).
    pub logit_scale: Var,
    config: ClipConfig,
}

impl ClipModel {
    /// Builds the model in `store`, initialised as transformers does.
    pub fn new(config: ClipConfig, store: &ParamStore) -> Result<ClipModel> {
        let root = store.root();
        let (t, v, p, f) = (
            &config.text_config,
            &config.vision_config,
            config.projection_dim,
            config.initializer_factor,
        );
        Ok(ClipModel {
            text_model: ClipTextModel::at(&root.sub("text_model"), t.clone())?,
            vision_model: ClipVisionModel::at(&root.sub("vision_model"), v.clone())?,
            text_projection: projection(&root.sub("text_projection"), t.hidden_size, p, f)?,
            visual_projection: projection(&root.sub("visual_projection"), v.hidden_size, p, f)?,
            logit_scale: root.param(
                "logit_scale",
                &[],
                Init::Constant(config.logit_scale_init_value as f32),
            )?,
            config,
        })
    }

    pub fn config(&self) -> &ClipConfig {
        &self.config
    }

    pub fn device(&self) -> Device {
        self.text_model.device()
    }

    /// Unit-length text embeddings (N, P) of `n` token sequences.
    pub fn text_embeds(&self, ids: &[u32], n: usize) -> Result<Var> {
        unit_rows(
            &self
                .text_projection
                .forward(&self.text_model.forward(ids, n)?.pooled)?,
        )
    }

    /// Unit-length image embeddings (M, P) of `pixels` (M, C, H, W).
    pub fn image_embeds(&self, pixels: &Var) -> Result<Var> {
        unit_rows(
            &self
                .visual_projection
                .forward(&self.vision_model.forward(pixels)?)?,
        )
    }

    /// `logits_per_text` (N, M) = exp(logit_scale) · text_embeds · image_embedsᵀ.
    pub fn logits_per_text(&self, text_embeds: &Var, image_embeds: &Var) -> Result<Var> {
        let scale = self.logit_scale.exp()?;
        Ok(text_embeds
            .matmul(&image_embeds.transpose(0, 1)?)?
            .mul(&scale)?)
    }

    /// Loads a transformers `CLIPModel` folder onto `device`.
    pub fn load(dir: &Path, device: Device) -> Result<(ClipModel, ParamStore)> {
        let config = read_config(dir, ClipConfig::from_json_str)?;
        let store = ParamStore::new(0, device);
        let model = ClipModel::new(config, &store)?;
        load_weights_except(
            &store,
            &dir.join(TRANSFORMERS_WEIGHTS_FILE),
            &[POSITION_IDS_BUFFER, VISION_POSITION_IDS_BUFFER],
        )?;
        Ok((model, store))
    }

    /// Writes `config.json` and `model.safetensors` into `dir`.
    pub fn save(&self, store: &ParamStore, dir: &Path) -> Result<()> {
        save_folder(
            dir,
            &self.config.to_json_string(),
            store,
            TRANSFORMERS_WEIGHTS_FILE,
        )
    }
}

/// Each row of `x` (N, P) divided by its L2 norm.
fn unit_rows(x: &Var) -> Result<Var> {
    Ok(x.div(&x.square()?.sum(&[1], true)?.sqrt()?)?)
}

/// CLIP's symmetric contrastive loss of the (N, N) `logits_per_text` of N matched pairs: the mean of the
/// cross-entropies of each text against all images and of each image against all texts, the match on the diagonal.
pub fn contrastive_loss(logits_per_text: &Var) -> Result<Var> {
    let &[n, m] = logits_per_text.shape() else {
        return Err(Error::model(
            "contrastive_loss",
            format!("expects (N, N) logits, got {:?}", logits_per_text.shape()),
        ));
    };
    if n != m || n == 0 {
        return Err(Error::model(
            "contrastive_loss",
            format!("needs as many texts as images, matched in order, got {n} × {m}"),
        ));
    }
    let diagonal: Vec<usize> = (0..n).collect();
    let cross_entropy = |logits: &Var| -> Result<Var> {
        Ok(logits
            .log_softmax(1)?
            .gather(1, &[n, 1], &diagonal)?
            .mean_all()?
            .neg()?)
    };
    let per_text = cross_entropy(logits_per_text)?;
    let per_image = cross_entropy(&logits_per_text.transpose(0, 1)?)?;
    Ok(per_text.add(&per_image)?.mul_scalar(0.5)?)
}
