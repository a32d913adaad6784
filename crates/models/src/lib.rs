//! The networks of diffuse, each with the architecture, parameter names and folder format of its reference library,
//! so that a folder saved by diffusers or transformers loads here and one saved here loads there.
//!
//! - [`unet`]: diffusers' `UNet2DModel`, the pixel-space denoiser;
//! - [`dit`]: diffusers' `DiTTransformer2DModel`, the diffusion transformer (patches, adaLN-Zero blocks);
//! - [`backbone`]: any of the denoising networks behind one forward pass and one config, for the processes and the
//!   command line;
//! - [`folder`]: what every network's folder shares: a `config.json` and a safetensors file of named tensors, read
//!   strictly and written atomically.
//!
//! The diffusion processes that train and sample these networks live one layer up, in `diffuse-diffusion`.

pub mod backbone;
pub mod dit;
pub mod error;
pub mod folder;
pub mod unet;

pub use backbone::{Backbone, BackboneConfig};
pub use error::{Error, Result};
