//! Classifier-free guidance (Ho & Salimans 2022): one class-conditional network, trained to also denoise with a
//! "null" class, evaluated with and without the class; the outputs are extrapolated away from the unconditional one,
//! `ε̂ = ε_u + w·(ε_c − ε_u)` (`w = 1`: plain conditional; `w > 1`: stronger adherence to the class). Both passes run
//! as one batch of `2B` samples, the conditional half first. The combination is applied to whatever the network
//! predicts (ε, x0 or v), as diffusers' pipelines do; all three are affine in the score, so it means the same thing.

use super::{batch_of, Denoiser, Prediction};
use crate::error::{Error, Result};
use diffuse_tensor::Tensor;

/// A guided [`Denoiser`] around a class-conditional `model` whose unconditional class label is `null_class`.
pub struct ClassifierFreeGuidance<'a> {
    pub model: &'a dyn Denoiser,
    pub scale: f64,
    pub null_class: u32,
}

impl Denoiser for ClassifierFreeGuidance<'_> {
    /// Needs the class labels; calls the model once on `[x_t; x_t]` with labels `[class; null…]`.
    fn predict(&self, x_t: &Tensor, t: &[f64], class: Option<&[u32]>) -> Result<Tensor> {
        let Some(class) = class else {
            return Err(Error::sampler(
                "class",
                "classifier-free guidance needs class labels",
            ));
        };
        let batch = batch_of(x_t, Some(class))?;
        if t.len() != batch {
            return Err(Error::sampler(
                "t",
                format!("{} timesteps for a batch of {batch} samples", t.len()),
            ));
        }
        let x_both = Tensor::concat(&[x_t, x_t], 0)?;
        let t_both: Vec<f64> = t.iter().chain(t).copied().collect();
        let class_both: Vec<u32> = class
            .iter()
            .copied()
            .chain(std::iter::repeat_n(self.null_class, batch))
            .collect();
        let out = self.model.predict(&x_both, &t_both, Some(&class_both))?;
        let (cond, uncond) = (out.narrow(0, 0, batch)?, out.narrow(0, batch, batch)?);
        Ok(uncond.add(&cond.sub(&uncond)?.mul_scalar(self.scale as f32)?)?)
    }

    fn prediction(&self) -> Prediction {
        self.model.prediction()
    }
}
