//! Training a denoising diffusion model: the pieces of one optimisation step, each in its own file.
//!
//! - [`target`]: ε-, x0- and v-prediction targets and the conversions between them;
//! - [`weighting`]: uniform and min-SNR-γ loss weights;
//! - [`hybrid`]: `L_simple + λ·L_vlb` for a network that also predicts its variance (Nichol & Dhariwal 2021);
//! - [`timesteps`]: uniform and loss-aware importance sampling of timesteps;
//! - [`random`]: how every random draw derives from `(seed, step)`, so that a resumed run replays exactly;
//! - [`config`]: [`TrainConfig`], the settings of a run;
//! - [`captions`]: [`CaptionContexts`], the frozen text encoder's states of every caption of a text-conditioned run;
//! - [`model`]: [`TrainableModel`], the network as the trainer sees it, and [`ModelDenoiser`] for sampling;
//! - [`trainer`]: [`Trainer`], one step (noise, forward, weighted MSE, backward, clip, AdamW, EMA);
//! - [`checkpoint`]: atomic checkpoint folders and resuming;
//! - [`collective`]: data-parallel training: the [`Collective`] engines, batch shards, gradient buckets;
//! - [`all_gather`]: the all-gather of rows across the ranks as an autograd operation (CLIP's batch-wide loss);
//! - [`overlap`]: the gradient all-reduce in buckets started during the backward pass;
//! - [`watchdog`]: a deadline around collectives, so a rank that died or hangs ends the job;
//! - `mpi_collective` (feature `mpi`): the ranks of `mpirun`;
//! - `nccl_collective` (feature `mpi`): the ranks of `mpirun`, one per GPU, summing gradients with NCCL.

pub mod all_gather;
pub mod captions;
pub mod checkpoint;
pub mod collective;
pub mod config;
pub mod hybrid;
pub mod model;
#[cfg(feature = "mpi")]
pub mod mpi_collective;
#[cfg(feature = "mpi")]
pub mod nccl_collective;
pub mod overlap;
pub mod random;
pub mod target;
pub mod timesteps;
pub mod trainer;
pub mod watchdog;
pub mod weighting;

pub use all_gather::all_gather_rows;
pub use captions::CaptionContexts;
pub use checkpoint::{latest_checkpoint, read_trainer_state, write_diffusers_model};
pub use collective::{Collective, Shard, SingleProcess};
pub use config::TrainConfig;
pub use model::{refuse_context, ModelDenoiser, TrainableModel};
#[cfg(feature = "mpi")]
pub use mpi_collective::MpiCollective;
#[cfg(feature = "mpi")]
pub use nccl_collective::NcclCollective;
pub use target::Prediction;
pub use timesteps::{LossHistory, TimestepSampler};
pub use trainer::{StepReport, Trainer, TrainerState};
pub use weighting::LossWeighting;
