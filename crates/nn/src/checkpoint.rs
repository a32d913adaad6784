//! Saving and loading the parameters of a store as safetensors (f32, little-endian), by name.
//!
//! Loading is strict: every parameter of the model must be in the file with its exact shape and no tensor of the file
//! may be left over; the first disagreement is reported by name and nothing is written until all of them are checked.

use crate::store::ParamStore;
use diffuse_tensor::{Error, Result, Tensor};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use std::path::Path;

fn io_error(op: &'static str, path: &Path, e: impl std::fmt::Display) -> Error {
    Error::argument(op, format!("{}: {e}", path.display()))
}

impl ParamStore {
    /// Writes every parameter under its name.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        const OP: &str = "save";
        let path = path.as_ref();
        let mut buffers = Vec::new();
        for (name, var) in self.params() {
            let bytes: Vec<u8> = var
                .tensor()
                .to_vec()?
                .iter()
                .flat_map(|x| x.to_le_bytes())
                .collect();
            buffers.push((name, var.shape().to_vec(), bytes));
        }
        let views = buffers
            .iter()
            .map(|(name, shape, bytes)| {
                TensorView::new(Dtype::F32, shape.clone(), bytes)
                    .map(|v| (name.clone(), v))
                    .map_err(|e| io_error(OP, path, format!("{name}: {e}")))
            })
            .collect::<Result<Vec<_>>>()?;
        safetensors::serialize_to_file(views, &None, path).map_err(|e| io_error(OP, path, e))
    }

    /// Overwrites every parameter in place with the tensor of the same name in the file.
    pub fn load(&self, path: impl AsRef<Path>) -> Result<()> {
        const OP: &str = "load";
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| io_error(OP, path, e))?;
        let file = SafeTensors::deserialize(&bytes).map_err(|e| io_error(OP, path, e))?;
        let params = self.params();
        let mut values = Vec::with_capacity(params.len());
        for (name, var) in &params {
            let view = file.tensor(name).map_err(|_| {
                Error::shape(
                    OP,
                    format!(
                        "{} has no tensor '{name}' (the model expects shape {:?})",
                        path.display(),
                        var.shape()
                    ),
                )
            })?;
            if view.dtype() != Dtype::F32 {
                return Err(Error::argument(
                    OP,
                    format!(
                        "tensor '{name}' is {:?}; only F32 checkpoints are read",
                        view.dtype()
                    ),
                ));
            }
            if view.shape() != var.shape() {
                return Err(Error::shape(
                    OP,
                    format!(
                        "tensor '{name}' has shape {:?} in {} but the model expects {:?}",
                        view.shape(),
                        path.display(),
                        var.shape()
                    ),
                ));
            }
            let data: Vec<f32> = view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            values.push(Tensor::from_vec(data, var.shape(), var.tensor().device())?);
        }
        let mut extra: Vec<&String> = file
            .names()
            .into_iter()
            .filter(|n| self.get(n).is_none())
            .collect();
        extra.sort();
        if !extra.is_empty() {
            return Err(Error::shape(
                OP,
                format!(
                    "{} has tensors the model does not: {extra:?}",
                    path.display()
                ),
            ));
        }
        for ((_, var), value) in params.iter().zip(&values) {
            var.tensor().assign(value)?;
        }
        Ok(())
    }
}
