//! The U-Net as the samplers' [`Denoiser`].

use super::model::UNet2DModel;
use crate::error::Result;
use crate::sampler::{Denoiser, Prediction};
use diffuse_autograd::{no_grad, Var};
use diffuse_tensor::Tensor;

/// A trained U-Net and what its output means, run without recording a graph.
pub struct UNetDenoiser<'a> {
    pub unet: &'a UNet2DModel,
    pub prediction: Prediction,
}

impl Denoiser for UNetDenoiser<'_> {
    fn predict(&self, x_t: &Tensor, t: &[f64], class: Option<&[u32]>) -> Result<Tensor> {
        no_grad(|| {
            let out = self.unet.forward(&Var::constant(x_t.clone()), t, class)?;
            Ok(out.tensor().clone())
        })
    }

    fn prediction(&self) -> Prediction {
        self.prediction
    }
}
