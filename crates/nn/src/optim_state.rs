//! The file format shared by the optimisers' saved state: one safetensors file holding every state buffer by name
//! (f32) and the step count in the metadata (`step`). Loading is strict like [`crate::ParamStore::load`]: the file
//! must hold exactly these buffers with their shapes, and nothing is written until all of them check.

use crate::checkpoint::write_atomically;
use diffuse_tensor::{Error, Result, Tensor};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use std::collections::HashMap;
use std::path::Path;

fn state_error(op: &'static str, path: &Path, e: impl std::fmt::Display) -> Error {
    Error::argument(op, format!("{}: {e}", path.display()))
}

/// Writes `step` and the `buffers` (name, tensor) to `path`, atomically; `op` names the optimiser in errors.
pub(crate) fn save(
    op: &'static str,
    path: &Path,
    step: u64,
    buffers: &[(String, &Tensor)],
) -> Result<()> {
    let bytes = buffers
        .iter()
        .map(|(_, t)| Ok(t.to_vec()?.iter().flat_map(|x| x.to_le_bytes()).collect()))
        .collect::<Result<Vec<Vec<u8>>>>()?;
    let views = buffers
        .iter()
        .zip(&bytes)
        .map(|((name, t), bytes)| {
            TensorView::new(Dtype::F32, t.shape().to_vec(), bytes)
                .map(|v| (name.clone(), v))
                .map_err(|e| state_error(op, path, e))
        })
        .collect::<Result<Vec<_>>>()?;
    let metadata = HashMap::from([("step".to_string(), step.to_string())]);
    let file =
        safetensors::serialize(views, &Some(metadata)).map_err(|e| state_error(op, path, e))?;
    write_atomically(path, &file).map_err(|e| state_error(op, path, e))
}

/// Overwrites every buffer of `buffers` with the tensor of its name in `path` and returns the saved step.
pub(crate) fn load(op: &'static str, path: &Path, buffers: &[(String, &Tensor)]) -> Result<u64> {
    let bytes = std::fs::read(path).map_err(|e| state_error(op, path, e))?;
    let (_, header) = SafeTensors::read_metadata(&bytes).map_err(|e| state_error(op, path, e))?;
    let step: u64 = header
        .metadata()
        .as_ref()
        .and_then(|m| m.get("step"))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| state_error(op, path, "no integer 'step' in the metadata"))?;
    let file = SafeTensors::deserialize(&bytes).map_err(|e| state_error(op, path, e))?;
    if file.len() != buffers.len() {
        return Err(state_error(
            op,
            path,
            format!(
                "holds {} tensors but this optimiser has {} state buffers",
                file.len(),
                buffers.len()
            ),
        ));
    }
    let mut values = Vec::with_capacity(buffers.len());
    for (name, t) in buffers {
        let view = file
            .tensor(name)
            .map_err(|_| state_error(op, path, format!("has no tensor '{name}'")))?;
        if view.dtype() != Dtype::F32 || view.shape() != t.shape() {
            return Err(state_error(
                op,
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
    for ((_, t), value) in buffers.iter().zip(&values) {
        t.assign(value)?;
    }
    Ok(step)
}
