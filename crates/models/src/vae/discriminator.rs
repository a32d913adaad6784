//! The patch discriminator of LDM's autoencoder training (the `NLayerDiscriminator` of pix2pix and taming
//! transformers): a small convolutional network that scores overlapping patches of an image as real (high) or
//! reconstructed (low), so that the adversarial loss judges texture locally rather than the whole image at once.
//!
//! ```text
//! x = LeakyReLU(conv₀(image))                     4×4, stride 2, pad 1: in_channels → C,      H → H/2
//! for k = 1 .. layers−1:
//!     x = LeakyReLU(norm_k(conv_k(x)))           4×4, stride 2, pad 1: C·m_{k−1} → C·m_k,   m_k = min(2ᵏ, 8)
//! x = LeakyReLU(norm_L(conv_L(x)))               4×4, stride 1, pad 1: C·m_{L−1} → C·m_L,   size − 1
//! logits = conv_out(x)                            4×4, stride 1, pad 1: → 1 channel,          size − 1
//! ```
//!
//! LeakyReLU has slope 0.2 below zero, written as `0.2·x + 0.8·max(x, 0)`. The original normalises with batch
//! norm; here each normalisation is a group norm (`groups` groups), which needs no running statistics and keeps a
//! sample's score independent of the rest of its batch. The normalised convolutions have no bias (the norm's shift
//! replaces it). On 28×28 images with two layers the logits are 5×5 patches, each seeing a 22×22 window.

use diffuse_autograd::Var;
use diffuse_nn::{Conv2d, GroupNorm, Module, ParamStore, Path};
use diffuse_tensor::{Conv2dParams, Error, Result};
use serde::{Deserialize, Serialize};

/// The shape of a [`PatchDiscriminator`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PatchDiscriminatorConfig {
    pub in_channels: usize,
    /// C, the width of the first convolution.
    pub channels: usize,
    /// The number of stride-2 convolutions (at least 1).
    pub layers: usize,
    /// Groups of every group norm (must divide every normalised width).
    pub groups: usize,
}

impl PatchDiscriminatorConfig {
    /// Width multiplier of layer `k`: `min(2ᵏ, 8)`.
    fn multiplier(k: usize) -> usize {
        (1usize << k.min(3)).min(8)
    }

    pub fn validate(&self) -> Result<()> {
        if self.in_channels == 0 || self.channels == 0 || self.layers == 0 || self.groups == 0 {
            return Err(Error::argument(
                "PatchDiscriminator",
                format!(
                    "in_channels, channels, layers and groups must all be at least 1: {self:?}"
                ),
            ));
        }
        for k in 1..=self.layers {
            let width = self.channels * Self::multiplier(k);
            if !width.is_multiple_of(self.groups) {
                return Err(Error::argument(
                    "PatchDiscriminator",
                    format!(
                        "{} groups do not divide the {width} channels of layer {k}",
                        self.groups
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// A convolution, optionally group-normalised, followed by LeakyReLU(0.2).
struct Stage {
    conv: Conv2d,
    norm: Option<GroupNorm>,
}

pub struct PatchDiscriminator {
    config: PatchDiscriminatorConfig,
    stages: Vec<Stage>,
    conv_out: Conv2d,
}

fn leaky_relu(x: &Var) -> Result<Var> {
    x.relu()?.mul_scalar(0.8)?.add(&x.mul_scalar(0.2)?)
}

impl PatchDiscriminator {
    /// Builds the discriminator in `store` (PyTorch's default initialisation): parameters `stages.k.conv.weight`,
    /// `stages.k.norm.{weight,bias}` (k ≥ 1), `conv_out.{weight,bias}`.
    pub fn new(config: PatchDiscriminatorConfig, store: &ParamStore) -> Result<PatchDiscriminator> {
        config.validate()?;
        let root = store.root();
        let conv = |path: &Path, cin, cout, stride, bias| {
            let params = Conv2dParams {
                stride: (stride, stride),
                padding: (1, 1),
                ..Conv2dParams::default()
            };
            Conv2d::new(path, cin, cout, (4, 4), params, bias)
        };
        let c = config.channels;
        let mut stages = Vec::with_capacity(config.layers + 1);
        let first = root.sub("stages").sub(0);
        stages.push(Stage {
            conv: conv(&first.sub("conv"), config.in_channels, c, 2, true)?,
            norm: None,
        });
        for k in 1..=config.layers {
            let p = root.sub("stages").sub(k);
            let (cin, cout) = (
                c * PatchDiscriminatorConfig::multiplier(k - 1),
                c * PatchDiscriminatorConfig::multiplier(k),
            );
            let stride = if k < config.layers { 2 } else { 1 };
            stages.push(Stage {
                conv: conv(&p.sub("conv"), cin, cout, stride, false)?,
                norm: Some(GroupNorm::new(&p.sub("norm"), config.groups, cout, 1e-5)?),
            });
        }
        let last = c * PatchDiscriminatorConfig::multiplier(config.layers);
        Ok(PatchDiscriminator {
            config,
            stages,
            conv_out: conv(&root.sub("conv_out"), last, 1, 1, true)?,
        })
    }

    pub fn config(&self) -> &PatchDiscriminatorConfig {
        &self.config
    }

    /// `images` (N, in_channels, H, W) → patch logits (N, 1, h, w).
    pub fn forward(&self, images: &Var) -> Result<Var> {
        let shape = images.shape();
        if shape.len() != 4 || shape[1] != self.config.in_channels {
            return Err(Error::shape(
                "PatchDiscriminator",
                format!(
                    "the images must be (N, {}, H, W), got {shape:?}",
                    self.config.in_channels
                ),
            ));
        }
        let mut x = images.clone();
        for stage in &self.stages {
            x = stage.conv.forward(&x)?;
            if let Some(norm) = &stage.norm {
                x = norm.forward(&x)?;
            }
            x = leaky_relu(&x)?;
        }
        self.conv_out.forward(&x)
    }
}
