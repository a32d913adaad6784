//! Classifier-free guidance (Ho & Salimans 2022): one conditional network, trained to also denoise without its
//! condition (a "null" class, or the empty prompt's context), evaluated with and without it; the outputs are
//! extrapolated away from the unconditional one, `ε̂ = ε_u + w·(ε_c − ε_u)` (`w = 1`: plain conditional; `w > 1`:
//! stronger adherence to the condition). This is diffusers' convention; Ho & Salimans write the same combination as
//! `(1 + w')·ε_c − w'·ε_u` with `w' = w − 1`. Both passes run as one batch of `2B` samples, the conditional half
//! first. The combination is applied to whatever the network predicts (ε, x0 or v), as diffusers' pipelines do; all
//! three are affine in the score, so it means the same thing. Of a learned-variance output (twice the channels) only the
//! prediction half is guided; the variance half is the conditional one.

use super::{batch_of, Condition, Denoiser, Prediction};
use crate::error::{Error, Result};
use diffuse_tensor::Tensor;

/// A guided [`Denoiser`] around a conditional `model`. What "unconditional" means is given per part of the
/// condition: the class label `null_class` stands for "no class", the context `null_context` (`(1, L, D)`, shared
/// by every sample, or `(N, L, D)`, e.g. negative prompts) for "no prompt". A part the condition carries must have
/// its unconditional stand-in.
pub struct ClassifierFreeGuidance<'a> {
    pub model: &'a dyn Denoiser,
    pub scale: f64,
    pub null_class: Option<u32>,
    pub null_context: Option<Tensor>,
}

impl ClassifierFreeGuidance<'_> {
    /// The unconditional context for a batch of `batch`: `null_context` repeated (when it is `(1, L, D)`) or as is.
    fn null_context_for(&self, context: &Tensor, batch: usize) -> Result<Tensor> {
        let Some(null) = &self.null_context else {
            return Err(Error::sampler(
                "null_context",
                "classifier-free guidance with a context needs the unconditional (empty-prompt) context",
            ));
        };
        if null.rank() != 3 || null.shape()[1..] != context.shape()[1..] {
            return Err(Error::sampler(
                "null_context",
                format!(
                    "shape {:?} does not fit the context's {:?}",
                    null.shape(),
                    context.shape()
                ),
            ));
        }
        match null.shape()[0] {
            n if n == batch => Ok(null.clone()),
            1 => Ok(Tensor::concat(&vec![null; batch], 0)?),
            n => Err(Error::sampler(
                "null_context",
                format!("{n} unconditional contexts for a batch of {batch} samples"),
            )),
        }
    }
}

impl Denoiser for ClassifierFreeGuidance<'_> {
    /// Calls the model once on `[x_t; x_t]` with the condition in the first half and its unconditional stand-in in
    /// the second.
    fn predict(&self, x_t: &Tensor, t: &[f64], cond: Condition<'_>) -> Result<Tensor> {
        if cond.class.is_none() && cond.context.is_none() {
            return Err(Error::sampler(
                "class",
                "classifier-free guidance needs class labels or a context to guide towards",
            ));
        }
        let batch = batch_of(x_t, cond)?;
        if t.len() != batch {
            return Err(Error::sampler(
                "t",
                format!("{} timesteps for a batch of {batch} samples", t.len()),
            ));
        }
        let x_both = Tensor::concat(&[x_t, x_t], 0)?;
        let t_both: Vec<f64> = t.iter().chain(t).copied().collect();
        let class_both: Option<Vec<u32>> = match cond.class {
            Some(class) => {
                let null = self.null_class.ok_or_else(|| {
                    Error::sampler(
                        "null_class",
                        "classifier-free guidance on class labels needs the null class",
                    )
                })?;
                Some(
                    class
                        .iter()
                        .copied()
                        .chain(std::iter::repeat_n(null, batch))
                        .collect(),
                )
            }
            None => None,
        };
        let context_both = match cond.context {
            Some(context) => Some(Tensor::concat(
                &[context, &self.null_context_for(context, batch)?],
                0,
            )?),
            None => None,
        };
        let both = Condition {
            class: class_both.as_deref(),
            context: context_both.as_ref(),
        };
        let out = self.model.predict(&x_both, &t_both, both)?;
        let (cond, uncond) = (out.narrow(0, 0, batch)?, out.narrow(0, batch, batch)?);
        let guide = |c: &Tensor, u: &Tensor| -> Result<Tensor> {
            Ok(u.add(&c.sub(u)?.mul_scalar(self.scale as f32)?)?)
        };
        let channels = x_t.shape().get(1).copied();
        match channels {
            // A learned variance (twice the channels): guide the prediction, keep the conditional variance, as
            // diffusers' DiT pipeline does.
            Some(c) if out.rank() == x_t.rank() && out.shape()[1] == 2 * c => {
                let prediction = guide(&cond.narrow(1, 0, c)?, &uncond.narrow(1, 0, c)?)?;
                Ok(Tensor::concat(&[&prediction, &cond.narrow(1, c, c)?], 1)?)
            }
            _ => guide(&cond, &uncond),
        }
    }

    fn prediction(&self) -> Prediction {
        self.model.prediction()
    }
}
