//! transformers' `CLIPVisionModel`, CLIP's image tower: a vision transformer on the same layers as the text encoder.
//!
//! ```text
//! pixels (N, C, H, W) ─ patch_embedding: a P×P convolution of stride P, no bias      (N, D, H/P, W/P)
//!                     ─ the patches as tokens, after one learned class token         (N, 1 + HW/P², D)
//!                     ─ + position_embedding, pre_layrnorm (sic: transformers' name)
//!                     ─ encoder, without a mask                                      last_hidden_state
//!                     ─ post_layernorm of the class token                            pooled (N, D)
//! ```

use super::config::ClipVisionConfig;
use super::encoder::{ClipEncoder, TowerShape};
use super::init::embedding;
use crate::error::{Error, Result};
use diffuse_autograd::Var;
use diffuse_nn::{Conv2d, Embedding, Init, LayerNorm, Module, Path};
use diffuse_tensor::Conv2dParams;

/// `vision_model`: patch and position embeddings, class token, encoder, the two LayerNorms.
pub struct ClipVisionModel {
    pub class_embedding: Var,
    pub patch_embedding: Conv2d,
    pub position_embedding: Embedding,
    pub pre_layrnorm: LayerNorm,
    pub encoder: ClipEncoder,
    pub post_layernorm: LayerNorm,
    config: ClipVisionConfig,
}

impl ClipVisionModel {
    pub(crate) fn at(path: &Path, config: ClipVisionConfig) -> Result<ClipVisionModel> {
        config.validate()?;
        let shape = TowerShape::of_vision(&config);
        let (d, p, f) = (
            config.hidden_size,
            config.patch_size,
            config.initializer_factor,
        );
        let std = (config.initializer_range * f) as f32;
        let embeddings = path.sub("embeddings");
        let patch_path = embeddings.sub("patch_embedding");
        let patch_embedding = Conv2d {
            weight: patch_path.param(
                "weight",
                &[d, config.num_channels, p, p],
                Init::Normal { std },
            )?,
            bias: None,
            params: Conv2dParams {
                stride: (p, p),
                ..Conv2dParams::default()
            },
        };
        let positions = config.grid() * config.grid() + 1;
        Ok(ClipVisionModel {
            class_embedding: embeddings.param(
                "class_embedding",
                &[d],
                Init::Normal {
                    std: ((d as f64).powf(-0.5) * f) as f32,
                },
            )?,
            patch_embedding,
            position_embedding: embedding(
                &embeddings.sub("position_embedding"),
                positions,
                d,
                std,
            )?,
            pre_layrnorm: LayerNorm::new(&path.sub("pre_layrnorm"), d, shape.eps)?,
            encoder: ClipEncoder::new(&path.sub("encoder"), &shape, f as f32)?,
            post_layernorm: LayerNorm::new(&path.sub("post_layernorm"), d, shape.eps)?,
            config,
        })
    }

    pub fn config(&self) -> &ClipVisionConfig {
        &self.config
    }

    /// `pixels` (N, C, H, W) at the config's size → the pooled class token (N, D).
    pub fn forward(&self, pixels: &Var) -> Result<Var> {
        let c = &self.config;
        let s = c.image_size;
        let &[n, channels, h, w] = pixels.shape() else {
            return Err(Error::model(
                "CLIPVisionModel",
                format!("expects (N, C, H, W) pixels, got {:?}", pixels.shape()),
            ));
        };
        if (channels, h, w) != (c.num_channels, s, s) || n == 0 {
            return Err(Error::model(
                "CLIPVisionModel",
                format!(
                    "expects images of {} channels and {s}×{s} pixels, got {:?}",
                    c.num_channels,
                    pixels.shape()
                ),
            ));
        }
        let d = c.hidden_size;
        let patches = c.grid() * c.grid();
        let tokens = self
            .patch_embedding
            .forward(pixels)?
            .reshape(&[n, d, patches])?
            .transpose(1, 2)?;
        let class = self
            .class_embedding
            .reshape(&[1, 1, d])?
            .broadcast_to(&[n, 1, d])?;
        let positions: Vec<usize> = (0..=patches).collect();
        let h = Var::concat(&[&class, &tokens], 1)?
            .add(&self.position_embedding.forward(&positions)?)?;
        let h = self
            .encoder
            .forward(&self.pre_layrnorm.forward(&h)?, false)?;
        let first = h.narrow(1, 0, 1)?.reshape(&[n, d])?;
        Ok(self.post_layernorm.forward(&first)?)
    }
}
