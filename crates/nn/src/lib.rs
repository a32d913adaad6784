//! Neural-network building blocks on top of `diffuse-autograd`.
//!
//! Parameters live in a [`ParamStore`] under hierarchical names in the diffusers/PyTorch key style
//! (`down.0.conv1.weight`): a layer is built from a [`Path`] into the store and registers its parameters under it.
//! Parameters are autograd leaves whose tensors own their buffers, so the optimiser ([`AdamW`]) and checkpoint
//! loading ([`ParamStore::load`]) update them in place and every layer holding them sees the new values.
//! Parameters freeze and unfreeze by name prefix ([`ParamStore::freeze`]: no gradient, no optimiser update), and a
//! store copies to another device ([`ParamStore::to_device`]), where a model built again adopts the copies.
//!
//! Optimisers: [`AdamW`] and [`Sgd`] with momentum, both fused in-place kernel steps behind the [`Optimizer`] trait.
//! Training around them: [`LrSchedule`] (constant, linear warm-up, cosine to a floor), [`clip_grad_norm`] (global L2
//! norm), [`Ema`] (moving average of the weights with diffusers' decay warm-up), [`LossScaler`] (dynamic loss
//! scaling for f16), and optimiser state that saves and loads ([`AdamW::save_state`]) so a run resumes exactly.
//!
//! Initialisation follows PyTorch's defaults, drawn from the store's seeded Philox stream: weights of linear and
//! convolution layers Kaiming-uniform with `a = √5`, which is `U(−1/√fan_in, 1/√fan_in)`, biases with the same bound,
//! embeddings `N(0, 1)`, normalisation scales 1 and shifts 0.

mod attention;
mod checkpoint;
mod clip;
mod cross_attention;
mod dropout;
mod ema;
mod layers;
mod loss_scale;
mod lr;
mod optim;
mod optim_state;
mod sgd;
mod store;
mod token_attention;

pub use attention::SpatialSelfAttention;
pub use clip::{clip_grad_norm, grad_norm};
pub use cross_attention::CrossAttention;
pub use dropout::Dropout;
pub use ema::{ema_decay, Ema, EmaWarmup};
pub use layers::{Conv2d, Embedding, GroupNorm, LayerNorm, Linear, Module, SiLU, GELU};
pub use loss_scale::LossScaler;
pub use lr::LrSchedule;
pub use optim::{AdamW, Optimizer};
pub use sgd::{Sgd, SgdConfig};
pub use store::{Init, ParamStore, Path};
pub use token_attention::Attention;
