//! What the DiT embeds: image patches with their fixed 2-D position, and the conditioning (timestep + class).
//!
//! ```text
//! tokens = flatten(proj(x)) + pos                 proj: p×p convolution, stride p   (N, C, H, W) → (N, L, D)
//! pos[i·w + j] = [sin(j'ω), cos(j'ω), sin(i'ω), cos(i'ω)]      ω_k = 10000^(−k/(D/4)), k < D/4
//!                i' = i·b/h, j' = j·b/w for a grid of h × w patches, b = sample_size / p (i' = i at the trained size)
//! c      = timestep_embedder(code(t)) + class_embedder[y]          (N, D)
//! code   = [cos(t·f), sin(t·f)],  f_k = exp(−ln(10⁴)·k/(128 − 1)), k < 128          256 channels
//! ```
//!
//! The first half of every position vector encodes the column, the second the row: diffusers' `PatchEmbed` builds
//! its grid with `meshgrid(w, h, indexing="xy")` and names the halves the other way round, and the numbers are what
//! count. The class table has a row more than there are classes: the null class of classifier-free guidance, index
//! `num_classes`, which training swaps in for a dropped label.

use super::init::{normal, xavier_uniform, zeros};
use crate::unet::embedding::{timestep_code, TimestepEmbedding};
use diffuse_autograd::Var;
use diffuse_nn::{Conv2d, Embedding, Linear, Module, Path};
use diffuse_tensor::{Conv2dParams, Device, Error, Result, Tensor};

/// Channels of the sinusoidal timestep code (diffusers' `Timesteps(num_channels=256)`).
pub const TIMESTEP_CODE_CHANNELS: usize = 256;

/// The fixed 2-D sine-cosine position embedding of a grid of `h × w` patches for width `dim` (a multiple of 4), as
/// an `(h·w, dim)` tensor; `base` is the grid side at the trained size (`sample_size / patch_size`).
pub fn position_embedding(
    h: usize,
    w: usize,
    base: usize,
    dim: usize,
    device: Device,
) -> Result<Tensor> {
    let quarter = dim / 4;
    // diffusers computes ω in f64 and the positions in f32 (integers scaled by base/size), then rounds to f32.
    let omega: Vec<f64> = (0..quarter)
        .map(|k| 1.0 / 10000f64.powf(k as f64 / quarter as f64))
        .collect();
    let scaled = |index: usize, size: usize| f64::from(index as f32 / (size as f32 / base as f32));
    let mut table = Vec::with_capacity(h * w * dim);
    for i in 0..h {
        for j in 0..w {
            for pos in [scaled(j, w), scaled(i, h)] {
                table.extend(omega.iter().map(|&o| (pos * o).sin() as f32));
                table.extend(omega.iter().map(|&o| (pos * o).cos() as f32));
            }
        }
    }
    Tensor::from_vec(table, &[h * w, dim], device)
}

/// diffusers' `PatchEmbed` without a layer norm: a `p × p` convolution with stride `p` (`proj`), flattened to
/// tokens in row-major order of the patch grid, plus the fixed position embedding.
pub struct PatchEmbed {
    pub proj: Conv2d,
    pub patch_size: usize,
    /// The grid side at the trained size.
    pub base_size: usize,
}

impl PatchEmbed {
    /// Initialised as the DiT paper does: Xavier-uniform on the weight seen as a linear map of flattened patches,
    /// bias 0.
    pub fn new(
        path: &Path,
        in_channels: usize,
        dim: usize,
        patch_size: usize,
        sample_size: usize,
    ) -> Result<PatchEmbed> {
        let proj = path.sub("proj");
        let fan_in = in_channels * patch_size * patch_size;
        Ok(PatchEmbed {
            proj: Conv2d {
                weight: proj.param(
                    "weight",
                    &[dim, in_channels, patch_size, patch_size],
                    xavier_uniform(fan_in, dim),
                )?,
                bias: Some(proj.param("bias", &[dim], zeros())?),
                params: Conv2dParams {
                    stride: (patch_size, patch_size),
                    ..Conv2dParams::default()
                },
            },
            patch_size,
            base_size: sample_size / patch_size,
        })
    }

    /// `x` (N, C, H, W), H and W multiples of the patch size (checked by the caller) → tokens (N, L, D).
    pub fn forward(&self, x: &Var) -> Result<Var> {
        let y = self.proj.forward(x)?; // (N, D, h, w)
        let &[n, d, h, w] = y.shape() else {
            return Err(Error::shape(
                "PatchEmbed",
                format!(
                    "the patch projection gave {:?}, not (N, D, h, w)",
                    y.shape()
                ),
            ));
        };
        let tokens = y.reshape(&[n, d, h * w])?.transpose(1, 2)?;
        let pos = position_embedding(h, w, self.base_size, d, x.tensor().device())?;
        tokens.add(&Var::constant(pos))
    }
}

/// diffusers' `LabelEmbedding`: a table of `classes + 1` vectors (the last is the null class), initialised
/// N(0, 0.02²) as in the DiT paper.
pub struct LabelEmbedding {
    pub embedding_table: Embedding,
}

/// diffusers' `CombinedTimestepLabelEmbeddings`: the conditioning vector `c = timestep_embedder(code(t)) +
/// class_embedder[y]` of one block. Every block of a diffusers DiT has its own (the original DiT's single embedder,
/// copied into each when a checkpoint is converted).
pub struct CombinedTimestepLabelEmbeddings {
    pub timestep_embedder: TimestepEmbedding,
    pub class_embedder: LabelEmbedding,
}

impl CombinedTimestepLabelEmbeddings {
    /// Initialised as the DiT paper does: the MLP's weights N(0, 0.02²) and biases 0, the label table N(0, 0.02²).
    pub fn new(path: &Path, classes: usize, dim: usize) -> Result<Self> {
        let mlp = path.sub("timestep_embedder");
        let linear = |name: &str, fan_in: usize| -> Result<Linear> {
            let p = mlp.sub(name);
            Ok(Linear {
                weight: p.param("weight", &[dim, fan_in], normal(0.02))?,
                bias: Some(p.param("bias", &[dim], zeros())?),
            })
        };
        let timestep_embedder = TimestepEmbedding {
            linear_1: linear("linear_1", TIMESTEP_CODE_CHANNELS)?,
            linear_2: linear("linear_2", dim)?,
        };
        let table = path.sub("class_embedder").sub("embedding_table");
        Ok(CombinedTimestepLabelEmbeddings {
            timestep_embedder,
            class_embedder: LabelEmbedding {
                embedding_table: Embedding {
                    weight: table.param("weight", &[classes + 1, dim], normal(0.02))?,
                },
            },
        })
    }

    /// `c` (N, D) for per-sample timesteps `t` and labels `ids` (checked by the caller).
    pub fn forward(&self, t: &[f64], ids: &[usize], device: Device) -> Result<Var> {
        let code = timestep_code(t, TIMESTEP_CODE_CHANNELS, true, 1.0, device)?;
        let temb = self.timestep_embedder.forward(&Var::constant(code))?;
        temb.add(&self.class_embedder.embedding_table.forward(ids)?)
    }
}
