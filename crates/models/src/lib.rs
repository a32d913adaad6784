//! The networks of diffuse, each with the architecture, parameter names and folder format of its reference library,
//! so that a folder saved by diffusers or transformers loads here and one saved here loads there.
//!
//! - [`unet`]: diffusers' `UNet2DModel`, the pixel-space denoiser;
//! - [`unet_condition`]: diffusers' `UNet2DConditionModel`, the U-Net with cross-attention to a prompt (Stable
//!   Diffusion's denoiser);
//! - [`dit`]: diffusers' `DiTTransformer2DModel`, the diffusion transformer (patches, adaLN-Zero blocks);
//! - [`vae`]: diffusers' `AutoencoderKL`, which maps images to the latents of latent diffusion and back;
//! - [`clip`]: transformers' `CLIPTextModel` (Stable Diffusion's text encoder), `CLIPVisionModel`, `CLIPModel` and
//!   CLIP's tokenizer;
//! - [`layers`]: the residual block, resampling and mid block the U-Net and the autoencoder share;
//! - [`backbone`]: any of the denoising networks behind one forward pass and one config, for the processes and the
//!   command line;
//! - [`folder`]: what every network's folder shares: a `config.json` and a safetensors file of named tensors, read
//!   strictly and written atomically.
//!
//! The diffusion processes that train and sample these networks live one layer up, in `diffuse-diffusion`.

pub mod backbone;
pub mod clip;
mod config_json;
pub mod dit;
pub mod error;
pub mod folder;
pub mod layers;
pub mod unet;
pub mod unet_condition;
pub mod vae;

pub use backbone::{Backbone, BackboneConfig};
pub use error::{Error, Result};
