//! An exponential moving average of the parameters (Polyak averaging), the weights diffusion models are sampled with.
//!
//! After optimiser update number `n` (counted from 1) every shadow parameter moves toward its live parameter:
//! `s ← s − (1 − d_n)·(s − θ)`, i.e. `s ← d_n·s + (1 − d_n)·θ`, written as diffusers' `EMAModel.step` writes it.
//! The decay warms up so that early, still-random weights are forgotten quickly; with `k = n − 1`:
//!
//! - `d_n = 0` for `n = 1` (the first update copies the weights);
//! - [`EmaWarmup::Fraction`]: `d_n = min(max_decay, (1 + k)/(10 + k))`, diffusers' default (`use_ema_warmup=False`);
//! - [`EmaWarmup::Power`]: `d_n = min(max_decay, 1 − (1 + k/γ)^(−p))`, diffusers' `use_ema_warmup=True` with
//!   `inv_gamma = γ` and `power = p` (`p = 2/3` suits runs of ~100k steps, `p = 3/4` longer ones).
//!
//! The shadow parameters live in their own [`ParamStore`] under the same names, so a model built over that store is the
//! averaged model, and the store saves and loads like any other.

use crate::store::{Init, ParamStore};
use diffuse_autograd::Var;
use diffuse_tensor::{Error, Result};
use serde::{Deserialize, Serialize};

/// How the decay grows toward its maximum.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EmaWarmup {
    /// `(1 + k)/(10 + k)`.
    Fraction,
    /// `1 − (1 + k/inv_gamma)^(−power)`.
    Power { inv_gamma: f64, power: f64 },
}

/// The decay applied at update `n` (1-based) with the given maximum and warm-up.
pub fn ema_decay(n: u64, max_decay: f64, warmup: EmaWarmup) -> f64 {
    let k = n.saturating_sub(1) as f64;
    if k == 0.0 {
        return 0.0;
    }
    let d = match warmup {
        EmaWarmup::Fraction => (1.0 + k) / (10.0 + k),
        EmaWarmup::Power { inv_gamma, power } => 1.0 - (1.0 + k / inv_gamma).powf(-power),
    };
    d.min(max_decay).max(0.0)
}

/// The moving average of the parameters of one store.
pub struct Ema {
    live: Vec<(String, Var)>,
    shadow: ParamStore,
    pub max_decay: f64,
    pub warmup: EmaWarmup,
    updates: u64,
}

impl Ema {
    /// A shadow copy of every parameter of `live` (on the same device), with no updates taken yet.
    pub fn new(live: &ParamStore, max_decay: f64, warmup: EmaWarmup) -> Result<Ema> {
        let params = live.params();
        let device = params
            .first()
            .map_or(diffuse_tensor::Device::Cpu, |(_, v)| v.tensor().device());
        let shadow = ParamStore::new(0, device);
        for (name, var) in &params {
            shadow
                .root()
                .param(name, var.shape(), Init::Constant(0.0))?;
        }
        Self::with_shadow(live, shadow, max_decay, warmup)
    }

    /// Averages `live` into `shadow`, a store with the same parameter names and shapes (e.g. the same model built
    /// twice, so that the second build is the averaged model), first overwriting `shadow` with the live values.
    pub fn with_shadow(
        live: &ParamStore,
        shadow: ParamStore,
        max_decay: f64,
        warmup: EmaWarmup,
    ) -> Result<Ema> {
        if !(0.0..=1.0).contains(&max_decay) {
            return Err(Error::argument(
                "Ema",
                format!("max_decay must lie in [0, 1], got {max_decay}"),
            ));
        }
        let params = live.params();
        if shadow.len() != params.len() {
            return Err(Error::argument(
                "Ema",
                format!(
                    "the shadow store has {} parameters but the live one {}",
                    shadow.len(),
                    params.len()
                ),
            ));
        }
        for (name, var) in &params {
            let s = shadow.get(name).ok_or_else(|| {
                Error::argument("Ema", format!("the shadow store has no parameter '{name}'"))
            })?;
            s.tensor().assign(var.tensor())?;
        }
        Ok(Ema {
            live: params,
            shadow,
            max_decay,
            warmup,
            updates: 0,
        })
    }

    /// The averaged parameters, under the live parameters' names.
    pub fn store(&self) -> &ParamStore {
        &self.shadow
    }

    /// Updates taken so far.
    pub fn updates(&self) -> u64 {
        self.updates
    }

    /// Sets the update count (when restoring a checkpoint whose shadow weights were loaded into [`Ema::store`]).
    pub fn set_updates(&mut self, updates: u64) {
        self.updates = updates;
    }

    /// One update after an optimiser step; returns the decay it used.
    pub fn update(&mut self) -> Result<f64> {
        self.updates += 1;
        let decay = ema_decay(self.updates, self.max_decay, self.warmup);
        let one_minus = (1.0 - decay) as f32;
        for (name, live) in &self.live {
            let shadow = self.shadow.get(name).ok_or_else(|| {
                Error::argument("Ema", format!("shadow parameter '{name}' is missing"))
            })?;
            let s = shadow.tensor();
            let moved = s.sub(&s.sub(live.tensor())?.mul_scalar(one_minus)?)?;
            s.assign(&moved)?;
        }
        Ok(decay)
    }
}
