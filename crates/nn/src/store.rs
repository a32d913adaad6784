//! The parameter store: named autograd leaves, created with a seeded initialiser.

use diffuse_autograd::Var;
use diffuse_tensor::{Device, Error, Result, Tensor};
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

/// How a new parameter is filled.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Init {
    /// Uniform on (lo, hi).
    Uniform { lo: f32, hi: f32 },
    /// Normal with mean 0 and this standard deviation.
    Normal { std: f32 },
    /// Every element equal.
    Constant(f32),
}

impl Init {
    /// PyTorch's default for linear and convolution weights and biases: Kaiming-uniform with `a = √5`, i.e.
    /// bound `gain·√(3/fan_in)` with `gain = √(2/(1 + a²)) = √(1/3)`, which is `1/√fan_in`.
    pub fn kaiming_uniform(fan_in: usize) -> Init {
        let bound = 1.0 / (fan_in.max(1) as f32).sqrt();
        Init::Uniform {
            lo: -bound,
            hi: bound,
        }
    }
}

struct Inner {
    params: BTreeMap<String, Var>,
    /// Parameters a store was made with ([`ParamStore::to_device`]) that no layer has registered yet: the first
    /// registration of such a name takes the existing parameter instead of a new one.
    unclaimed: BTreeSet<String>,
    device: Device,
    seed: u64,
    /// The next unused element of the Philox stream: each parameter draws its own range.
    offset: u64,
}

/// Parameters by name. Cloning shares the store.
#[derive(Clone)]
pub struct ParamStore {
    inner: Rc<RefCell<Inner>>,
}

impl ParamStore {
    /// An empty store whose initialisers draw from Philox stream `seed` on `device`.
    pub fn new(seed: u64, device: Device) -> ParamStore {
        ParamStore {
            inner: Rc::new(RefCell::new(Inner {
                params: BTreeMap::new(),
                unclaimed: BTreeSet::new(),
                device,
                seed,
                offset: 0,
            })),
        }
    }

    /// The path with no prefix.
    pub fn root(&self) -> Path {
        Path {
            store: self.clone(),
            prefix: String::new(),
        }
    }

    /// Every parameter with its name, sorted by name.
    pub fn params(&self) -> Vec<(String, Var)> {
        let inner = self.inner.borrow();
        inner
            .params
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    pub fn get(&self, name: &str) -> Option<Var> {
        self.inner.borrow().params.get(name).cloned()
    }

    pub fn len(&self) -> usize {
        self.inner.borrow().params.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Total number of scalar parameters.
    pub fn numel(&self) -> usize {
        self.inner
            .borrow()
            .params
            .values()
            .map(|v| v.tensor().numel())
            .sum()
    }

    /// The parameters whose name is `prefix` or starts with `prefix.` (every parameter for an empty prefix); an
    /// error naming the prefix when there are none, which is almost always a typo.
    fn matching(&self, op: &'static str, prefix: &str) -> Result<Vec<Var>> {
        let inner = self.inner.borrow();
        let found: Vec<Var> = inner
            .params
            .iter()
            .filter(|(name, _)| {
                prefix.is_empty()
                    || name.as_str() == prefix
                    || name
                        .strip_prefix(prefix)
                        .is_some_and(|rest| rest.starts_with('.'))
            })
            .map(|(_, v)| v.clone())
            .collect();
        if found.is_empty() {
            return Err(Error::argument(
                op,
                format!("no parameter is named '{prefix}' or lies under it"),
            ));
        }
        Ok(found)
    }

    /// Freezes every parameter under `prefix` (by whole name components: `down.1` covers `down.1.conv.weight`, not
    /// `down.10.…`; the empty prefix covers all) and returns how many: a frozen parameter gets no gradient from
    /// forward passes recorded afterwards, and the optimisers leave it alone.
    pub fn freeze(&self, prefix: &str) -> Result<usize> {
        self.set_trainable("freeze", prefix, false)
    }

    /// Undoes [`ParamStore::freeze`] for every parameter under `prefix`; returns how many.
    pub fn unfreeze(&self, prefix: &str) -> Result<usize> {
        self.set_trainable("unfreeze", prefix, true)
    }

    fn set_trainable(&self, op: &'static str, prefix: &str, trainable: bool) -> Result<usize> {
        let params = self.matching(op, prefix)?;
        for p in &params {
            p.set_requires_grad(trainable)?;
        }
        Ok(params.len())
    }

    /// The parameters that are not frozen, with their names, sorted by name.
    pub fn trainable(&self) -> Vec<(String, Var)> {
        self.params()
            .into_iter()
            .filter(|(_, v)| v.requires_grad())
            .collect()
    }

    /// A store on `device` holding a copy of every parameter under the same name, frozen where this one is, with
    /// the same initialisation stream. Layers hold their parameters, so a model moves by being built again on the
    /// new store's root: each layer's registration then takes the copied parameter of its name (which must have
    /// the shape the layer asks for) instead of drawing a new one. A device this build cannot reach is the tensor
    /// crate's error, and leaves nothing half-moved.
    pub fn to_device(&self, device: Device) -> Result<ParamStore> {
        let inner = self.inner.borrow();
        let mut params = BTreeMap::new();
        for (name, var) in &inner.params {
            // A buffer of its own on `device` (to_device alone would share the buffer when nothing moves).
            let t = var.tensor();
            let copy = Tensor::zeros(t.shape(), t.dtype(), device)?;
            copy.assign(&t.to_device(device)?)?;
            let moved = Var::leaf(copy);
            moved.set_requires_grad(var.requires_grad())?;
            params.insert(name.clone(), moved);
        }
        Ok(ParamStore {
            inner: Rc::new(RefCell::new(Inner {
                unclaimed: params.keys().cloned().collect(),
                params,
                device,
                seed: inner.seed,
                offset: 0,
            })),
        })
    }

    /// The device new parameters are created on.
    pub fn device(&self) -> Device {
        self.inner.borrow().device
    }

    fn create(&self, name: String, shape: &[usize], init: Init) -> Result<Var> {
        let mut inner = self.inner.borrow_mut();
        if inner.unclaimed.contains(&name) {
            let var = inner.params[&name].clone();
            if var.shape() != shape {
                return Err(Error::shape(
                    "ParamStore",
                    format!(
                        "parameter '{name}' exists with shape {:?} but the layer asks for {shape:?}",
                        var.shape()
                    ),
                ));
            }
            inner.unclaimed.remove(&name);
            // Advance the stream as a fresh draw would, so that parameters the copy lacks get the values they
            // would have had.
            if matches!(init, Init::Uniform { .. } | Init::Normal { .. }) {
                inner.offset += var.tensor().numel() as u64;
            }
            return Ok(var);
        }
        if inner.params.contains_key(&name) {
            return Err(Error::argument(
                "ParamStore",
                format!("parameter '{name}' is already registered"),
            ));
        }
        let (seed, offset, device) = (inner.seed, inner.offset, inner.device);
        let tensor = match init {
            Init::Uniform { lo, hi } => {
                Tensor::rand(shape, seed, offset, device)?.affine(hi - lo, lo)?
            }
            Init::Normal { std } => Tensor::randn(shape, seed, offset, device)?.mul_scalar(std)?,
            Init::Constant(c) => Tensor::full(shape, c, diffuse_tensor::DType::F32, device)?,
        };
        if matches!(init, Init::Uniform { .. } | Init::Normal { .. }) {
            inner.offset += tensor.numel() as u64;
        }
        let var = Var::leaf(tensor);
        inner.params.insert(name, var.clone());
        Ok(var)
    }
}

/// A position in the store's name hierarchy: parameters created through it are named `prefix.name`.
#[derive(Clone)]
pub struct Path {
    store: ParamStore,
    prefix: String,
}

impl Path {
    /// The child path `self.name`.
    pub fn sub(&self, name: impl std::fmt::Display) -> Path {
        Path {
            store: self.store.clone(),
            prefix: self.full_name(&name.to_string()),
        }
    }

    /// `prefix.name` (or `name` at the root).
    pub fn full_name(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.prefix)
        }
    }

    /// Registers and initialises the parameter `prefix.name`; an error if that name is taken.
    pub fn param(&self, name: &str, shape: &[usize], init: Init) -> Result<Var> {
        self.store.create(self.full_name(name), shape, init)
    }
}
