//! A diffusion transformer with the architecture, parameter names and files of diffusers' `DiTTransformer2DModel`
//! (diffusers 0.42.1; Peebles & Xie 2023), for the options listed in [`DiTConfig::validate`]; `docs/dit.md` walks
//! through it.
//!
//! - [`config`]: `config.json` ([`DiTConfig`]) and the named architectures;
//! - [`embedding`]: patch embedding with the fixed 2-D sine-cosine positions, and the timestep + class conditioning;
//! - [`block`]: the transformer block with adaLN-Zero (its normalise-and-modulate and gated residual are fused
//!   kernels);
//! - [`model`]: [`DiTTransformer2DModel`], its forward pass and unpatchify;
//! - [`init`]: the DiT paper's initialisation (adaLN-Zero);
//! - [`flops`]: the cost of one forward pass.
//!
//! The diffusers folder (load and save) is [`crate::Backbone`]'s, through [`crate::folder`].

pub mod block;
pub mod config;
pub mod embedding;
pub mod flops;
pub mod init;
pub mod model;

pub use config::{DiTConfig, NAMED_CONFIGS};
pub use model::DiTTransformer2DModel;
