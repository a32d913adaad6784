//! Dynamic loss scaling for half-precision training, with the semantics of PyTorch's `torch.amp.GradScaler`.
//!
//! Small gradients underflow in f16 (below 2⁻²⁴ they are zero). Multiplying the loss by a large scale `S` lifts
//! every gradient by `S` through the chain rule; the gradients are divided by `S` again before the optimiser sees
//! them. Too large a scale overflows instead, which shows as an infinite or NaN gradient; then the step is skipped
//! and the scale halved. After `growth_interval` steps in a row without overflow the scale doubles, so it hovers
//! just below the largest value that does not overflow:
//!
//! ```text
//! loss·S → backward → g/S → all finite? → optimiser step, good += 1, if good = interval { S ← 2S, good ← 0 }
//!                                 └ no → skip the step,               S ← S/2, good ← 0
//! ```

use crate::optim::Optimizer;
use diffuse_autograd::{Gradients, Var};
use diffuse_tensor::{Error, Result};
use serde::{Deserialize, Serialize};

/// The loss scale and the count of overflow-free steps since it last changed (serialisable, so a training run's
/// checkpoint can carry it).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LossScaler {
    scale: f32,
    growth_interval: u32,
    good_steps: u32,
}

impl Default for LossScaler {
    /// PyTorch's defaults: scale 2¹⁶, doubled after 2000 good steps.
    fn default() -> LossScaler {
        LossScaler {
            scale: 65536.0,
            growth_interval: 2000,
            good_steps: 0,
        }
    }
}

impl LossScaler {
    /// A scaler starting at `init_scale` (positive, finite) that doubles it after `growth_interval` (≥ 1)
    /// overflow-free steps.
    pub fn new(init_scale: f32, growth_interval: u32) -> Result<LossScaler> {
        if !(init_scale > 0.0 && init_scale.is_finite()) || growth_interval == 0 {
            return Err(Error::argument(
                "LossScaler",
                format!("the scale must be positive and finite and the growth interval at least 1, got scale {init_scale} and interval {growth_interval}"),
            ));
        }
        Ok(LossScaler {
            scale: init_scale,
            growth_interval,
            good_steps: 0,
        })
    }

    /// The current scale `S`.
    pub fn scale(&self) -> f32 {
        self.scale
    }

    /// Overflow-free steps since the scale last changed.
    pub fn good_steps(&self) -> u32 {
        self.good_steps
    }

    /// `loss·S`, to back-propagate instead of `loss`.
    pub fn scale_loss(&self, loss: &Var) -> Result<Var> {
        loss.mul_scalar(self.scale)
    }

    /// Divides every gradient by `S` (multiplies by `1/S`, rounded once in f64 as PyTorch does) and returns whether
    /// all of them are finite afterwards.
    pub fn unscale(&self, grads: &mut Gradients) -> Result<bool> {
        let inv_scale = (1.0 / f64::from(self.scale)) as f32;
        let mut finite = true;
        for g in grads.tensors_mut() {
            *g = g.mul_scalar(inv_scale)?;
            // 0·x is 0 for every finite x and NaN for ±∞ and NaN, so the sum is 0 exactly when all are finite.
            finite &= g.mul_scalar(0.0)?.sum_all()?.to_scalar()? == 0.0;
        }
        Ok(finite)
    }

    /// Adjusts the scale after a step whose gradients were `finite` or not (halve on overflow; double after
    /// `growth_interval` good steps in a row).
    pub fn update(&mut self, finite: bool) {
        if finite {
            self.good_steps += 1;
            if self.good_steps == self.growth_interval {
                // Doubling past f32::MAX would give an infinite scale that halving never brings back (inf / 2 =
                // inf), so every later step would overflow and be skipped: the scale stops at the largest doubling
                // that stays finite.
                if (self.scale * 2.0).is_finite() {
                    self.scale *= 2.0;
                }
                self.good_steps = 0;
            }
        } else {
            self.scale *= 0.5;
            self.good_steps = 0;
        }
    }

    /// Unscales `grads` (gradients of the scaled loss), steps `optimizer` unless one of them is not finite, and
    /// updates the scale. Returns whether the step was taken.
    pub fn step(&mut self, optimizer: &mut impl Optimizer, grads: &mut Gradients) -> Result<bool> {
        let finite = self.unscale(grads)?;
        if finite {
            optimizer.step(grads)?;
        }
        self.update(finite);
        Ok(finite)
    }
}
