//! The whole network, diffusers' `DiTTransformer2DModel`:
//!
//! ```text
//! x = pos_embed(sample)                                  (N, C, H, W) → (N, L, D), L = (H/p)·(W/p) patches
//! for each block i: c_i = block_i.norm1.emb(t, y);  x = block_i(x, c_i)
//! shift, scale = proj_out_1(SiLU(c_0))                   (N, D) each, in that order
//! x = LayerNorm(x)·(1 + scale) + shift                   ε = 1e-6, no affine
//! out = unpatchify(proj_out_2(x))                        (N, L, p·p·C_out) → (N, C_out, H, W)
//! ```
//!
//! The final layer reuses the first block's conditioning, as diffusers does. Unpatchify reads each token's
//! `p·p·C_out` outputs in the order (row in patch, column in patch, channel) and puts them back in place.

use super::block::{BlockSettings, DiTBlock, ADA_NORM_EPS};
use super::config::DiTConfig;
use super::embedding::PatchEmbed;
use super::init::{linear, zeros};
use crate::error::{Error, Result};
use diffuse_autograd::Var;
use diffuse_nn::{Linear, Module, ParamStore};

/// A DiT with exactly the structure and parameter names of diffusers' `DiTTransformer2DModel` for the supported
/// subset of its options (see [`DiTConfig::validate`]).
pub struct DiTTransformer2DModel {
    config: DiTConfig,
    pub pos_embed: PatchEmbed,
    pub transformer_blocks: Vec<DiTBlock>,
    /// `D → 2D`: the final layer's shift and scale, zero at initialisation.
    pub proj_out_1: Linear,
    /// `D → p·p·C_out`, zero at initialisation.
    pub proj_out_2: Linear,
}

const NAME: &str = "DiTTransformer2DModel";

impl DiTTransformer2DModel {
    /// Builds the network for `config` (checked first), registering its parameters at the root of `store`,
    /// initialised as the DiT paper does (adaLN-Zero; see [`super::init`]).
    pub fn new(config: DiTConfig, store: &ParamStore) -> Result<DiTTransformer2DModel> {
        config.validate()?;
        let root = store.root();
        let d = config.inner_dim();
        let p = config.patch_size;
        let pos_embed = PatchEmbed::new(
            &root.sub("pos_embed"),
            config.in_channels,
            d,
            p,
            config.sample_size,
        )?;
        let settings = BlockSettings {
            dim: d,
            heads: config.num_attention_heads,
            head_dim: config.attention_head_dim,
            attention_bias: config.attention_bias,
            tanh_gelu: config.activation_fn == "gelu-approximate",
            classes: config.label_table_len() - 1,
            ff_norm_eps: config.norm_eps as f32,
        };
        let transformer_blocks = (0..config.num_layers)
            .map(|i| DiTBlock::new(&root.sub("transformer_blocks").sub(i), &settings))
            .collect::<diffuse_tensor::Result<Vec<_>>>()?;
        let proj_out_1 = linear(&root.sub("proj_out_1"), d, 2 * d, zeros(), true)?;
        let out = p * p * config.output_channels();
        let proj_out_2 = linear(&root.sub("proj_out_2"), d, out, zeros(), true)?;
        Ok(DiTTransformer2DModel {
            config,
            pos_embed,
            transformer_blocks,
            proj_out_1,
            proj_out_2,
        })
    }

    pub fn config(&self) -> &DiTConfig {
        &self.config
    }

    /// The device its weights live on.
    pub fn device(&self) -> diffuse_tensor::Device {
        self.proj_out_2.weight.tensor().device()
    }

    /// The network output (N, C_out, H, W) for `sample` (N, in_channels, H, W) at `timesteps` (one per sample, or
    /// one for all; fractional values allowed) and `class_labels` (one per sample, each below
    /// `num_embeds_ada_norm + 1`; `num_embeds_ada_norm` is the null class). H and W must be multiples of the patch
    /// size.
    pub fn forward(
        &self,
        sample: &Var,
        timesteps: &[f64],
        class_labels: Option<&[u32]>,
    ) -> Result<Var> {
        let (n, h, w) = self.check_sample(sample)?;
        let t = per_sample(timesteps, n)?;
        let ids = self.label_ids(class_labels, n)?;
        let device = sample.tensor().device();
        let mut x = self.pos_embed.forward(sample)?;
        let mut first_condition = None;
        for block in &self.transformer_blocks {
            let c = block.norm1.emb.forward(&t, &ids, device)?;
            x = block.forward(&x, &c)?;
            first_condition.get_or_insert(c);
        }
        let c = first_condition.expect("a validated config has at least one block");
        let d = self.config.inner_dim();
        let modulation = self.proj_out_1.forward(&c.silu()?)?;
        let (shift, scale) = (modulation.narrow(1, 0, d)?, modulation.narrow(1, d, d)?);
        let x = x.layer_norm_modulate(&scale, &shift, ADA_NORM_EPS)?;
        let x = self.proj_out_2.forward(&x)?;
        Ok(self.unpatchify(&x, n, h, w)?)
    }

    /// (N, L, p·p·C) → (N, C, H, W): token (i, j)'s outputs (a, b, c) land at pixel (i·p + a, j·p + b) of channel c.
    fn unpatchify(&self, x: &Var, n: usize, h: usize, w: usize) -> diffuse_tensor::Result<Var> {
        let p = self.config.patch_size;
        let c = self.config.output_channels();
        x.reshape(&[n, h / p, w / p, p, p, c])?
            .permute(&[0, 5, 1, 3, 2, 4])?
            .reshape(&[n, c, h, w])
    }

    /// (N, H, W) of a sample of the right channels whose sides are multiples of the patch size.
    fn check_sample(&self, sample: &Var) -> Result<(usize, usize, usize)> {
        let c = &self.config;
        let &[n, channels, h, w] = sample.shape() else {
            return Err(Error::model(
                NAME,
                format!(
                    "the sample must be (N, {}, H, W), got {:?}",
                    c.in_channels,
                    sample.shape()
                ),
            ));
        };
        if channels != c.in_channels {
            return Err(Error::model(
                NAME,
                format!(
                    "the sample has {channels} channels but the model takes {} (shape {:?})",
                    c.in_channels,
                    sample.shape()
                ),
            ));
        }
        let p = c.patch_size;
        if h == 0 || w == 0 || !h.is_multiple_of(p) || !w.is_multiple_of(p) {
            return Err(Error::model(
                NAME,
                format!(
                    "a {h} × {w} sample does not split into {p} × {p} patches: its height and width must be \
                     positive multiples of patch_size = {p}"
                ),
            ));
        }
        Ok((n, h, w))
    }

    /// The label of each sample as a table index, checked: required, one per sample, within the table.
    fn label_ids(&self, class_labels: Option<&[u32]>, n: usize) -> Result<Vec<usize>> {
        let rows = self.config.label_table_len();
        let Some(labels) = class_labels else {
            return Err(Error::model(
                NAME,
                format!(
                    "this model is class-conditional (ada_norm_zero): pass class labels, or the null class {} \
                     for unconditional samples",
                    rows - 1
                ),
            ));
        };
        if labels.len() != n {
            return Err(Error::model(
                NAME,
                format!("{} class labels for a batch of {n} samples", labels.len()),
            ));
        }
        if let Some(bad) = labels.iter().find(|&&l| l as usize >= rows) {
            return Err(Error::model(
                NAME,
                format!(
                    "class label {bad} is out of range: the model has {} classes and the null class {}",
                    rows - 1,
                    rows - 1
                ),
            ));
        }
        Ok(labels.iter().map(|&l| l as usize).collect())
    }
}

/// One timestep per sample (a single one is repeated).
fn per_sample(timesteps: &[f64], n: usize) -> Result<Vec<f64>> {
    match timesteps.len() {
        1 => Ok(vec![timesteps[0]; n]),
        len if len == n => Ok(timesteps.to_vec()),
        len => Err(Error::model(
            NAME,
            format!(
                "{len} timesteps for a batch of {n} samples (give one per sample, or one for all)"
            ),
        )),
    }
}
