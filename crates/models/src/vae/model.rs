//! The whole autoencoder, diffusers' `AutoencoderKL`:
//!
//! ```text
//! encode:  q(z | x) = DiagonalGaussian(quant_conv(encoder(x)))          quant_conv: 1×1, 2L → 2L (optional)
//! decode:  x̂ = decoder(post_quant_conv(z))                              post_quant_conv: 1×1, L → L (optional)
//! forward: x̂ = decode(mode of encode(x)), or of a sample
//! ```
//!
//! A diffusion model sees `(z − shift_factor)·scaling_factor` ([`AutoencoderKL::scale_latents`]) and hands back
//! latents that [`AutoencoderKL::unscale_latents`] maps back before decoding, as diffusers' pipelines do.

use super::config::AutoencoderKLConfig;
use super::decoder::Decoder;
use super::encoder::Encoder;
use super::posterior::DiagonalGaussian;
use crate::error::{Error, Result};
use crate::folder::{load_weights, read_config, save_folder, DIFFUSERS_WEIGHTS_FILE};
use crate::layers::resnet::conv1x1;
use diffuse_autograd::{no_grad, Var};
use diffuse_nn::{Conv2d, Module, ParamStore};
use diffuse_tensor::{Device, Tensor};
use std::path::Path;

/// An autoencoder with exactly the structure and parameter names of diffusers' `AutoencoderKL` for the options
/// [`AutoencoderKLConfig::validate`] accepts.
pub struct AutoencoderKL {
    config: AutoencoderKLConfig,
    pub encoder: Encoder,
    pub decoder: Decoder,
    pub quant_conv: Option<Conv2d>,
    pub post_quant_conv: Option<Conv2d>,
}

impl AutoencoderKL {
    /// Builds the autoencoder for `config` (checked first), registering its parameters at the root of `store` with
    /// PyTorch's default initialisation.
    pub fn new(config: AutoencoderKLConfig, store: &ParamStore) -> Result<AutoencoderKL> {
        config.validate()?;
        let root = store.root();
        let latent = config.latent_channels;
        let encoder = Encoder::new(&root.sub("encoder"), &config)?;
        let decoder = Decoder::new(&root.sub("decoder"), &config)?;
        let quant_conv = config
            .use_quant_conv
            .then(|| conv1x1(&root.sub("quant_conv"), 2 * latent, 2 * latent))
            .transpose()?;
        let post_quant_conv = config
            .use_post_quant_conv
            .then(|| conv1x1(&root.sub("post_quant_conv"), latent, latent))
            .transpose()?;
        Ok(AutoencoderKL {
            config,
            encoder,
            decoder,
            quant_conv,
            post_quant_conv,
        })
    }

    /// Loads a diffusers `vae/` folder onto `device`: the autoencoder and the store holding its parameters.
    pub fn load_diffusers(dir: &Path, device: Device) -> Result<(AutoencoderKL, ParamStore)> {
        let config = read_config(dir, AutoencoderKLConfig::from_json_str)?;
        let store = ParamStore::new(0, device);
        let model = AutoencoderKL::new(config, &store)?;
        load_weights(&store, &dir.join(DIFFUSERS_WEIGHTS_FILE))?;
        Ok((model, store))
    }

    /// Writes this autoencoder's `config.json` and its parameters (from `store`, the store it was built in) as f32
    /// into `dir`, which is created if missing.
    pub fn save_diffusers(&self, store: &ParamStore, dir: &Path) -> Result<()> {
        save_folder(
            dir,
            &self.config.to_json_string(),
            store,
            DIFFUSERS_WEIGHTS_FILE,
        )
    }

    pub fn config(&self) -> &AutoencoderKLConfig {
        &self.config
    }

    /// Sets the latent scaling (after measuring it on training latents); the weights are unchanged.
    pub fn set_scaling(&mut self, scaling_factor: f64, shift_factor: Option<f64>) -> Result<()> {
        let mut config = self.config.clone();
        config.scaling_factor = scaling_factor;
        config.shift_factor = shift_factor;
        config.validate()?;
        self.config = config;
        Ok(())
    }

    /// The device its weights live on.
    pub fn device(&self) -> Device {
        self.encoder.conv_in.weight.tensor().device()
    }

    /// The encoder's moments, `quant_conv(encoder(x))`: (N, 2L, h, w).
    pub fn moments(&self, images: &Var) -> Result<Var> {
        let c = self.config.in_channels;
        let shape = images.shape();
        if shape.len() != 4 || shape[1] != c {
            return Err(Error::model(
                "AutoencoderKL",
                format!("the images must be (N, {c}, H, W), got {shape:?}"),
            ));
        }
        let h = self.encoder.forward(images)?;
        Ok(match &self.quant_conv {
            Some(conv) => conv.forward(&h)?,
            None => h,
        })
    }

    /// The posterior q(z | x) of each image of `images` (N, in_channels, H, W).
    pub fn encode(&self, images: &Var) -> Result<DiagonalGaussian> {
        Ok(DiagonalGaussian::from_moments(&self.moments(images)?)?)
    }

    /// The activations of the decoder's last convolution for latents `z` (N, L, h, w) (see [`Decoder::features`]).
    pub fn decoder_features(&self, z: &Var) -> Result<Var> {
        let l = self.config.latent_channels;
        let shape = z.shape();
        if shape.len() != 4 || shape[1] != l {
            return Err(Error::model(
                "AutoencoderKL",
                format!("the latents must be (N, {l}, h, w), got {shape:?}"),
            ));
        }
        let z = match &self.post_quant_conv {
            Some(conv) => conv.forward(z)?,
            None => z.clone(),
        };
        Ok(self.decoder.features(&z)?)
    }

    /// The images decoded from latents `z` (N, L, h, w) (unscaled: the encoder's own latent space).
    pub fn decode(&self, z: &Var) -> Result<Var> {
        Ok(self.decoder.conv_out.forward(&self.decoder_features(z)?)?)
    }

    /// diffusers' `AutoencoderKL.forward`: the decoded mode of each image's posterior (with `noise`, the decoded
    /// sample `μ + σ·noise` instead). Returns the posterior too.
    pub fn forward(&self, images: &Var, noise: Option<&Tensor>) -> Result<(DiagonalGaussian, Var)> {
        let posterior = self.encode(images)?;
        let z = match noise {
            Some(noise) => posterior.sample_with(noise)?,
            None => posterior.mode().clone(),
        };
        let decoded = self.decode(&z)?;
        Ok((posterior, decoded))
    }

    /// Inference: the posterior mean and (clamped) log-variance of `images`, without recording a graph.
    pub fn encode_tensor(&self, images: &Tensor) -> Result<(Tensor, Tensor)> {
        no_grad(|| {
            let posterior = self.encode(&Var::constant(images.clone()))?;
            Ok((
                posterior.mean.tensor().clone(),
                posterior.logvar.tensor().clone(),
            ))
        })
    }

    /// Inference: the images decoded from latents `z` (unscaled), without recording a graph.
    pub fn decode_tensor(&self, z: &Tensor) -> Result<Tensor> {
        no_grad(|| Ok(self.decode(&Var::constant(z.clone()))?.tensor().clone()))
    }

    /// The latents a diffusion model sees: `(z − shift_factor)·scaling_factor`.
    pub fn scale_latents(&self, z: &Tensor) -> Result<Tensor> {
        let scale = self.config.scaling_factor as f32;
        let shift = self.config.shift_factor.unwrap_or(0.0) as f32;
        Ok(z.affine(scale, -shift * scale)?)
    }

    /// The inverse of [`AutoencoderKL::scale_latents`]: `z/scaling_factor + shift_factor`.
    pub fn unscale_latents(&self, latents: &Tensor) -> Result<Tensor> {
        let scale = self.config.scaling_factor as f32;
        let shift = self.config.shift_factor.unwrap_or(0.0) as f32;
        Ok(latents.affine(1.0 / scale, shift)?)
    }
}
