//! The whole network, diffusers' `UNet2DConditionModel` (Stable Diffusion's denoiser) for the block types
//! `CrossAttnDownBlock2D`, `DownBlock2D`, `UNetMidBlock2DCrossAttn`, `CrossAttnUpBlock2D`, `UpBlock2D`:
//!
//! ```text
//! temb = time_embedding(code(t)) (+ class_embedding[label])     (N, T), T = time_embedding_dim or 4·C₀
//! x    = conv_in(sample)                                       (N, C₀, H, W)        skip 0
//! down: x = down_blocks[i](x, c)        residual blocks, each followed by a Transformer2DModel attending to the
//!                                       context c (N, L, D) in the CrossAttn kind; halves H, W except the last level
//! mid:  x = resnets.1(transformer(resnets.0(x), c))
//! up:   x = up_blocks[i](x ⧺ skips, c)  doubles H, W except the last level
//! out  = conv_out(SiLU(conv_norm_out(x)))                      (N, out_channels, H, W)
//! ```
//!
//! The residual blocks, resampling, skips and the timestep code are [`crate::unet`]'s; the levels are its
//! [`DownBlock`] / [`UpBlock`] with a [`Transformer2DModel`] as their attention.

use super::config::UNet2DConditionConfig;
use super::transformer::{Transformer2DModel, TransformerSettings};
use crate::error::{Error, Result};
use crate::layers::resnet::conv3x3;
use crate::layers::ResnetBlock2D;
use crate::unet::blocks::{
    AttentionBuilder, BlockSettings, DownBlock, DownChannels, UpBlock, UpChannels,
};
use crate::unet::embedding::{timestep_code, TimestepEmbedding};
use diffuse_autograd::Var;
use diffuse_nn::{Conv2d, Embedding, GroupNorm, Module, ParamStore, Path};

/// diffusers' `UNetMidBlock2DCrossAttn` with one layer: residual block, transformer, residual block.
pub struct UNetMidBlock2DCrossAttn {
    pub resnets: [ResnetBlock2D; 2],
    pub attention: Transformer2DModel,
}

impl UNetMidBlock2DCrossAttn {
    fn forward(&self, x: &Var, temb_act: &Var, context: &Var) -> Result<Var> {
        let x = self.resnets[0].forward(x, Some(temb_act))?;
        let x = self.attention.forward(&x, context)?;
        Ok(self.resnets[1].forward(&x, Some(temb_act))?)
    }
}

/// A U-Net with cross-attention, with exactly the structure and parameter names of diffusers'
/// `UNet2DConditionModel` for the supported subset of its options (see [`UNet2DConditionConfig::validate`]).
pub struct UNet2DConditionModel {
    config: UNet2DConditionConfig,
    pub conv_in: Conv2d,
    pub time_embedding: TimestepEmbedding,
    pub class_embedding: Option<Embedding>,
    pub down_blocks: Vec<DownBlock<Transformer2DModel>>,
    pub mid_block: UNetMidBlock2DCrossAttn,
    pub up_blocks: Vec<UpBlock<Transformer2DModel>>,
    pub conv_norm_out: GroupNorm,
    pub conv_out: Conv2d,
}

impl UNet2DConditionModel {
    /// Builds the network for `config` (checked first), registering its parameters at the root of `store` with
    /// PyTorch's default initialisation, in diffusers' order of creation.
    pub fn new(config: UNet2DConditionConfig, store: &ParamStore) -> Result<UNet2DConditionModel> {
        config.validate()?;
        let root = store.root();
        let channels = &config.block_out_channels;
        let levels = channels.len();
        let temb = config.time_embed_dim();
        let groups = config.groups();
        let settings = BlockSettings {
            temb_channels: temb,
            groups,
            eps: config.norm_eps as f32,
            head_dim: None,
        };
        let config_ref = &config;
        let transformer = |level: usize| {
            move |path: &Path, c: usize| {
                Transformer2DModel::new(
                    path,
                    &TransformerSettings {
                        channels: c,
                        heads: config_ref.attention_head_dim.at(level),
                        context_dim: config_ref.cross_attention_dim.at(level),
                        layers: config_ref.transformer_layers_per_block.at(level),
                        groups,
                        linear_projection: config_ref.use_linear_projection,
                    },
                )
            }
        };

        let conv_in = conv3x3(&root.sub("conv_in"), config.in_channels, channels[0], 1, 1)?;
        let time_embedding =
            TimestepEmbedding::new(&root.sub("time_embedding"), channels[0], temb)?;
        let class_embedding = config
            .num_class_embeds
            .map(|num| Embedding::new(&root.sub("class_embedding"), num, temb))
            .transpose()?;

        let mut down_blocks = Vec::with_capacity(levels);
        for (i, kind) in config.down_block_types.iter().enumerate() {
            let build = transformer(i);
            let attention: AttentionBuilder<Transformer2DModel> = &build;
            down_blocks.push(DownBlock::new(
                &root.sub("down_blocks").sub(i),
                &settings,
                DownChannels {
                    input: channels[i.saturating_sub(1)],
                    out: channels[i],
                },
                config.layers_per_block.at(i),
                (kind == "CrossAttnDownBlock2D").then_some(attention),
                (i + 1 < levels).then_some(config.downsample_padding),
            )?);
        }

        let mid = root.sub("mid_block");
        let inner = channels[levels - 1];
        let resnet = |j: usize| settings.resnet(&mid.sub("resnets").sub(j), inner, inner);
        let resnet0 = resnet(0)?;
        let attention = transformer(levels - 1)(&mid.sub("attentions").sub(0), inner)?;
        let mid_block = UNetMidBlock2DCrossAttn {
            resnets: [resnet0, resnet(1)?],
            attention,
        };

        let mut up_blocks = Vec::with_capacity(levels);
        for (i, kind) in config.up_block_types.iter().enumerate() {
            let level = levels - 1 - i;
            let build = transformer(level);
            let attention: AttentionBuilder<Transformer2DModel> = &build;
            up_blocks.push(UpBlock::new(
                &root.sub("up_blocks").sub(i),
                &settings,
                UpChannels {
                    prev_output: channels[(level + 1).min(levels - 1)],
                    out: channels[level],
                    last_skip: channels[level.saturating_sub(1)],
                },
                config.layers_per_block.at(level) + 1,
                (kind == "CrossAttnUpBlock2D").then_some(attention),
                level > 0,
            )?);
        }

        let conv_norm_out = GroupNorm::new(
            &root.sub("conv_norm_out"),
            groups,
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
        Ok(UNet2DConditionModel {
            config,
            conv_in,
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

    pub fn config(&self) -> &UNet2DConditionConfig {
        &self.config
    }

    /// The network output for `sample` (N, in_channels, H, W) at `timesteps` (one per sample, or one for all;
    /// fractional values allowed), attending to `context` (N, L, cross_attention_dim: diffusers'
    /// `encoder_hidden_states`), with `class_labels` exactly when the model has a class embedding. H and W must be
    /// divisible by 2^(levels − 1).
    pub fn forward(
        &self,
        sample: &Var,
        timesteps: &[f64],
        context: &Var,
        class_labels: Option<&[u32]>,
    ) -> Result<Var> {
        let c = &self.config;
        let shape = sample.shape();
        if shape.len() != 4 || shape[1] != c.in_channels {
            return Err(Error::model(
                "UNet2DConditionModel",
                format!(
                    "the sample must be (N, {}, H, W), got {shape:?}",
                    c.in_channels
                ),
            ));
        }
        let n = shape[0];
        let context_dim = c.context_dim();
        match context.shape() {
            &[cn, len, d] if cn == n && len > 0 && d == context_dim => {}
            other => {
                return Err(Error::model(
                    "UNet2DConditionModel",
                    format!(
                        "the context (encoder_hidden_states) must be (N = {n}, L ≥ 1, cross_attention_dim = \
                         {context_dim}), got {other:?}"
                    ),
                ))
            }
        }
        let t: Vec<f64> = match timesteps.len() {
            1 => vec![timesteps[0]; n],
            len if len == n => timesteps.to_vec(),
            len => {
                return Err(Error::model(
                    "UNet2DConditionModel",
                    format!("{len} timesteps for a batch of {n} samples (give one per sample, or one for all)"),
                ))
            }
        };
        let temb_act = self.embedding(sample, &t, class_labels)?.silu()?;
        let sample = if c.center_input_sample {
            sample.affine(2.0, -1.0)?
        } else {
            sample.clone()
        };
        let mut x = self.conv_in.forward(&sample)?;
        let mut skips = vec![x.clone()];
        for block in &self.down_blocks {
            x = block.forward(&x, &temb_act, Some(context), &mut skips)?;
        }
        x = self.mid_block.forward(&x, &temb_act, context)?;
        for block in &self.up_blocks {
            x = block.forward(&x, &temb_act, Some(context), &mut skips)?;
        }
        let x = self.conv_norm_out.forward(&x)?.silu()?;
        Ok(self.conv_out.forward(&x)?)
    }

    /// The time embedding of each sample, plus its class embedding when the model has one: (N, T).
    fn embedding(&self, sample: &Var, t: &[f64], class_labels: Option<&[u32]>) -> Result<Var> {
        let c = &self.config;
        let code = timestep_code(
            t,
            c.block_out_channels[0],
            c.flip_sin_to_cos,
            c.freq_shift,
            sample.tensor().device(),
        )?;
        let temb = self.time_embedding.forward(&Var::constant(code))?;
        match (&self.class_embedding, class_labels) {
            (None, None) => Ok(temb),
            (Some(table), Some(labels)) => {
                let num = table.weight.shape()[0];
                if labels.len() != t.len() {
                    return Err(Error::model(
                        "UNet2DConditionModel",
                        format!("{} class labels for a batch of {} samples", labels.len(), t.len()),
                    ));
                }
                if let Some(bad) = labels.iter().find(|&&l| l as usize >= num) {
                    return Err(Error::model(
                        "UNet2DConditionModel",
                        format!("class label {bad} is out of range: the model has {num} class embeddings"),
                    ));
                }
                let ids: Vec<usize> = labels.iter().map(|&l| l as usize).collect();
                Ok(temb.add(&table.forward(&ids)?)?)
            }
            (Some(_), None) => Err(Error::model(
                "UNet2DConditionModel",
                "this model is class-conditional (num_class_embeds is set): pass class labels",
            )),
            (None, Some(_)) => Err(Error::model(
                "UNet2DConditionModel",
                "class labels given, but this model has no class embedding (num_class_embeds is null)",
            )),
        }
    }
}
