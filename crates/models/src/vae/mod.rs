//! An autoencoder with the architecture, parameter names and files of diffusers' `AutoencoderKL` (diffusers
//! 0.42.1), for the options listed in [`AutoencoderKLConfig::validate`]; `docs/latent.md` explains what it is for.
//!
//! - [`config`]: `config.json` ([`AutoencoderKLConfig`]) and the named architectures;
//! - [`encoder`], [`decoder`]: diffusers' `Encoder` and `Decoder`, built from the residual block, resampling and
//!   mid block of [`crate::layers`];
//! - [`posterior`]: [`DiagonalGaussian`], the encoder's output as a distribution (sample, mode, KL);
//! - [`model`]: [`AutoencoderKL`] (encode, decode, latent scaling, the diffusers folder);
//! - [`discriminator`]: [`PatchDiscriminator`], the adversarial critic of LDM's autoencoder training.

pub mod config;
pub mod decoder;
pub mod discriminator;
pub mod encoder;
pub mod model;
pub mod posterior;

pub use config::{AutoencoderKLConfig, NAMED_CONFIGS};
pub use discriminator::{PatchDiscriminator, PatchDiscriminatorConfig};
pub use model::AutoencoderKL;
pub use posterior::DiagonalGaussian;
