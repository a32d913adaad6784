//! A U-Net with the architecture, parameter names and files of diffusers' `UNet2DModel` (diffusers 0.42.1), for
//! the options listed in [`UNetConfig::validate`]; `docs/unet.md` walks through it.
//!
//! - [`config`]: `config.json` ([`UNetConfig`]) and the named architectures;
//! - [`embedding`]: the sinusoidal timestep code and its MLP;
//! - [`blocks`]: the down and up levels, built from the residual block, resampling and mid block of
//!   [`crate::layers`] (attention comes from [`diffuse_nn::SpatialSelfAttention`]);
//! - [`model`]: [`UNet2DModel`] and its forward pass; `io`: the diffusers folder (load and save).

pub mod blocks;
pub mod config;
pub mod embedding;
mod io;
pub mod model;

pub use crate::folder::{CONFIG_FILE, DIFFUSERS_WEIGHTS_FILE as WEIGHTS_FILE};
pub use config::{SampleSize, UNetConfig, NAMED_CONFIGS};
pub use model::UNet2DModel;
