//! The folder layout every network here shares with diffusers and transformers: a `config.json` beside a safetensors
//! file of the parameters under their state-dict names (`diffusion_pytorch_model.safetensors` for diffusers models,
//! `model.safetensors` for transformers models).
//!
//! Loading is strict: every parameter must be present with its exact shape, and no tensor may be left over; f16 and
//! bf16 tensors are widened to f32. Saving writes f32, each file to a temporary name first, synced, then renamed
//! over the target, so a crash leaves either the old file or the new one, never a torn one.

use crate::error::{Error, Result};
use diffuse_nn::ParamStore;
use diffuse_tensor::Tensor;
use half::{bf16, f16};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::Write;
use std::path::Path;

/// The architecture file of every model folder.
pub const CONFIG_FILE: &str = "config.json";
/// The weights file of a diffusers model folder.
pub const DIFFUSERS_WEIGHTS_FILE: &str = "diffusion_pytorch_model.safetensors";
/// The weights file of a transformers model folder.
pub const TRANSFORMERS_WEIGHTS_FILE: &str = "model.safetensors";

/// An error about the file or folder at `path`.
pub fn file_error(path: &Path, message: impl std::fmt::Display) -> Error {
    Error::model(path.display().to_string(), message.to_string())
}

/// The text of `dir/config.json`, parsed by `parse`; a parse error is reported against the file.
pub fn read_config<C>(dir: &Path, parse: impl FnOnce(&str) -> Result<C>) -> Result<C> {
    let path = dir.join(CONFIG_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| file_error(&path, e))?;
    parse(&text).map_err(|e| match e {
        Error::Model { message, .. } => file_error(&path, message),
        other => other,
    })
}

/// The elements of a safetensors tensor as f32.
fn to_f32(name: &str, view: &TensorView<'_>, path: &Path) -> Result<Vec<f32>> {
    let bytes = view.data();
    let values = match view.dtype() {
        Dtype::F32 => bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        Dtype::F16 => bytes
            .chunks_exact(2)
            .map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        Dtype::BF16 => bytes
            .chunks_exact(2)
            .map(|b| bf16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        other => {
            return Err(file_error(
                path,
                format!("tensor '{name}' is {other:?}; only F32, F16 and BF16 are read"),
            ))
        }
    };
    Ok(values)
}

/// Fills every parameter of `store` from the safetensors file at `path`, strictly: each must be present with its
/// shape, and the file may hold nothing else. Nothing is assigned unless everything checks.
pub fn load_weights(store: &ParamStore, path: &Path) -> Result<()> {
    load_weights_except(store, path, &[])
}

/// [`load_weights`], except that the tensors named in `skipped` may be in the file and are not read (buffers such as
/// transformers' `position_ids`, which older versions saved beside the weights).
pub fn load_weights_except(store: &ParamStore, path: &Path, skipped: &[&str]) -> Result<()> {
    load_weights_mapped(store, path, skipped, &|name| name.to_string())
}

/// [`load_weights_except`] where the parameter `name` of the store is read from the tensor `file_name(name)` (for
/// formats that moved their keys between library versions).
pub fn load_weights_mapped(
    store: &ParamStore,
    path: &Path,
    skipped: &[&str],
    file_name: &dyn Fn(&str) -> String,
) -> Result<()> {
    let bytes = std::fs::read(path).map_err(|e| file_error(path, e))?;
    let file = SafeTensors::deserialize(&bytes).map_err(|e| file_error(path, e))?;
    let params: Vec<(String, diffuse_autograd::Var)> = store
        .params()
        .into_iter()
        .map(|(name, var)| (file_name(&name), var))
        .collect();
    let mut values = Vec::with_capacity(params.len());
    for (name, var) in &params {
        let view = file.tensor(name).map_err(|_| {
            file_error(
                path,
                format!(
                    "missing tensor '{name}' (the model expects shape {:?})",
                    var.shape()
                ),
            )
        })?;
        if view.shape() != var.shape() {
            return Err(file_error(
                path,
                format!(
                    "tensor '{name}' has shape {:?} but the model expects {:?}",
                    view.shape(),
                    var.shape()
                ),
            ));
        }
        let data = to_f32(name, &view, path)?;
        values.push(Tensor::from_vec(data, var.shape(), store.device())?);
    }
    let known: HashSet<&str> = params.iter().map(|(n, _)| n.as_str()).collect();
    let mut extra: Vec<&String> = file
        .names()
        .into_iter()
        .filter(|n| !known.contains(n.as_str()) && !skipped.contains(&n.as_str()))
        .collect();
    if !extra.is_empty() {
        extra.sort();
        return Err(file_error(
            path,
            format!("tensors the model does not have: {extra:?}"),
        ));
    }
    for ((_, var), value) in params.iter().zip(&values) {
        var.tensor().assign(value)?;
    }
    Ok(())
}

/// Writes every parameter of `store` as f32 to the safetensors file at `path`, atomically.
pub fn save_weights(store: &ParamStore, path: &Path) -> Result<()> {
    save_weights_prefixed(store, path, "")
}

/// Writes the parameters of `store` whose names start with `prefix` (names kept whole) as f32 to the safetensors file
/// at `path`, atomically.
pub fn save_weights_prefixed(store: &ParamStore, path: &Path, prefix: &str) -> Result<()> {
    let mut params = store.params();
    params.retain(|(name, _)| name.starts_with(prefix));
    let mut buffers = Vec::with_capacity(params.len());
    for (name, var) in &params {
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
                .map(|v| (name.as_str(), v))
                .map_err(|e| file_error(path, format!("{name}: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    let bytes = safetensors::serialize(views, &Some(metadata)).map_err(|e| file_error(path, e))?;
    write_atomically(path, &bytes)
}

/// Writes a model folder: `dir/config.json` with `config_json` and the parameters of `store` as `weights_file`, each
/// atomically; `dir` is created if missing.
pub fn save_folder(
    dir: &Path,
    config_json: &str,
    store: &ParamStore,
    weights_file: &str,
) -> Result<()> {
    save_folder_prefixed(dir, config_json, store, weights_file, "")
}

/// [`save_folder`] with only the parameters whose names start with `prefix`.
pub fn save_folder_prefixed(
    dir: &Path,
    config_json: &str,
    store: &ParamStore,
    weights_file: &str,
    prefix: &str,
) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| file_error(dir, e))?;
    save_weights_prefixed(store, &dir.join(weights_file), prefix)?;
    write_atomically(&dir.join(CONFIG_FILE), config_json.as_bytes())?;
    sync_dir(dir)
}

/// Writes `bytes` to `path` through a temporary file in the same folder: write, fsync, rename.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| file_error(path, "not a file path"))?;
    let tmp = path.with_file_name(format!(".{}.tmp", name.to_string_lossy()));
    let write = || -> std::io::Result<()> {
        let mut file = File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        // Best effort: a failed write should not leave its temporary behind.
        let _ = std::fs::remove_file(&tmp);
        file_error(path, e)
    })
}

/// Makes the renames inside `dir` durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| file_error(dir, e))
}
