//! The diffusion layer of diffuse: the processes that train and sample a denoising network (the networks themselves
//! live in `diffuse-models`).
//!
//! - [`data`]: image datasets (IDX files as used by MNIST / Fashion-MNIST / KMNIST, or a folder of PNGs), normalised to
//!   `[-1, 1]`, with deterministic shuffling and batching.
//! - [`schedule`]: discrete noise schedules (betas, alphas, cumulative products) computed in `f64` exactly as diffusers'
//!   `DDPMScheduler` defines them, inference timestep spacings, Karras sigmas, and diffusers `scheduler_config.json`.
//! - [`forward`]: the forward process q(x_t | x_0), sampled in one fused pass.
//! - [`learned_range`]: the learned-range variance of a network that predicts its own (Nichol & Dhariwal 2021), for
//!   the hybrid loss and the DDPM sampler.
//! - [`sampler`]: reverse-process samplers (DDPM, DDIM, PNDM, Euler, Euler ancestral, Heun, LMS, DPM-Solver,
//!   UniPC), each as the diffusers scheduler class of the same name runs it and built from its `scheduler_config.json`,
//!   driving any [`sampler::Denoiser`], and classifier-free guidance.
//! - [`edit`]: image-to-image (SDEdit) and inpainting (RePaint) with any trained denoiser and sampler.
//! - [`image_condition`]: denoisers that also see an image as extra input channels: the super-resolution stage of a
//!   cascade (with noise-conditioning augmentation) and the trained inpainting network; box, bilinear and bicubic
//!   resizing.
//! - [`pipeline`]: the folders a sampling run starts from (diffusers pipelines with `model_index.json`, model
//!   folders, training runs and checkpoints).
//! - [`train`]: training: prediction targets, loss weighting, timestep sampling, the training step, EMA and
//!   atomic, exactly resumable checkpoints.
//! - [`sde`]: score-based models: the VE, VP and sub-VP SDEs, denoising score matching, annealed Langevin
//!   dynamics, predictor–corrector sampling, the probability-flow ODE with an adaptive RK45 solver, and exact
//!   likelihoods.
//! - [`distill`]: few-step students: progressive distillation, consistency distillation and consistency training,
//!   and multistep consistency sampling.
//! - [`autoencoder`]: training diffusers' `AutoencoderKL` with LDM's objective, and the cached, scaled latents that
//!   latent diffusion trains on.
//! - [`contrastive`]: CLIP's contrastive pre-training on captioned images (the captions, the tokenizer trained on them,
//!   both towers), with zero-shot and retrieval evaluation.
//! - [`eval`]: metrics of generated images (Fréchet distance, classifier accuracy, Inception-style score,
//!   precision/recall in a classifier's feature space) and the variational bound in bits per dimension.
//! - [`rng`]: a tiny, seedable, reproducible random number generator (SplitMix64) so that every shuffle and flip can be
//!   replayed from a `u64` seed.

pub mod autoencoder;
pub mod contrastive;
pub mod data;
pub mod distill;
pub mod edit;
pub mod error;
pub mod eval;
pub mod forward;
pub mod image_condition;
pub mod learned_range;
pub mod pipeline;
pub mod rng;
pub mod sampler;
pub mod schedule;
pub mod sde;
pub mod train;

pub use error::{Error, Result};
