//! Tensors in safetensors files, as the autoencoder commands read and write them: f32, named, written atomically.

use diffuse_tensor::{Device, Tensor};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use std::path::Path;

/// The tensor `name` of the safetensors file at `path`, or its only tensor when `name` is `None`.
pub fn read_tensor(path: &Path, name: Option<&str>) -> Result<Tensor, String> {
    let err = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    let bytes = std::fs::read(path).map_err(|e| err(&e))?;
    let file = SafeTensors::deserialize(&bytes).map_err(|e| err(&e))?;
    let mut names = file.names();
    names.sort();
    let name = match name {
        Some(name) => name,
        None => match names.as_slice() {
            [only] => only.as_str(),
            _ => {
                return Err(err(&format!(
                    "holds the tensors {names:?}; name one with --tensor"
                )))
            }
        },
    };
    let view = file
        .tensor(name)
        .map_err(|_| err(&format!("has no tensor '{name}' (it holds {names:?})")))?;
    if view.dtype() != Dtype::F32 {
        return Err(err(&format!(
            "'{name}' is {:?}; expected F32",
            view.dtype()
        )));
    }
    let data: Vec<f32> = view
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    Tensor::from_vec(data, view.shape(), Device::Cpu).map_err(|e| err(&e))
}

/// Writes `tensors` as f32 under their names to the safetensors file at `path`, atomically.
pub fn write_tensors(path: &Path, tensors: &[(&str, &Tensor)]) -> Result<(), String> {
    let mut buffers = Vec::with_capacity(tensors.len());
    for (name, t) in tensors {
        let bytes: Vec<u8> = t
            .to_vec()
            .map_err(|e| e.to_string())?
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        buffers.push((*name, t.shape().to_vec(), bytes));
    }
    let views = buffers
        .iter()
        .map(|(name, shape, bytes)| {
            TensorView::new(Dtype::F32, shape.clone(), bytes)
                .map(|v| (*name, v))
                .map_err(|e| e.to_string())
        })
        .collect::<Result<Vec<_>, String>>()?;
    let encoded = safetensors::serialize(views, &None).map_err(|e| e.to_string())?;
    crate::files::write_atomically(path, &encoded).map_err(|e| format!("{}: {e}", path.display()))
}
