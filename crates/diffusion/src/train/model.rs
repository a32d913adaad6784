//! The network as the trainer sees it, and the sampler's view of a trained one.

use super::target::Prediction;
use crate::error::{Error, Result};
use crate::sampler::{Condition, Denoiser};
use diffuse_autograd::{no_grad, Var};
use diffuse_tensor::Tensor;

/// A denoising network that can be trained: a differentiable forward pass and a diffusers `config.json`.
pub trait TrainableModel {
    /// The network output for the noisy batch `sample` at per-sample `timesteps`, under the conditioning `cond`.
    fn forward(&self, sample: &Var, timesteps: &[f64], cond: Condition<'_>) -> Result<Var>;

    /// The model's configuration as the text of a diffusers `config.json`.
    fn config_json(&self) -> String;
}

/// A [`TrainableModel`] used for sampling: runs it without recording a graph. A network that also predicts its
/// variance (twice the input's channels out) gives the samplers its prediction, the first half of the channels, as
/// diffusers' `DiTPipeline` does.
pub struct ModelDenoiser<'a, M: TrainableModel> {
    pub model: &'a M,
    pub prediction: Prediction,
}

impl<M: TrainableModel> Denoiser for ModelDenoiser<'_, M> {
    fn predict(&self, x_t: &Tensor, t: &[f64], cond: Condition<'_>) -> Result<Tensor> {
        no_grad(|| {
            let out = self.model.forward(&Var::constant(x_t.clone()), t, cond)?;
            let channels = x_t.shape().get(1).copied().unwrap_or(0);
            if x_t.rank() >= 2 && out.shape().get(1) == Some(&(2 * channels)) {
                return Ok(out.tensor().narrow(1, 0, channels)?.contiguous()?);
            }
            Ok(out.tensor().clone())
        })
    }

    fn prediction(&self) -> Prediction {
        self.prediction
    }
}

/// Refuses a cross-attention context for a network that has no cross-attention.
pub fn refuse_context(cond: Condition<'_>, network: &str) -> Result<()> {
    match cond.context {
        Some(_) => Err(Error::model(
            network,
            "has no cross-attention, so it cannot be conditioned on a context (a prompt)",
        )),
        None => Ok(()),
    }
}

impl TrainableModel for diffuse_models::unet::UNet2DModel {
    fn forward(&self, sample: &Var, timesteps: &[f64], cond: Condition<'_>) -> Result<Var> {
        refuse_context(cond, "UNet2DModel")?;
        Ok(diffuse_models::unet::UNet2DModel::forward(
            self, sample, timesteps, cond.class,
        )?)
    }

    fn config_json(&self) -> String {
        self.config().to_json_string()
    }
}

impl TrainableModel for diffuse_models::Backbone {
    fn forward(&self, sample: &Var, timesteps: &[f64], cond: Condition<'_>) -> Result<Var> {
        Ok(diffuse_models::Backbone::forward(
            self,
            sample,
            timesteps,
            cond.class,
            cond.context,
        )?)
    }

    fn config_json(&self) -> String {
        self.config().to_json_string()
    }
}
