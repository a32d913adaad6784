//! What a denoiser is conditioned on, per sample: a class label, a cross-attention context (a text encoder's hidden
//! states), both, or nothing.

use crate::error::{Error, Result};
use diffuse_tensor::Tensor;

/// The conditioning of one batch. Every part that is present has one entry per sample (dimension 0 of `context`).
#[derive(Clone, Copy, Debug, Default)]
pub struct Condition<'a> {
    /// Class labels, one per sample.
    pub class: Option<&'a [u32]>,
    /// Cross-attention context `(N, L, D)`: the states the network's cross-attention layers attend to, e.g. the
    /// `last_hidden_state` of a CLIP text encoder for each sample's prompt.
    pub context: Option<&'a Tensor>,
}

impl<'a> Condition<'a> {
    /// No conditioning: an unconditional model.
    pub const NONE: Condition<'static> = Condition {
        class: None,
        context: None,
    };

    /// Conditioning on class labels only.
    pub fn class(labels: &'a [u32]) -> Self {
        Condition {
            class: Some(labels),
            context: None,
        }
    }

    /// Conditioning on class labels when there are some.
    pub fn class_opt(labels: Option<&'a [u32]>) -> Self {
        Condition {
            class: labels,
            context: None,
        }
    }

    /// Refuses a part that does not hold exactly `batch` entries.
    pub fn check_batch(&self, batch: usize) -> Result<()> {
        if let Some(class) = self.class {
            if class.len() != batch {
                return Err(Error::sampler(
                    "class",
                    format!("{} labels for a batch of {batch} samples", class.len()),
                ));
            }
        }
        if let Some(context) = self.context {
            if context.rank() != 3 || context.shape()[0] != batch {
                return Err(Error::sampler(
                    "context",
                    format!(
                        "must be (N, L, D) with N = {batch} samples, got shape {:?}",
                        context.shape()
                    ),
                ));
            }
        }
        Ok(())
    }
}
