//! Training the autoencoder of latent diffusion, and using it: LDM's recipe (Rombach et al. 2022) for diffusers'
//! `AutoencoderKL` ([`diffuse_models::vae`]), each piece in its own file.
//!
//! - [`config`]: [`AutoencoderTrainConfig`], the settings of a run;
//! - [`loss`]: reconstruction (L1 or MSE), perceptual distance, KL weight, hinge losses and the adaptive weight;
//! - [`trainer`]: [`AutoencoderTrainer`], one step (encode, sample, decode, the gradients at the reconstruction,
//!   one backward pass, AdamW, EMA, the discriminator's step);
//! - [`checkpoint`]: atomic checkpoint folders whose `vae/` and `ema/` are diffusers folders, and resuming;
//! - [`latents`]: posterior moments cached once per run, scaled latents drawn per step, the measured scaling factor
//!   (what `diffuse train --vae` uses).
//!
//! `docs/latent.md` derives the objective and says why latent diffusion is cheaper.

pub mod checkpoint;
pub mod config;
pub mod latents;
pub mod loss;
pub mod trainer;

pub use checkpoint::{read_autoencoder_state, EMA_DIR, LIVE_DIR};
pub use config::{AdversarialConfig, AutoencoderTrainConfig, Reconstruction};
pub use latents::{encode_posteriors, measure_scaling_factor, LatentSpace};
pub use trainer::{AutoencoderStepReport, AutoencoderTrainer, AutoencoderTrainerState, LossParts};
