//! [`ImageConditioned`]: a denoiser of `[x_t, extra]` seen by the samplers as a denoiser of `x_t`.

use crate::error::{Error, Result};
use crate::sampler::{Condition, Denoiser, Prediction};
use diffuse_tensor::Tensor;

/// Runs `model` on `x_t` with the fixed channels `extra` (`[n, E, H, W]`) concatenated after it, and, where `class`
/// is set, with those class labels instead of the sampler's (a super-resolution stage's augmentation level). A
/// batch that is a whole multiple of `n` (classifier-free guidance doubles it) sees `extra` repeated.
pub struct ImageConditioned<'a> {
    pub model: &'a dyn Denoiser,
    pub extra: Tensor,
    pub class: Option<Vec<u32>>,
}

impl Denoiser for ImageConditioned<'_> {
    fn predict(&self, x_t: &Tensor, t: &[f64], cond: Condition<'_>) -> Result<Tensor> {
        let (batch, n) = (x_t.shape()[0], self.extra.shape()[0]);
        if n == 0 || batch % n != 0 {
            return Err(Error::sampler(
                "extra",
                format!("{n} conditioning images for a batch of {batch} samples"),
            ));
        }
        let copies = batch / n;
        let repeated = |t: &Tensor| -> Result<Tensor> {
            match copies {
                1 => Ok(t.clone()),
                _ => Ok(Tensor::concat(&vec![t; copies], 0)?),
            }
        };
        let input = Tensor::concat(&[x_t, &repeated(&self.extra)?], 1)?;
        let class: Option<Vec<u32>> = self
            .class
            .as_ref()
            .map(|c| c.iter().copied().cycle().take(batch).collect());
        let cond = Condition {
            class: class.as_deref().or(cond.class),
            context: cond.context,
        };
        self.model.predict(&input, t, cond)
    }

    fn prediction(&self) -> Prediction {
        self.model.prediction()
    }
}
