//! Storage: the buffer behind one or more tensors, on one device, in one dtype.
//!
//! This is the dispatch point between devices. Every operation of [`crate::Tensor`] calls one method here, and each
//! method matches on the device and calls the backend module for it (`backend::cpu` today; a `Cuda` variant and
//! `backend::cuda` join the same matches). Call sites above this file never name a device.

use crate::backend::cpu::{self, CpuStorage};
use crate::error::{Error, Result};
use crate::layout::Layout;
use crate::{DType, Device};
use diffuse_cpu_kernels::elementwise::{BinaryOp, UnaryOp};
use diffuse_cpu_kernels::noise::StepCoefficients;
use diffuse_cpu_kernels::reduce::ReduceOp;

#[derive(Debug)]
pub enum Storage {
    Cpu(CpuStorage),
}

impl Storage {
    pub fn device(&self) -> Device {
        match self {
            Storage::Cpu(_) => Device::Cpu,
        }
    }

    pub fn dtype(&self) -> DType {
        match self {
            Storage::Cpu(s) => s.dtype(),
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Storage::Cpu(s) => s.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A new buffer of `len` elements, each `value`.
    pub fn full(device: Device, dtype: DType, len: usize, value: f32) -> Result<Self> {
        match device {
            Device::Cpu => Ok(Storage::Cpu(CpuStorage::from_f32(vec![value; len], dtype))),
            Device::Cuda(_) => Err(no_cuda(device)),
        }
    }

    pub fn from_f32(device: Device, dtype: DType, data: Vec<f32>) -> Result<Self> {
        match device {
            Device::Cpu => Ok(Storage::Cpu(CpuStorage::from_f32(data, dtype))),
            Device::Cuda(_) => Err(no_cuda(device)),
        }
    }

    /// The elements of `layout`, in row-major order, as f32 on the host.
    pub fn to_f32_vec(&self, layout: &Layout) -> Result<Vec<f32>> {
        match self {
            Storage::Cpu(s) => {
                cpu::copy_contiguous(s, layout, DType::F32).map(CpuStorage::into_f32)
            }
        }
    }

    /// The elements of `layout` copied into a new contiguous buffer of `dtype`.
    pub fn copy_contiguous(&self, layout: &Layout, dtype: DType) -> Result<Self> {
        match self {
            Storage::Cpu(s) => Ok(Storage::Cpu(cpu::copy_contiguous(s, layout, dtype)?)),
        }
    }

    pub fn to_device(&self, layout: &Layout, device: Device) -> Result<Self> {
        match (self, device) {
            (Storage::Cpu(s), Device::Cpu) => {
                Ok(Storage::Cpu(cpu::copy_contiguous(s, layout, s.dtype())?))
            }
            (_, Device::Cuda(_)) => Err(no_cuda(device)),
        }
    }

    pub fn unary(&self, layout: &Layout, op: UnaryOp) -> Result<Self> {
        match self {
            Storage::Cpu(s) => Ok(Storage::Cpu(cpu::unary(s, layout, op)?)),
        }
    }

    pub fn binary(
        &self,
        layout: &Layout,
        rhs: &Storage,
        rhs_layout: &Layout,
        op: BinaryOp,
    ) -> Result<Self> {
        match (self, rhs) {
            (Storage::Cpu(a), Storage::Cpu(b)) => {
                Ok(Storage::Cpu(cpu::binary(a, layout, b, rhs_layout, op)?))
            }
        }
    }

    pub fn where_select(
        &self,
        layout: &Layout,
        a: (&Storage, &Layout),
        b: (&Storage, &Layout),
    ) -> Result<Self> {
        match (self, a.0, b.0) {
            (Storage::Cpu(c), Storage::Cpu(x), Storage::Cpu(y)) => Ok(Storage::Cpu(
                cpu::where_select(c, layout, (x, a.1), (y, b.1))?,
            )),
        }
    }

    /// Reduces the last dimension of the (permuted) `layout`.
    pub fn reduce_last(&self, layout: &Layout, op: ReduceOp) -> Result<Self> {
        match self {
            Storage::Cpu(s) => Ok(Storage::Cpu(cpu::reduce_last(s, layout, op)?)),
        }
    }

    /// Concatenates contiguous parts viewed as `[outer, sizes[p], inner]` along the middle dimension.
    pub fn concat(
        parts: &[&Storage],
        sizes: &[usize],
        outer: usize,
        inner: usize,
        dtype: DType,
    ) -> Result<Self> {
        let cpu_parts: Option<Vec<&CpuStorage>> = parts
            .iter()
            .map(|p| match p {
                Storage::Cpu(s) => Some(s),
            })
            .collect();
        match cpu_parts {
            Some(ps) => Ok(Storage::Cpu(cpu::concat(&ps, sizes, outer, inner, dtype)?)),
            None => Err(Error::argument("concat", "parts live on different devices")),
        }
    }

    /// Index selection on a contiguous buffer viewed as `[outer, dim, inner]`.
    pub fn index_select(
        &self,
        outer: usize,
        dim: usize,
        inner: usize,
        indices: &[usize],
    ) -> Result<Self> {
        match self {
            Storage::Cpu(s) => Ok(Storage::Cpu(cpu::index_select(
                s, outer, dim, inner, indices,
            )?)),
        }
    }

    pub fn index_select_backward(
        &self,
        outer: usize,
        dim: usize,
        inner: usize,
        indices: &[usize],
    ) -> Result<Self> {
        match self {
            Storage::Cpu(s) => Ok(Storage::Cpu(cpu::index_select_backward(
                s, outer, dim, inner, indices,
            )?)),
        }
    }

    pub fn gather(
        &self,
        outer: usize,
        dim: usize,
        inner: usize,
        index: &[usize],
        k: usize,
    ) -> Result<Self> {
        match self {
            Storage::Cpu(s) => Ok(Storage::Cpu(cpu::gather(s, outer, dim, inner, index, k)?)),
        }
    }

    pub fn gather_backward(
        &self,
        outer: usize,
        dim: usize,
        inner: usize,
        index: &[usize],
        k: usize,
    ) -> Result<Self> {
        match self {
            Storage::Cpu(s) => Ok(Storage::Cpu(cpu::gather_backward(
                s, outer, dim, inner, index, k,
            )?)),
        }
    }

    pub fn upsample_nearest2x(&self, planes: usize, h: usize, w: usize) -> Result<Self> {
        match self {
            Storage::Cpu(s) => Ok(Storage::Cpu(cpu::upsample_nearest2x(s, planes, h, w)?)),
        }
    }

    pub fn upsample_nearest2x_backward(&self, planes: usize, h: usize, w: usize) -> Result<Self> {
        match self {
            Storage::Cpu(s) => Ok(Storage::Cpu(cpu::upsample_nearest2x_backward(
                s, planes, h, w,
            )?)),
        }
    }
}

impl Storage {
    /// The fused forward process on a contiguous batch; returns `(x_t, ε)`.
    pub fn q_sample(
        &self,
        sqrt_ab: &[f32],
        sqrt_1mab: &[f32],
        seed: u64,
        offset: u64,
    ) -> Result<(Self, Self)> {
        match self {
            Storage::Cpu(s) => {
                let (x_t, eps) = cpu::q_sample(s, sqrt_ab, sqrt_1mab, seed, offset)?;
                Ok((Storage::Cpu(x_t), Storage::Cpu(eps)))
            }
        }
    }

    /// The fused reverse step on contiguous `x_t` (self) and model output; returns `(x_prev, x̂0)`.
    pub fn sampler_step(
        &self,
        model_out: &Storage,
        coef: &[StepCoefficients],
        clip: Option<f32>,
        seed: u64,
        offset: u64,
    ) -> Result<(Self, Self)> {
        match (self, model_out) {
            (Storage::Cpu(x), Storage::Cpu(m)) => {
                let (prev, x0) = cpu::sampler_step(x, m, coef, clip, seed, offset)?;
                Ok((Storage::Cpu(prev), Storage::Cpu(x0)))
            }
        }
    }
}

fn no_cuda(device: Device) -> Error {
    Error::DeviceUnavailable {
        device,
        message: "this build's tensor crate has no CUDA backend yet; use --device cpu".into(),
    }
}
