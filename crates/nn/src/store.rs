//! The parameter store: named autograd leaves, created with a seeded initialiser.

use diffuse_autograd::Var;
use diffuse_tensor::{Device, Error, Result, Tensor};
use std::cell::RefCell;
use std::collections::BTreeMap;
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

    fn create(&self, name: String, shape: &[usize], init: Init) -> Result<Var> {
        let mut inner = self.inner.borrow_mut();
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
