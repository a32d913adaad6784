//! transformers' initialisation of CLIP (`CLIPPreTrainedModel._init_weights`), as distributions: every weight normal
//! with a standard deviation set by its role, every bias 0, LayerNorms 1 and 0. With width D, L layers and
//! `initializer_factor` f:
//!
//! ```text
//! embeddings                          initializer_range · f            (0.02 by default)
//! q, k, v projections and fc2         D^-½ · (2L)^-½ · f
//! out_proj                            D^-½ · f
//! fc1                                 (2D)^-½ · f
//! text / visual projection, class embedding    D^-½ · f
//! ```

use super::encoder::TowerShape;
use crate::error::Result;
use diffuse_nn::{Embedding, Init, Linear, Path};

/// The standard deviations of one layer's weights.
pub(crate) struct LayerStd {
    pub attention_in: f32,
    pub attention_out: f32,
    pub fc1: f32,
}

impl LayerStd {
    pub(crate) fn new(s: &TowerShape, factor: f32) -> LayerStd {
        let d = s.hidden as f32;
        LayerStd {
            attention_in: d.powf(-0.5) * (2.0 * s.layers as f32).powf(-0.5) * factor,
            attention_out: d.powf(-0.5) * factor,
            fc1: (2.0 * d).powf(-0.5) * factor,
        }
    }
}

/// A linear layer with weight ~ N(0, std²) and a zero bias.
pub(crate) fn linear(
    path: &Path,
    inputs: usize,
    outputs: usize,
    std: f32,
    bias: bool,
) -> Result<Linear> {
    Ok(Linear {
        weight: path.param("weight", &[outputs, inputs], Init::Normal { std })?,
        bias: bias
            .then(|| path.param("bias", &[outputs], Init::Constant(0.0)))
            .transpose()?,
    })
}

/// An embedding table ~ N(0, std²).
pub(crate) fn embedding(path: &Path, num: usize, dim: usize, std: f32) -> Result<Embedding> {
    Ok(Embedding {
        weight: path.param("weight", &[num, dim], Init::Normal { std })?,
    })
}

/// A projection into the joint space: no bias, std D^-½ · f.
pub(crate) fn projection(
    path: &Path,
    hidden: usize,
    projection_dim: usize,
    factor: f64,
) -> Result<Linear> {
    let std = (hidden as f64).powf(-0.5) * factor;
    linear(path, hidden, projection_dim, std as f32, false)
}
