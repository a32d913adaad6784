//! SGD with momentum over a set of parameters, one fused in-place kernel step per parameter, with PyTorch's
//! semantics (`torch.optim.SGD(momentum=μ, weight_decay=λ)`, dampening 0, not Nesterov):
//!
//! ```text
//! g ← g + λ·p        weight decay added to the gradient (L2, not decoupled)
//! b ← μ·b + g        the momentum buffer; it starts at zero, so the first step stores b = g as PyTorch does
//! p ← p − lr·b
//! ```
//!
//! The state (step count and every momentum buffer, `momentum_buffer.NAME` as PyTorch names it) saves to and loads
//! from one safetensors file, so a resumed run continues exactly.

use crate::optim::Optimizer;
use crate::optim_state;
use crate::store::ParamStore;
use diffuse_autograd::{Gradients, Var};
use diffuse_tensor::{Error, Result, Tensor};
use std::path::Path;

/// SGD hyper-parameters (PyTorch's names and meaning).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SgdConfig {
    pub lr: f32,
    pub momentum: f32,
    pub weight_decay: f32,
}

struct Slot {
    name: String,
    param: Var,
    velocity: Tensor,
}

/// SGD with momentum (see the module docs for the update).
pub struct Sgd {
    pub config: SgdConfig,
    step: u64,
    slots: Vec<Slot>,
}

impl Sgd {
    /// An optimiser for `params` with zeroed momentum buffers; in a saved state they are named by position.
    pub fn new(params: impl IntoIterator<Item = Var>, config: SgdConfig) -> Result<Sgd> {
        Self::named(
            params
                .into_iter()
                .enumerate()
                .map(|(i, p)| (i.to_string(), p)),
            config,
        )
    }

    /// An optimiser for every parameter of `store`, its state named by the parameters' names.
    pub fn for_store(store: &ParamStore, config: SgdConfig) -> Result<Sgd> {
        Self::named(store.params(), config)
    }

    fn named(params: impl IntoIterator<Item = (String, Var)>, config: SgdConfig) -> Result<Sgd> {
        let SgdConfig {
            lr,
            momentum,
            weight_decay,
        } = config;
        for (what, value) in [
            ("learning rate", lr),
            ("momentum", momentum),
            ("weight decay", weight_decay),
        ] {
            if !(value.is_finite() && value >= 0.0) {
                return Err(Error::argument(
                    "Sgd",
                    format!("the {what} must be finite and ≥ 0, got {value}"),
                ));
            }
        }
        let slots = params
            .into_iter()
            .map(|(name, param)| {
                let velocity = param.tensor().zeros_like()?;
                Ok(Slot {
                    name,
                    param,
                    velocity,
                })
            })
            .collect::<Result<_>>()?;
        Ok(Sgd {
            config,
            step: 0,
            slots,
        })
    }

    /// Number of steps taken.
    pub fn steps(&self) -> u64 {
        self.step
    }

    /// One step on every trainable parameter that has a gradient in `grads`; the others, and their momentum
    /// buffers, are left alone (PyTorch skips parameters whose gradient is `None`).
    pub fn step(&mut self, grads: &Gradients) -> Result<()> {
        self.step += 1;
        let SgdConfig {
            lr,
            momentum,
            weight_decay,
        } = self.config;
        for slot in &self.slots {
            if !slot.param.requires_grad() {
                continue; // frozen, perhaps after these gradients were taken
            }
            if let Some(g) = grads.get(&slot.param) {
                slot.param.tensor().sgd_momentum_step(
                    g,
                    &slot.velocity,
                    lr,
                    momentum,
                    weight_decay,
                )?;
            }
        }
        Ok(())
    }

    fn buffers(&self) -> Vec<(String, &Tensor)> {
        self.slots
            .iter()
            .map(|s| (format!("momentum_buffer.{}", s.name), &s.velocity))
            .collect()
    }

    /// Writes the step count and every momentum buffer to the safetensors file `path`.
    pub fn save_state(&self, path: impl AsRef<Path>) -> Result<()> {
        optim_state::save("Sgd state", path.as_ref(), self.step, &self.buffers())
    }

    /// Restores the step count and every momentum buffer from `path`, which must hold exactly this optimiser's
    /// buffers with their shapes; nothing changes unless all of them check.
    pub fn load_state(&mut self, path: impl AsRef<Path>) -> Result<()> {
        self.step = optim_state::load("Sgd state", path.as_ref(), &self.buffers())?;
        Ok(())
    }
}

impl Optimizer for Sgd {
    fn step(&mut self, grads: &Gradients) -> Result<()> {
        Sgd::step(self, grads)
    }
}
