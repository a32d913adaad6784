//! AdamW over a set of parameters, one fused in-place kernel step per parameter.
//!
//! The optimiser's state (step count and both moment buffers of every parameter) saves to and loads from one
//! safetensors file, `exp_avg.NAME` and `exp_avg_sq.NAME` per parameter (PyTorch's names for m and v) and the step in
//! the file's metadata, so a resumed run continues exactly where it stopped.

use crate::optim_state;
use crate::store::ParamStore;
use diffuse_autograd::{Gradients, Var};
use diffuse_tensor::{AdamWConfig, Result, Tensor};
use std::path::Path;

/// An optimiser that updates its parameters in place from one backward pass's gradients ([`AdamW`],
/// [`crate::Sgd`]); what [`crate::LossScaler::step`] steps.
pub trait Optimizer {
    fn step(&mut self, grads: &Gradients) -> Result<()>;
}

struct Slot {
    name: String,
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

    /// An optimiser for `params` with zeroed moment buffers; in a saved state they are named by position.
    pub fn new(params: impl IntoIterator<Item = Var>, config: AdamWConfig) -> Result<AdamW> {
        Self::named(
            params
                .into_iter()
                .enumerate()
                .map(|(i, p)| (i.to_string(), p)),
            config,
        )
    }

    /// An optimiser for every parameter of `store`, its state named by the parameters' names.
    pub fn for_store(store: &ParamStore, config: AdamWConfig) -> Result<AdamW> {
        Self::named(store.params(), config)
    }

    fn named(
        params: impl IntoIterator<Item = (String, Var)>,
        config: AdamWConfig,
    ) -> Result<AdamW> {
        let slots = params
            .into_iter()
            .map(|(name, param)| {
                let m = param.tensor().zeros_like()?;
                let v = param.tensor().zeros_like()?;
                Ok(Slot { name, param, m, v })
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

    /// One step on every trainable parameter that has a gradient in `grads`; frozen parameters and those without
    /// a gradient are left alone (PyTorch skips parameters whose gradient is `None`).
    pub fn step(&mut self, grads: &Gradients) -> Result<()> {
        self.step += 1;
        for slot in &self.slots {
            if !slot.param.requires_grad() {
                continue; // frozen, perhaps after these gradients were taken
            }
            if let Some(g) = grads.get(&slot.param) {
                slot.param
                    .tensor()
                    .adamw_step(g, &slot.m, &slot.v, &self.config, self.step)?;
            }
        }
        Ok(())
    }
}

impl Optimizer for AdamW {
    fn step(&mut self, grads: &Gradients) -> Result<()> {
        AdamW::step(self, grads)
    }
}

impl AdamW {
    fn buffers(&self) -> Vec<(String, &Tensor)> {
        self.slots
            .iter()
            .flat_map(|s| {
                [
                    (format!("exp_avg.{}", s.name), &s.m),
                    (format!("exp_avg_sq.{}", s.name), &s.v),
                ]
            })
            .collect()
    }

    /// Writes the step count and every moment buffer to the safetensors file `path`.
    pub fn save_state(&self, path: impl AsRef<Path>) -> Result<()> {
        optim_state::save("AdamW state", path.as_ref(), self.step, &self.buffers())
    }

    /// Restores the step count and every moment buffer from `path`, which must hold exactly this optimiser's
    /// buffers with their shapes; nothing changes unless all of them check.
    pub fn load_state(&mut self, path: impl AsRef<Path>) -> Result<()> {
        self.step = optim_state::load("AdamW state", path.as_ref(), &self.buffers())?;
        Ok(())
    }
}
