//! A U-Net with cross-attention to a context (a prompt's text-encoder states), with the architecture, parameter
//! names and files of diffusers' `UNet2DConditionModel` (diffusers 0.42.1), Stable Diffusion's denoiser, for the
//! options listed in [`UNet2DConditionConfig::validate`]; `docs/text-to-image.md` walks through it.
//!
//! - [`config`]: `config.json` ([`UNet2DConditionConfig`]), every diffusers argument by name;
//! - [`feed_forward`]: the GEGLU feed-forward of a transformer block;
//! - [`transformer`]: `Transformer2DModel` and `BasicTransformerBlock` (self-attention, cross-attention,
//!   feed-forward, three layer norms);
//! - [`model`]: [`UNet2DConditionModel`], built from [`crate::unet`]'s levels with a transformer as their
//!   attention; `io`: the diffusers folder (load and save).

pub mod config;
pub mod feed_forward;
mod io;
pub mod model;
pub mod transformer;

pub use config::{PerLevel, UNet2DConditionConfig, NAMED_CONFIGS};
pub use model::UNet2DConditionModel;
