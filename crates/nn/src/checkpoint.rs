//! Saving and loading the parameters of a store as safetensors, by name, in f32, f16 or bf16 (little-endian; the
//! header's dtype field says which). Parameters are always f32: saving in half precision rounds each value to the
//! nearest representable one (ties to even), and loading widens exactly.
//!
//! Loading is strict: every parameter of the model must be in the file with its exact shape and no tensor of the file
//! may be left over; the first disagreement is reported by name and nothing is written until all of them are checked.
//!
//! Saving is atomic: the file is written under a temporary name in the same folder, flushed to disk, then renamed over
//! the target, so a failed save (full disk, killed process) leaves any previous checkpoint intact.

use crate::store::ParamStore;
use diffuse_tensor::{DType, Error, Result, Tensor};
use half::{bf16, f16};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

fn io_error(op: &'static str, path: &Path, e: impl std::fmt::Display) -> Error {
    Error::argument(op, format!("{}: {e}", path.display()))
}

impl ParamStore {
    /// Writes every parameter under its name, in f32.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        self.save_as(path, DType::F32)
    }

    /// Writes every parameter under its name in `dtype` (f16 halves the file and keeps about 3 decimal digits
    /// over ±65504; bf16 keeps the f32 range with about 2 digits).
    pub fn save_as(&self, path: impl AsRef<Path>, dtype: DType) -> Result<()> {
        const OP: &str = "save";
        let path = path.as_ref();
        let file_dtype = match dtype {
            DType::F32 => Dtype::F32,
            DType::F16 => Dtype::F16,
            DType::BF16 => Dtype::BF16,
        };
        let mut buffers = Vec::new();
        for (name, var) in self.params() {
            let values = var.tensor().to_vec()?;
            let bytes: Vec<u8> = match dtype {
                DType::F32 => values.iter().flat_map(|x| x.to_le_bytes()).collect(),
                DType::F16 => values
                    .iter()
                    .flat_map(|&x| f16::from_f32(x).to_le_bytes())
                    .collect(),
                DType::BF16 => values
                    .iter()
                    .flat_map(|&x| bf16::from_f32(x).to_le_bytes())
                    .collect(),
            };
            buffers.push((name, var.shape().to_vec(), bytes));
        }
        let views = buffers
            .iter()
            .map(|(name, shape, bytes)| {
                TensorView::new(file_dtype, shape.clone(), bytes)
                    .map(|v| (name.clone(), v))
                    .map_err(|e| io_error(OP, path, format!("{name}: {e}")))
            })
            .collect::<Result<Vec<_>>>()?;
        let bytes = safetensors::serialize(views, &None).map_err(|e| io_error(OP, path, e))?;
        write_atomically(path, &bytes).map_err(|e| io_error(OP, path, e))
    }

    /// Overwrites every parameter in place with the tensor of the same name in the file.
    pub fn load(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| io_error("load", path, e))?;
        self.load_bytes(&bytes, path)
    }

    /// As [`ParamStore::load`], from the bytes of a safetensors file; errors name `path`, where they came from.
    pub fn load_bytes(&self, bytes: &[u8], path: &Path) -> Result<()> {
        const OP: &str = "load";
        let file = SafeTensors::deserialize(bytes).map_err(|e| io_error(OP, path, e))?;
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
            let data: Vec<f32> = match view.dtype() {
                Dtype::F32 => view
                    .data()
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect(),
                Dtype::F16 => view
                    .data()
                    .chunks_exact(2)
                    .map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32())
                    .collect(),
                Dtype::BF16 => view
                    .data()
                    .chunks_exact(2)
                    .map(|b| bf16::from_le_bytes([b[0], b[1]]).to_f32())
                    .collect(),
                other => {
                    return Err(Error::argument(
                        OP,
                        format!(
                        "tensor '{name}' is {other:?}; checkpoints are read in F32, F16 or BF16"
                    ),
                    ))
                }
            };
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

/// Writes `bytes` to `path` so that `path` holds either its old contents or all of `bytes`, never a part: a temporary
/// file beside it is written and synced, then renamed over it (rename within a folder is atomic on POSIX and Windows).
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = temporary_path(path)?;
    let written = File::create(&tmp).and_then(|mut file| {
        file.write_all(bytes)?;
        file.sync_all()
    });
    let renamed = written.and_then(|()| std::fs::rename(&tmp, path));
    if renamed.is_err() {
        // The temporary file may not exist (creation failed); either way the error to report is the first one.
        let _ = std::fs::remove_file(&tmp);
    }
    renamed
}

/// `.NAME.PID.tmp` in the folder of `path`.
fn temporary_path(path: &Path) -> std::io::Result<PathBuf> {
    let name = path.file_name().ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "the path names no file")
    })?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".{}.tmp", std::process::id()));
    Ok(path.with_file_name(tmp_name))
}
