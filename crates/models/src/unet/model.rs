//! The whole network, diffusers' `UNet2DModel`:
//!
//! ```text
//! temb = time_embedding(code(t)) (+ class_embedding[label])           (N, 4·C₀); code: sinusoidal, or Fourier of ln σ
//! x    = conv_in(sample)                                             (N, C₀, H, W)         skip 0
//! down: for each level i: x = down_blocks[i](x)                      pushes its skips, halves H, W except the last
//! mid:  x = mid_block(x)
//! up:   for each level i: x = up_blocks[i](x ⧺ skips popped)          doubles H, W except the last
//! out  = conv_out(SiLU(conv_norm_out(x)))                            (N, out_channels, H, W)
//! out  = out / σ                                                      only with time_embedding_type "fourier"
//! ```
//!
//! The last line is diffusers' score-SDE convention: a Fourier-embedded model takes the noise level σ as its
//! timestep and returns the score, its raw output scaled by 1/σ (NCSN's noise-conditional output scaling).

use super::blocks::{BlockSettings, DownBlock, DownChannels, UpBlock, UpChannels};
use super::config::UNetConfig;
use super::embedding::{timestep_code, GaussianFourierProjection, TimestepEmbedding};
use crate::error::{Error, Result};
use crate::layers::resnet::conv3x3;
use crate::layers::UNetMidBlock2D;
use diffuse_autograd::Var;
use diffuse_nn::{Conv2d, Embedding, GroupNorm, Module, ParamStore};
use diffuse_tensor::Tensor;

/// A U-Net with exactly the structure and parameter names of diffusers' `UNet2DModel` for the supported subset of
/// its options (see [`UNetConfig::validate`]).
pub struct UNet2DModel {
    config: UNetConfig,
    pub conv_in: Conv2d,
    /// The Fourier code of the noise level (`time_embedding_type = "fourier"`); `None`: the sinusoidal code.
    pub time_proj: Option<GaussianFourierProjection>,
    pub time_embedding: TimestepEmbedding,
    pub class_embedding: Option<Embedding>,
    pub down_blocks: Vec<DownBlock>,
    pub mid_block: UNetMidBlock2D,
    pub up_blocks: Vec<UpBlock>,
    pub conv_norm_out: GroupNorm,
    pub conv_out: Conv2d,
}

impl UNet2DModel {
    /// Builds the network for `config` (checked first), registering its parameters at the root of `store` with
    /// PyTorch's default initialisation.
    pub fn new(config: UNetConfig, store: &ParamStore) -> Result<UNet2DModel> {
        config.validate()?;
        let root = store.root();
        let channels = &config.block_out_channels;
        let levels = channels.len();
        let temb = config.time_embed_dim();
        let settings = BlockSettings {
            temb_channels: temb,
            groups: config.norm_num_groups,
            eps: config.norm_eps as f32,
            head_dim: config.attention_head_dim,
        };
        let layers = config.layers_per_block;

        let conv_in = conv3x3(&root.sub("conv_in"), config.in_channels, channels[0], 1, 1)?;
        let time_proj = config
            .is_fourier()
            .then(|| GaussianFourierProjection::new(&root.sub("time_proj"), channels[0]))
            .transpose()?;
        let code_dim = if time_proj.is_some() {
            2 * channels[0]
        } else {
            channels[0]
        };
        let time_embedding = TimestepEmbedding::new(&root.sub("time_embedding"), code_dim, temb)?;
        let class_embedding = config
            .num_class_embeds
            .map(|num| Embedding::new(&root.sub("class_embedding"), num, temb))
            .transpose()?;

        let mut down_blocks = Vec::with_capacity(levels);
        for (i, kind) in config.down_block_types.iter().enumerate() {
            let ch = DownChannels {
                input: channels[i.saturating_sub(1)],
                out: channels[i],
            };
            let is_final = i + 1 == levels;
            down_blocks.push(DownBlock::new(
                &root.sub("down_blocks").sub(i),
                &settings,
                ch,
                layers,
                kind == "AttnDownBlock2D",
                (!is_final).then_some(config.downsample_padding),
            )?);
        }

        let mid_block = settings.mid_block(&root.sub("mid_block"), channels[levels - 1])?;

        let mut up_blocks = Vec::with_capacity(levels);
        for (i, kind) in config.up_block_types.iter().enumerate() {
            let level = levels - 1 - i;
            let ch = UpChannels {
                prev_output: channels[(level + 1).min(levels - 1)],
                out: channels[level],
                last_skip: channels[level.saturating_sub(1)],
            };
            up_blocks.push(UpBlock::new(
                &root.sub("up_blocks").sub(i),
                &settings,
                ch,
                layers + 1,
                kind == "AttnUpBlock2D",
                level > 0,
            )?);
        }

        let conv_norm_out = GroupNorm::new(
            &root.sub("conv_norm_out"),
            config.norm_num_groups,
            channels[0],
            config.norm_eps as f32,
        )?;
        let conv_out = conv3x3(
            &root.sub("conv_out"),
            channels[0],
            config.out_channels,
            1,
            1,
        )?;
        Ok(UNet2DModel {
            config,
            conv_in,
            time_proj,
            time_embedding,
            class_embedding,
            down_blocks,
            mid_block,
            up_blocks,
            conv_norm_out,
            conv_out,
        })
    }

    /// The device its weights live on.
    pub fn device(&self) -> diffuse_tensor::Device {
        self.conv_in.weight.tensor().device()
    }

    pub fn config(&self) -> &UNetConfig {
        &self.config
    }

    /// The network output for `sample` (N, in_channels, H, W) at `timesteps` (one per sample, or one for all;
    /// fractional values allowed; noise levels σ > 0 for a Fourier-embedded model, whose output is divided by
    /// them) with optional `class_labels` (one per sample; required exactly when the model has a class
    /// embedding). H and W must be divisible by 2^(levels − 1).
    pub fn forward(
        &self,
        sample: &Var,
        timesteps: &[f64],
        class_labels: Option<&[u32]>,
    ) -> Result<Var> {
        let t = self.per_sample_timesteps(sample, timesteps)?;
        let temb_act = self.embedding(sample, &t, class_labels)?.silu()?;
        let sample = if self.config.center_input_sample {
            sample.affine(2.0, -1.0)?
        } else {
            sample.clone()
        };
        let mut x = self.conv_in.forward(&sample)?;
        let mut skips = vec![x.clone()];
        for block in &self.down_blocks {
            x = block.forward(&x, &temb_act, &mut skips)?;
        }
        x = self.mid_block.forward(&x, Some(&temb_act))?;
        for block in &self.up_blocks {
            x = block.forward(&x, &temb_act, &mut skips)?;
        }
        let x = self.conv_norm_out.forward_silu(&x)?;
        let out = self.conv_out.forward(&x)?;
        if self.time_proj.is_none() {
            return Ok(out);
        }
        let sigma: Vec<f32> = t.iter().map(|&s| s as f32).collect();
        let sigma = Tensor::from_vec(sigma, &[t.len(), 1, 1, 1], out.tensor().device())?;
        Ok(out.div(&Var::constant(sigma))?)
    }

    /// One timestep per sample (a single one is repeated), checked: noise levels must be positive for a
    /// Fourier-embedded model.
    fn per_sample_timesteps(&self, sample: &Var, timesteps: &[f64]) -> Result<Vec<f64>> {
        let c = &self.config;
        let shape = sample.shape();
        if shape.len() != 4 || shape[1] != c.in_channels {
            return Err(Error::model(
                "UNet2DModel",
                format!(
                    "the sample must be (N, {}, H, W), got {shape:?}",
                    c.in_channels
                ),
            ));
        }
        let n = shape[0];
        let t: Vec<f64> = match timesteps.len() {
            1 => vec![timesteps[0]; n],
            len if len == n => timesteps.to_vec(),
            len => {
                return Err(Error::model(
                    "UNet2DModel",
                    format!("{len} timesteps for a batch of {n} samples (give one per sample, or one for all)"),
                ))
            }
        };
        if self.time_proj.is_some() {
            if let Some(bad) = t.iter().find(|&&s| !(s > 0.0 && s.is_finite())) {
                return Err(Error::model(
                    "UNet2DModel",
                    format!(
                        "a Fourier-embedded model takes noise levels σ > 0 as its timesteps (it embeds ln σ and \
                         divides by σ), got {bad}"
                    ),
                ));
            }
        }
        Ok(t)
    }

    /// The time embedding of each sample (at its timestep `t`), plus its class embedding when the model has one:
    /// (N, 4·C₀).
    fn embedding(&self, sample: &Var, t: &[f64], class_labels: Option<&[u32]>) -> Result<Var> {
        let c = &self.config;
        let n = t.len();
        let device = sample.tensor().device();
        let code = match &self.time_proj {
            Some(fourier) => fourier.code(t, device)?,
            None => timestep_code(
                t,
                c.block_out_channels[0],
                c.flip_sin_to_cos,
                c.freq_shift,
                device,
            )?,
        };
        let temb = self.time_embedding.forward(&Var::constant(code))?;
        match (&self.class_embedding, class_labels) {
            (None, None) => Ok(temb),
            (Some(table), Some(labels)) => {
                let num = table.weight.shape()[0];
                if labels.len() != n {
                    return Err(Error::model(
                        "UNet2DModel",
                        format!("{} class labels for a batch of {n} samples", labels.len()),
                    ));
                }
                if let Some(bad) = labels.iter().find(|&&l| l as usize >= num) {
                    return Err(Error::model(
                        "UNet2DModel",
                        format!("class label {bad} is out of range: the model has {num} class embeddings"),
                    ));
                }
                let ids: Vec<usize> = labels.iter().map(|&l| l as usize).collect();
                Ok(temb.add(&table.forward(&ids)?)?)
            }
            (Some(_), None) => Err(Error::model(
                "UNet2DModel",
                "this model is class-conditional (num_class_embeds is set): pass class labels",
            )),
            (None, Some(_)) => Err(Error::model(
                "UNet2DModel",
                "class labels given, but this model has no class embedding (num_class_embeds is null)",
            )),
        }
    }
}
