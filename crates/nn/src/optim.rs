//! AdamW over a set of parameters, one fused in-place kernel step per parameter.
//!
//! The optimiser's state (step count and both moment buffers of every parameter) saves to and loads from one
//! safetensors file, `exp_avg.NAME` and `exp_avg_sq.NAME` per parameter (PyTorch's names for m and v) and the step in
//! the file's metadata, so a resumed run continues exactly where it stopped.

use crate::store::ParamStore;
use diffuse_autograd::{Gradients, Var};
use diffuse_tensor::{AdamWConfig, Error, Result, Tensor};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use std::collections::HashMap;
use std::path::Path;

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

fn state_error(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::argument("AdamW state", format!("{}: {e}", path.display()))
}

impl AdamW {
    /// Writes the step count and every moment buffer to the safetensors file `path`.
    pub fn save_state(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let mut buffers = Vec::with_capacity(2 * self.slots.len());
        for slot in &self.slots {
            for (kind, t) in [("exp_avg", &slot.m), ("exp_avg_sq", &slot.v)] {
                let bytes: Vec<u8> = t.to_vec()?.iter().flat_map(|x| x.to_le_bytes()).collect();
                buffers.push((format!("{kind}.{}", slot.name), t.shape().to_vec(), bytes));
            }
        }
        let views = buffers
            .iter()
            .map(|(name, shape, bytes)| {
                TensorView::new(Dtype::F32, shape.clone(), bytes)
                    .map(|v| (name.clone(), v))
                    .map_err(|e| state_error(path, e))
            })
            .collect::<Result<Vec<_>>>()?;
        let metadata = HashMap::from([("step".to_string(), self.step.to_string())]);
        safetensors::serialize_to_file(views, &Some(metadata), path)
            .map_err(|e| state_error(path, e))
    }

    /// Restores the step count and every moment buffer from `path`, which must hold exactly this optimiser's
    /// buffers with their shapes; nothing changes unless all of them check.
    pub fn load_state(&mut self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| state_error(path, e))?;
        let (_, header) = SafeTensors::read_metadata(&bytes).map_err(|e| state_error(path, e))?;
        let step: u64 = header
            .metadata()
            .as_ref()
            .and_then(|m| m.get("step"))
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| state_error(path, "no integer 'step' in the metadata"))?;
        let file = SafeTensors::deserialize(&bytes).map_err(|e| state_error(path, e))?;
        if file.len() != 2 * self.slots.len() {
            return Err(state_error(
                path,
                format!(
                    "holds {} tensors but this optimiser has {} (two per parameter)",
                    file.len(),
                    2 * self.slots.len()
                ),
            ));
        }
        let mut values = Vec::with_capacity(2 * self.slots.len());
        for slot in &self.slots {
            for (kind, t) in [("exp_avg", &slot.m), ("exp_avg_sq", &slot.v)] {
                let name = format!("{kind}.{}", slot.name);
                let view = file
                    .tensor(&name)
                    .map_err(|_| state_error(path, format!("has no tensor '{name}'")))?;
                if view.dtype() != Dtype::F32 || view.shape() != t.shape() {
                    return Err(state_error(
                        path,
                        format!(
                            "'{name}' is {:?} {:?}, expected F32 {:?}",
                            view.dtype(),
                            view.shape(),
                            t.shape()
                        ),
                    ));
                }
                let data: Vec<f32> = view
                    .data()
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect();
                values.push(Tensor::from_vec(data, t.shape(), t.device())?);
            }
        }
        let targets = self.slots.iter().flat_map(|s| [&s.m, &s.v]);
        for (t, value) in targets.zip(&values) {
            t.assign(value)?;
        }
        self.step = step;
        Ok(())
    }
}
