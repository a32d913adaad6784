//! AdamW over a set of parameters, one fused in-place kernel step per parameter.

use diffuse_autograd::{Gradients, Var};
use diffuse_tensor::{AdamWConfig, Result, Tensor};

struct Slot {
    param: Var,
    m: Tensor,
    v: Tensor,
}

/// AdamW with PyTorch semantics (decoupled weight decay, bias-corrected moments).
pub struct AdamW {
    pub config: AdamWConfig,
    step: u64,
    slots: Vec<Slot>,
}

impl AdamW {
    /// PyTorch's defaults with learning rate `lr`: β = (0.9, 0.999), ε = 1e-8, weight decay 0.01.
    pub fn default_config(lr: f32) -> AdamWConfig {
        AdamWConfig {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.01,
        }
    }

    /// An optimiser for `params` with zeroed moment buffers.
    pub fn new(params: impl IntoIterator<Item = Var>, config: AdamWConfig) -> Result<AdamW> {
        let slots = params
            .into_iter()
            .map(|param| {
                let m = param.tensor().zeros_like()?;
                let v = param.tensor().zeros_like()?;
                Ok(Slot { param, m, v })
            })
            .collect::<Result<_>>()?;
        Ok(AdamW {
            config,
            step: 0,
            slots,
        })
    }

    /// Number of steps taken.
    pub fn steps(&self) -> u64 {
        self.step
    }

    /// One step on every parameter that has a gradient in `grads` (the others are left alone, as PyTorch skips
    /// parameters whose gradient is `None`).
    pub fn step(&mut self, grads: &Gradients) -> Result<()> {
        self.step += 1;
        for slot in &self.slots {
            if let Some(g) = grads.get(&slot.param) {
                slot.param
                    .tensor()
                    .adamw_step(g, &slot.m, &slot.v, &self.config, self.step)?;
            }
        }
        Ok(())
    }
}
