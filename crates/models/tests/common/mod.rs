//! What the golden-fixture tests share. A fixture is a folder under `tests/fixtures/<family>/<name>/` holding a
//! model as diffusers or transformers saved it and an `io.safetensors` of inputs and reference outputs; a test runs
//! diffuse on the inputs, compares with the outputs at the output's scale, and writes diffuse's own outputs beside a
//! freshly saved model (`rust_io.safetensors`) for the fixture script's `--check` to load back in Python.

#![allow(dead_code)] // each test binary uses its own subset

use diffuse_nn::ParamStore;
use diffuse_tensor::{Device, Tensor};
use safetensors::tensor::{Dtype, TensorView};
use safetensors::SafeTensors;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// `tests/fixtures/<family>/<name>` of this crate.
pub fn fixture_dir(family: &str, name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(family)
        .join(name)
}

/// One entry of an io file, in the dtypes the fixture scripts write: f32 tensors, f64 timesteps and i64 labels.
#[derive(Clone)]
pub enum Entry {
    F32(Tensor),
    F64(Vec<f64>),
    Labels(Vec<u32>),
}

/// The named entries of an `io.safetensors` (or of a `rust_io.safetensors` about to be written).
#[derive(Clone)]
pub struct Io(BTreeMap<String, Entry>);

impl Io {
    pub fn read(path: &Path) -> Io {
        let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let file = SafeTensors::deserialize(&bytes).unwrap();
        let entries = file
            .tensors()
            .into_iter()
            .map(|(name, view)| {
                let data = view.data();
                let entry = match view.dtype() {
                    Dtype::F32 => {
                        let values = data
                            .chunks_exact(4)
                            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                            .collect();
                        Entry::F32(Tensor::from_vec(values, view.shape(), Device::Cpu).unwrap())
                    }
                    Dtype::F64 => Entry::F64(
                        data.chunks_exact(8)
                            .map(|b| f64::from_le_bytes(b.try_into().unwrap()))
                            .collect(),
                    ),
                    Dtype::I64 => Entry::Labels(
                        data.chunks_exact(8)
                            .map(|b| i64::from_le_bytes(b.try_into().unwrap()) as u32)
                            .collect(),
                    ),
                    other => panic!("{name}: unexpected dtype {other:?}"),
                };
                (name, entry)
            })
            .collect();
        Io(entries)
    }

    /// The f32 tensor `name`.
    pub fn tensor(&self, name: &str) -> &Tensor {
        match self.0.get(name) {
            Some(Entry::F32(t)) => t,
            _ => panic!("the io file has no f32 tensor {name}"),
        }
    }

    /// The f64 values `name` (timesteps).
    pub fn f64s(&self, name: &str) -> &[f64] {
        match self.0.get(name) {
            Some(Entry::F64(v)) => v,
            _ => panic!("the io file has no f64 entry {name}"),
        }
    }

    /// The labels `name`, if the file has them.
    pub fn labels(&self, name: &str) -> Option<&[u32]> {
        match self.0.get(name) {
            Some(Entry::Labels(v)) => Some(v),
            None => None,
            _ => panic!("{name} is not an i64 entry"),
        }
    }

    /// Sets (or replaces) the f32 tensor `name`.
    pub fn set_tensor(&mut self, name: &str, tensor: Tensor) {
        self.0.insert(name.to_string(), Entry::F32(tensor));
    }

    /// Keeps only the named entries.
    pub fn only(mut self, names: &[&str]) -> Io {
        self.0.retain(|name, _| names.contains(&name.as_str()));
        self
    }

    /// Writes every entry, in the dtypes it was read with.
    pub fn write(&self, path: &Path) {
        let bytes: Vec<(&str, Dtype, Vec<usize>, Vec<u8>)> = self
            .0
            .iter()
            .map(|(name, entry)| match entry {
                Entry::F32(t) => (
                    name.as_str(),
                    Dtype::F32,
                    t.shape().to_vec(),
                    t.to_vec()
                        .unwrap()
                        .iter()
                        .flat_map(|x| x.to_le_bytes())
                        .collect(),
                ),
                Entry::F64(v) => (
                    name.as_str(),
                    Dtype::F64,
                    vec![v.len()],
                    v.iter().flat_map(|x| x.to_le_bytes()).collect(),
                ),
                Entry::Labels(v) => (
                    name.as_str(),
                    Dtype::I64,
                    vec![v.len()],
                    v.iter().flat_map(|&x| i64::from(x).to_le_bytes()).collect(),
                ),
            })
            .collect();
        let views = bytes.iter().map(|(name, dtype, shape, data)| {
            (*name, TensorView::new(*dtype, shape.clone(), data).unwrap())
        });
        safetensors::serialize_to_file(views, &None, path).unwrap();
    }
}

/// Largest |a − b| over the largest |b|.
pub fn scaled_error(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.shape(), b.shape());
    let (a, b) = (a.to_vec().unwrap(), b.to_vec().unwrap());
    let scale = b.iter().fold(0f32, |m, x| m.max(x.abs()));
    let diff = a
        .iter()
        .zip(&b)
        .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
    diff / scale
}

/// Every parameter of a store by name, as bit patterns.
pub fn param_bits(store: &ParamStore) -> Vec<(String, Vec<u32>)> {
    store
        .params()
        .into_iter()
        .map(|(name, v)| {
            let values = v.tensor().to_vec().unwrap();
            (name, values.iter().map(|x| x.to_bits()).collect())
        })
        .collect()
}

/// That two stores hold the same parameters under the same names, bit for bit.
pub fn assert_same_params(a: &ParamStore, b: &ParamStore) {
    let (a, b) = (param_bits(a), param_bits(b));
    assert_eq!(a.len(), b.len());
    for ((name_a, bits_a), (name_b, bits_b)) in a.iter().zip(&b) {
        assert_eq!(name_a, name_b);
        assert!(bits_a == bits_b, "{name_a} changed in the round trip");
    }
}

/// That an atomic save left no temporary file behind in `dir`.
pub fn assert_no_temporary_files(dir: &Path) {
    let leftovers: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|f| f.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}
