//! The pieces diffusers' U-Nets and autoencoders share, each under diffusers' name and built from a path into a
//! parameter store so that the parameter names are diffusers' state-dict keys:
//!
//! - [`resnet`]: `ResnetBlock2D`, with or without a time embedding;
//! - [`resample`]: `Downsample2D` (stride-2 convolution) and `Upsample2D` (nearest 2× then a convolution);
//! - [`mid_block`]: `UNetMidBlock2D`, residual block, optional self-attention, residual block.
//!
//! Self-attention over a feature map is [`diffuse_nn::SpatialSelfAttention`].

pub mod mid_block;
pub mod resample;
pub mod resnet;

pub use mid_block::{MidBlockSettings, UNetMidBlock2D};
pub use resample::{Downsample2D, Upsample2D};
pub use resnet::ResnetBlock2D;
