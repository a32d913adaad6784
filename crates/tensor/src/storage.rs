//! Storage: the buffer behind one or more tensors, on one device, in one dtype.
//!
//! This is the dispatch point between devices. Every operation of [`crate::Tensor`] calls one method here, and each
//! method matches on the device and calls the backend module for it (`backend::cpu` or `backend::cuda`). Operations on
//! several buffers first check that they all live on one device ([`same_device`]), so mixed operands are an error
//! naming both devices. Call sites above this file never name a device.

use crate::backend::cpu::{self, CpuStorage};
use crate::backend::cuda::{self, CudaStorage};
use crate::backend::host_cache;
use crate::error::{Error, Result};
use crate::layout::Layout;
use crate::{DType, Device};
use diffuse_cpu_kernels::adamw::AdamWConfig;
use diffuse_cpu_kernels::attention::AttentionShape;
use diffuse_cpu_kernels::elementwise::{BinaryOp, UnaryOp};
use diffuse_cpu_kernels::gated_residual::GatedShape;
use diffuse_cpu_kernels::group_norm::GroupNormShape;
use diffuse_cpu_kernels::layer_norm::LayerNormShape;
use diffuse_cpu_kernels::layer_norm_modulate::ModulateShape;
use diffuse_cpu_kernels::noise::StepCoefficients;
use diffuse_cpu_kernels::reduce::ReduceOp;
use diffuse_cpu_kernels::sample_mse::SampleShape;
use diffuse_cpu_kernels::Conv2dShape;

/// One operand of a batched matrix product as strides into its buffer: element `(b, i, j)` lies at
/// `offset + b·batch_stride + i·row_stride + j·col_stride` (a batch stride of 0 repeats one matrix).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MatmulOperand {
    pub offset: usize,
    pub batch_stride: usize,
    pub row_stride: usize,
    pub col_stride: usize,
}

#[derive(Debug)]
pub enum Storage {
    Cpu(CpuStorage),
    Cuda(CudaStorage),
}

/// The operands of one operation, all on one device.
enum Same<'a, const N: usize> {
    Cpu([&'a CpuStorage; N]),
    Cuda([&'a CudaStorage; N]),
}

/// Checks that every operand lives on the device of the first (an error naming both devices otherwise) and returns
/// them as that backend's buffers.
fn same_device<'a, const N: usize>(op: &'static str, t: [&'a Storage; N]) -> Result<Same<'a, N>> {
    let devices = t.map(Storage::device);
    if let Some(pair) = devices.windows(2).find(|pair| pair[0] != pair[1]) {
        return Err(Error::DeviceMismatch {
            op,
            lhs: pair[0],
            rhs: pair[1],
        });
    }
    let cpu: Option<Vec<&CpuStorage>> = t
        .iter()
        .map(|s| match s {
            Storage::Cpu(c) => Some(c),
            Storage::Cuda(_) => None,
        })
        .collect();
    if let Some(all) = cpu.and_then(|v| v.try_into().ok()) {
        return Ok(Same::Cpu(all));
    }
    let gpu: Option<Vec<&CudaStorage>> = t
        .iter()
        .map(|s| match s {
            Storage::Cuda(c) => Some(c),
            Storage::Cpu(_) => None,
        })
        .collect();
    gpu.and_then(|v| v.try_into().ok())
        .map(Same::Cuda)
        .ok_or_else(|| Error::argument(op, "no operands"))
}

/// An optional operand that must live on the CPU, as the CPU backend's buffer.
fn cpu_operand<'a>(op: &'static str, s: Option<&'a Storage>) -> Result<Option<&'a CpuStorage>> {
    s.map(|s| match s {
        Storage::Cpu(c) => Ok(c),
        Storage::Cuda(g) => Err(Error::DeviceMismatch {
            op,
            lhs: Device::Cpu,
            rhs: g.device(),
        }),
    })
    .transpose()
}

/// An optional operand that must live on the GPU `device`, as the CUDA backend's buffer.
fn cuda_operand<'a>(
    op: &'static str,
    device: Device,
    s: Option<&'a Storage>,
) -> Result<Option<&'a CudaStorage>> {
    s.map(|s| match s {
        Storage::Cuda(g) if s.device() == device => Ok(g),
        other => Err(Error::DeviceMismatch {
            op,
            lhs: device,
            rhs: other.device(),
        }),
    })
    .transpose()
}

impl Storage {
    pub fn device(&self) -> Device {
        match self {
            Storage::Cpu(_) => Device::Cpu,
            Storage::Cuda(s) => s.device(),
        }
    }

    pub fn dtype(&self) -> DType {
        match self {
            Storage::Cpu(s) => s.dtype(),
            Storage::Cuda(s) => s.dtype(),
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Storage::Cpu(s) => s.len(),
            Storage::Cuda(s) => s.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A new buffer of `len` elements, each `value`.
    pub fn full(device: Device, dtype: DType, len: usize, value: f32) -> Result<Self> {
        match device {
            Device::Cpu => {
                let mut data = host_cache::take(len);
                data.fill(value);
                Ok(Storage::Cpu(CpuStorage::from_f32(data, dtype)))
            }
            Device::Cuda(n) => Ok(Storage::Cuda(cuda::full(n, dtype, len, value)?)),
        }
    }

    pub fn from_f32(device: Device, dtype: DType, data: Vec<f32>) -> Result<Self> {
        match device {
            Device::Cpu => Ok(Storage::Cpu(CpuStorage::from_f32(data, dtype))),
            Device::Cuda(n) => {
                cuda::check_storable("from_f32", n, dtype)?;
                Ok(Storage::Cuda(cuda::from_host(n, &data)?))
            }
        }
    }

    /// The elements of `layout`, in row-major order, as f32 on the host.
    pub fn to_f32_vec(&self, layout: &Layout) -> Result<Vec<f32>> {
        match self {
            Storage::Cpu(s) => {
                cpu::copy_contiguous(s, layout, DType::F32).map(CpuStorage::into_f32)
            }
            Storage::Cuda(s) => cuda::to_f32_vec(s, layout),
        }
    }

    /// The elements of `layout` copied into a new contiguous buffer of `dtype`.
    pub fn copy_contiguous(&self, layout: &Layout, dtype: DType) -> Result<Self> {
        match self {
            Storage::Cpu(s) => Ok(Storage::Cpu(cpu::copy_contiguous(s, layout, dtype)?)),
            Storage::Cuda(s) => Ok(Storage::Cuda(cuda::copy_contiguous_as(s, layout, dtype)?)),
        }
    }

    pub fn to_device(&self, layout: &Layout, device: Device) -> Result<Self> {
        match (self, device) {
            (Storage::Cpu(s), Device::Cpu) => {
                Ok(Storage::Cpu(cpu::copy_contiguous(s, layout, s.dtype())?))
            }
            (Storage::Cpu(s), Device::Cuda(n)) => {
                cuda::check_storable("to_device", n, s.dtype())?;
                let host = cpu::copy_contiguous(s, layout, DType::F32)?.into_f32();
                Ok(Storage::Cuda(cuda::from_host(n, &host)?))
            }
            (Storage::Cuda(s), Device::Cpu) => Ok(Storage::Cpu(CpuStorage::F32(
                cuda::to_f32_vec(s, layout)?.into(),
            ))),
            (Storage::Cuda(s), Device::Cuda(n)) => Ok(Storage::Cuda(cuda::to_cuda(s, layout, n)?)),
        }
    }

    pub fn unary(&self, layout: &Layout, op: UnaryOp) -> Result<Self> {
        match self {
            Storage::Cpu(s) => Ok(Storage::Cpu(cpu::unary(s, layout, op)?)),
            Storage::Cuda(s) => Ok(Storage::Cuda(cuda::unary(s, layout, op)?)),
        }
    }

    pub fn binary(
        &self,
        layout: &Layout,
        rhs: &Storage,
        rhs_layout: &Layout,
        op: BinaryOp,
    ) -> Result<Self> {
        match same_device("binary", [self, rhs])? {
            Same::Cpu([a, b]) => Ok(Storage::Cpu(cpu::binary(a, layout, b, rhs_layout, op)?)),
            Same::Cuda([a, b]) => Ok(Storage::Cuda(cuda::binary(a, layout, b, rhs_layout, op)?)),
        }
    }

    pub fn where_select(
        &self,
        layout: &Layout,
        a: (&Storage, &Layout),
        b: (&Storage, &Layout),
    ) -> Result<Self> {
        match same_device("where", [self, a.0, b.0])? {
            Same::Cpu([c, x, y]) => Ok(Storage::Cpu(cpu::where_select(
                c,
                layout,
                (x, a.1),
                (y, b.1),
            )?)),
            Same::Cuda([c, x, y]) => Ok(Storage::Cuda(cuda::where_select(
                c,
                layout,
                (x, a.1),
                (y, b.1),
            )?)),
        }
    }

    /// Reduces the last dimension of the (permuted) `layout`.
    pub fn reduce_last(&self, layout: &Layout, op: ReduceOp) -> Result<Self> {
        match self {
            Storage::Cpu(s) => Ok(Storage::Cpu(cpu::reduce_last(s, layout, op)?)),
            Storage::Cuda(s) => Ok(Storage::Cuda(cuda::reduce_last(s, layout, op)?)),
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
        let first = parts
            .first()
            .ok_or_else(|| Error::argument("concat", "no parts to concatenate"))?;
        for part in parts {
            same_device("concat", [*first, *part])?;
        }
        match first {
            Storage::Cpu(_) => {
                let ps: Vec<&CpuStorage> = parts
                    .iter()
                    .filter_map(|p| match p {
                        Storage::Cpu(s) => Some(s),
                        Storage::Cuda(_) => None,
                    })
                    .collect();
                Ok(Storage::Cpu(cpu::concat(&ps, sizes, outer, inner, dtype)?))
            }
            Storage::Cuda(_) => {
                let ps: Vec<&CudaStorage> = parts
                    .iter()
                    .filter_map(|p| match p {
                        Storage::Cuda(s) => Some(s),
                        Storage::Cpu(_) => None,
                    })
                    .collect();
                Ok(Storage::Cuda(cuda::concat(
                    &ps, sizes, outer, inner, dtype,
                )?))
            }
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
            Storage::Cuda(s) => Ok(Storage::Cuda(cuda::index_select(
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
            Storage::Cuda(s) => Ok(Storage::Cuda(cuda::index_select_backward(
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
            Storage::Cuda(s) => Ok(Storage::Cuda(cuda::gather(s, outer, dim, inner, index, k)?)),
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
            Storage::Cuda(s) => Ok(Storage::Cuda(cuda::gather_backward(
                s, outer, dim, inner, index, k,
            )?)),
        }
    }

    pub fn upsample_nearest2x(&self, planes: usize, h: usize, w: usize) -> Result<Self> {
        match self {
            Storage::Cpu(s) => Ok(Storage::Cpu(cpu::upsample_nearest2x(s, planes, h, w)?)),
            Storage::Cuda(s) => Ok(Storage::Cuda(cuda::upsample_nearest2x(s, planes, h, w)?)),
        }
    }

    pub fn upsample_nearest2x_backward(&self, planes: usize, h: usize, w: usize) -> Result<Self> {
        match self {
            Storage::Cpu(s) => Ok(Storage::Cpu(cpu::upsample_nearest2x_backward(
                s, planes, h, w,
            )?)),
            Storage::Cuda(s) => Ok(Storage::Cuda(cuda::upsample_nearest2x_backward(
                s, planes, h, w,
            )?)),
        }
    }
    /// `batch` products of `[m, k] × [k, n]` matrices read through strides, plus the contiguous `[n]` `bias` on
    /// every row when given; `dims` is `(batch, m, n, k)`.
    pub fn matmul(
        &self,
        a: &MatmulOperand,
        rhs: &Storage,
        b: &MatmulOperand,
        bias: Option<&Storage>,
        dims: (usize, usize, usize, usize),
    ) -> Result<Self> {
        const OP: &str = "matmul";
        match same_device(OP, [self, rhs])? {
            Same::Cpu([x, y]) => {
                let bias = cpu_operand(OP, bias)?;
                Ok(Storage::Cpu(cpu::matmul((x, a), (y, b), bias, dims)?))
            }
            Same::Cuda([x, y]) => {
                let bias = cuda_operand(OP, x.device(), bias)?;
                Ok(Storage::Cuda(cuda::matmul((x, a), (y, b), bias, dims)?))
            }
        }
    }

    /// Softmax (`log` false) or log-softmax (`log` true) of the rows of a contiguous `[rows, cols]` buffer.
    pub fn softmax(&self, rows: usize, cols: usize, log: bool) -> Result<Self> {
        match self {
            Storage::Cpu(s) => Ok(Storage::Cpu(cpu::softmax(s, rows, cols, log)?)),
            Storage::Cuda(s) => Ok(Storage::Cuda(cuda::softmax(s, rows, cols, log)?)),
        }
    }

    /// `self` is the softmax (or log-softmax) output, `grad` the gradient at it.
    pub fn softmax_backward(
        &self,
        grad: &Storage,
        rows: usize,
        cols: usize,
        log: bool,
    ) -> Result<Self> {
        match same_device("softmax_backward", [self, grad])? {
            Same::Cpu([y, g]) => Ok(Storage::Cpu(cpu::softmax_backward(y, g, rows, cols, log)?)),
            Same::Cuda([y, g]) => Ok(Storage::Cuda(cuda::softmax_backward(
                y, g, rows, cols, log,
            )?)),
        }
    }

    /// `self` is the input (contiguous NCHW).
    /// `self` is the input; `addends` are the optional bias, per-channel addend and residual
    /// ([`crate::Tensor::conv2d_add`]), each on the input's device.
    pub fn conv2d(
        &self,
        shape: &Conv2dShape,
        weight: &Storage,
        addends: [Option<&Storage>; 3],
    ) -> Result<Self> {
        const OP: &str = "conv2d";
        match same_device(OP, [self, weight])? {
            Same::Cpu([x, w]) => {
                let [b, c, r] = addends.map(|a| cpu_operand(OP, a));
                Ok(Storage::Cpu(cpu::conv2d(shape, x, w, [b?, c?, r?])?))
            }
            Same::Cuda([x, w]) => {
                let [b, c, r] = addends.map(|a| cuda_operand(OP, self.device(), a));
                Ok(Storage::Cuda(cuda::conv2d(shape, x, w, [b?, c?, r?])?))
            }
        }
    }

    /// `self` is the output gradient.
    pub fn conv2d_backward_input(&self, shape: &Conv2dShape, weight: &Storage) -> Result<Self> {
        match same_device("conv2d_backward_input", [self, weight])? {
            Same::Cpu([g, w]) => Ok(Storage::Cpu(cpu::conv2d_backward_input(shape, g, w)?)),
            Same::Cuda([g, w]) => Ok(Storage::Cuda(cuda::conv2d_backward_input(shape, g, w)?)),
        }
    }

    /// `self` is the input; returns the weight gradient and, when `with_bias`, the bias gradient.
    pub fn conv2d_backward_weight(
        &self,
        shape: &Conv2dShape,
        grad_out: &Storage,
        with_bias: bool,
    ) -> Result<(Self, Option<Self>)> {
        match same_device("conv2d_backward_weight", [self, grad_out])? {
            Same::Cpu([x, g]) => {
                let (gw, gb) = cpu::conv2d_backward_weight(shape, x, g, with_bias)?;
                Ok((Storage::Cpu(gw), gb.map(Storage::Cpu)))
            }
            Same::Cuda([x, g]) => {
                let (gw, gb) = cuda::conv2d_backward_weight(shape, x, g, with_bias)?;
                Ok((Storage::Cuda(gw), gb.map(Storage::Cuda)))
            }
        }
    }

    /// `self` is the input; returns (y, mean, rstd).
    pub fn group_norm(
        &self,
        shape: &GroupNormShape,
        gamma: &Storage,
        beta: &Storage,
    ) -> Result<[Self; 3]> {
        match same_device("group_norm", [self, gamma, beta])? {
            Same::Cpu([x, g, b]) => Ok(cpu::group_norm(shape, x, g, b)?.map(Storage::Cpu)),
            Same::Cuda([x, g, b]) => Ok(cuda::group_norm(shape, x, g, b)?.map(Storage::Cuda)),
        }
    }

    /// `t` is `[x, gamma, mean, rstd, grad_y]`; returns (∂x, ∂γ, ∂β).
    pub fn group_norm_backward(shape: &GroupNormShape, t: [&Storage; 5]) -> Result<[Self; 3]> {
        match same_device("group_norm_backward", t)? {
            Same::Cpu(t) => Ok(cpu::group_norm_backward(shape, t)?.map(Storage::Cpu)),
            Same::Cuda(t) => Ok(cuda::group_norm_backward(shape, t)?.map(Storage::Cuda)),
        }
    }

    /// `self` is the input; returns (silu(group_norm(x)), mean, rstd).
    pub fn group_norm_silu(
        &self,
        shape: &GroupNormShape,
        gamma: &Storage,
        beta: &Storage,
    ) -> Result<[Self; 3]> {
        match same_device("group_norm_silu", [self, gamma, beta])? {
            Same::Cpu([x, g, b]) => Ok(cpu::group_norm_silu(shape, x, g, b)?.map(Storage::Cpu)),
            Same::Cuda([x, g, b]) => Ok(cuda::group_norm_silu(shape, x, g, b)?.map(Storage::Cuda)),
        }
    }

    /// `t` is `[x, gamma, beta, mean, rstd, grad_y]`; returns (∂x, ∂γ, ∂β).
    pub fn group_norm_silu_backward(shape: &GroupNormShape, t: [&Storage; 6]) -> Result<[Self; 3]> {
        match same_device("group_norm_silu_backward", t)? {
            Same::Cpu(t) => Ok(cpu::group_norm_silu_backward(shape, t)?.map(Storage::Cpu)),
            Same::Cuda(t) => Ok(cuda::group_norm_silu_backward(shape, t)?.map(Storage::Cuda)),
        }
    }

    /// `self` is the input; returns (y, mean, rstd).
    pub fn layer_norm(
        &self,
        shape: &LayerNormShape,
        gamma: &Storage,
        beta: &Storage,
    ) -> Result<[Self; 3]> {
        match same_device("layer_norm", [self, gamma, beta])? {
            Same::Cpu([x, g, b]) => Ok(cpu::layer_norm(shape, x, g, b)?.map(Storage::Cpu)),
            Same::Cuda([x, g, b]) => Ok(cuda::layer_norm(shape, x, g, b)?.map(Storage::Cuda)),
        }
    }

    /// `t` is `[x, gamma, mean, rstd, grad_y]`; returns (∂x, ∂γ, ∂β).
    pub fn layer_norm_backward(shape: &LayerNormShape, t: [&Storage; 5]) -> Result<[Self; 3]> {
        match same_device("layer_norm_backward", t)? {
            Same::Cpu(t) => Ok(cpu::layer_norm_backward(shape, t)?.map(Storage::Cpu)),
            Same::Cuda(t) => Ok(cuda::layer_norm_backward(shape, t)?.map(Storage::Cuda)),
        }
    }

    /// `self` is the input `x`; returns (y, mean, rstd) of the modulated layer norm.
    pub fn layer_norm_modulate(
        &self,
        shape: &ModulateShape,
        scale: &Storage,
        shift: &Storage,
    ) -> Result<[Self; 3]> {
        match same_device("layer_norm_modulate", [self, scale, shift])? {
            Same::Cpu([x, s, b]) => Ok(cpu::layer_norm_modulate(shape, x, s, b)?.map(Storage::Cpu)),
            Same::Cuda([x, s, b]) => {
                Ok(cuda::layer_norm_modulate(shape, x, s, b)?.map(Storage::Cuda))
            }
        }
    }

    /// `t` is `[x, scale, mean, rstd, grad_y]`; returns (∂x, ∂scale, ∂shift).
    pub fn layer_norm_modulate_backward(
        shape: &ModulateShape,
        t: [&Storage; 5],
    ) -> Result<[Self; 3]> {
        match same_device("layer_norm_modulate_backward", t)? {
            Same::Cpu(t) => Ok(cpu::layer_norm_modulate_backward(shape, t)?.map(Storage::Cpu)),
            Same::Cuda(t) => Ok(cuda::layer_norm_modulate_backward(shape, t)?.map(Storage::Cuda)),
        }
    }

    /// `self` is the residual `x`; returns `x + gate[n]∘y`.
    pub fn gated_residual(&self, shape: &GatedShape, gate: &Storage, y: &Storage) -> Result<Self> {
        match same_device("gated_residual", [self, gate, y])? {
            Same::Cpu([x, g, y]) => Ok(Storage::Cpu(cpu::gated_residual(shape, x, g, y)?)),
            Same::Cuda([x, g, y]) => Ok(Storage::Cuda(cuda::gated_residual(shape, x, g, y)?)),
        }
    }

    /// `t` is `[gate, y, grad_out]`; returns (∂y, ∂gate).
    pub fn gated_residual_backward(shape: &GatedShape, t: [&Storage; 3]) -> Result<[Self; 2]> {
        match same_device("gated_residual_backward", t)? {
            Same::Cpu(t) => Ok(cpu::gated_residual_backward(shape, t)?.map(Storage::Cpu)),
            Same::Cuda(t) => Ok(cuda::gated_residual_backward(shape, t)?.map(Storage::Cuda)),
        }
    }

    /// GEGLU of `self`, contiguous `[rows, 2·inner]`: `[rows, inner]`.
    pub fn geglu(&self, rows: usize, inner: usize) -> Result<Self> {
        match self {
            Storage::Cpu(x) => Ok(Storage::Cpu(cpu::geglu(x, rows, inner)?)),
            Storage::Cuda(x) => Ok(Storage::Cuda(cuda::geglu(x, rows, inner)?)),
        }
    }

    /// `self` is GEGLU's input, `grad` the gradient at its output; returns ∂input.
    pub fn geglu_backward(&self, grad: &Storage, rows: usize, inner: usize) -> Result<Self> {
        match same_device("geglu_backward", [self, grad])? {
            Same::Cpu([x, g]) => Ok(Storage::Cpu(cpu::geglu_backward(x, g, rows, inner)?)),
            Same::Cuda([x, g]) => Ok(Storage::Cuda(cuda::geglu_backward(x, g, rows, inner)?)),
        }
    }

    /// The per-sample MSE of `self` (the prediction) against `target`.
    pub fn sample_mse(&self, shape: &SampleShape, target: &Storage) -> Result<Self> {
        match same_device("sample_mse", [self, target])? {
            Same::Cpu([p, t]) => Ok(Storage::Cpu(cpu::sample_mse(shape, p, t)?)),
            Same::Cuda([p, t]) => Ok(Storage::Cuda(cuda::sample_mse(shape, p, t)?)),
        }
    }

    /// `t` is `[prediction, target, grad_mse]`; returns ∂prediction.
    pub fn sample_mse_backward(shape: &SampleShape, t: [&Storage; 3]) -> Result<Self> {
        match same_device("sample_mse_backward", t)? {
            Same::Cpu(t) => Ok(Storage::Cpu(cpu::sample_mse_backward(shape, t)?)),
            Same::Cuda(t) => Ok(Storage::Cuda(cuda::sample_mse_backward(shape, t)?)),
        }
    }

    /// Returns (out, lse) for `[q, k, v]` and the optional additive score `bias`.
    pub fn attention(
        shape: &AttentionShape,
        [q, k, v]: [&Storage; 3],
        bias: Option<&Storage>,
    ) -> Result<[Self; 2]> {
        const OP: &str = "attention";
        match bias {
            None => match same_device(OP, [q, k, v])? {
                Same::Cpu(t) => Ok(cpu::attention(shape, t, None)?.map(Storage::Cpu)),
                Same::Cuda(t) => Ok(cuda::attention(shape, t, None)?.map(Storage::Cuda)),
            },
            Some(bias) => match same_device(OP, [q, k, v, bias])? {
                Same::Cpu([q, k, v, b]) => {
                    Ok(cpu::attention(shape, [q, k, v], Some(b))?.map(Storage::Cpu))
                }
                Same::Cuda([q, k, v, b]) => {
                    Ok(cuda::attention(shape, [q, k, v], Some(b))?.map(Storage::Cuda))
                }
            },
        }
    }

    /// `t` is `[q, k, v, out, lse, grad_out]`, `bias` the forward's; returns (∂q, ∂k, ∂v).
    pub fn attention_backward(
        shape: &AttentionShape,
        t: [&Storage; 6],
        bias: Option<&Storage>,
    ) -> Result<[Self; 3]> {
        const OP: &str = "attention_backward";
        match bias {
            None => match same_device(OP, t)? {
                Same::Cpu(t) => Ok(cpu::attention_backward(shape, t, None)?.map(Storage::Cpu)),
                Same::Cuda(t) => Ok(cuda::attention_backward(shape, t, None)?.map(Storage::Cuda)),
            },
            Some(bias) => {
                let [q, k, v, out, lse, g] = t;
                match same_device(OP, [q, k, v, out, lse, g, bias])? {
                    Same::Cpu([q, k, v, out, lse, g, b]) => {
                        Ok(
                            cpu::attention_backward(shape, [q, k, v, out, lse, g], Some(b))?
                                .map(Storage::Cpu),
                        )
                    }
                    Same::Cuda([q, k, v, out, lse, g, b]) => {
                        Ok(
                            cuda::attention_backward(shape, [q, k, v, out, lse, g], Some(b))?
                                .map(Storage::Cuda),
                        )
                    }
                }
            }
        }
    }

    /// `len` Philox stream elements from `offset`: standard normal when `normal`, else uniform on (0, 1).
    pub fn random(
        device: Device,
        dtype: DType,
        len: usize,
        (seed, offset): (u64, u64),
        normal: bool,
    ) -> Result<Self> {
        match device {
            Device::Cpu => Ok(Storage::Cpu(cpu::random(len, seed, offset, normal, dtype))),
            Device::Cuda(n) => Ok(Storage::Cuda(cuda::random(
                n,
                dtype,
                len,
                (seed, offset),
                normal,
            )?)),
        }
    }

    /// One fused AdamW step on `self` (the parameters) in place, with moment buffers `m` and `v`.
    pub fn adamw_step(
        &mut self,
        cfg: &AdamWConfig,
        step: u64,
        grad: &Storage,
        m: &mut Storage,
        v: &mut Storage,
    ) -> Result<()> {
        same_device("adamw_step", [&*self, grad, &*m, &*v])?;
        let device = self.device();
        match (self, grad, m, v) {
            (Storage::Cpu(p), Storage::Cpu(g), Storage::Cpu(m), Storage::Cpu(v)) => {
                cpu::adamw_step(cfg, step, p, g, m, v)
            }
            (Storage::Cuda(p), Storage::Cuda(g), Storage::Cuda(m), Storage::Cuda(v)) => {
                cuda::adamw_step(cfg, step, p, g, m, v)
            }
            (_, other, _, _) => Err(Error::DeviceMismatch {
                op: "adamw_step",
                lhs: device,
                rhs: other.device(),
            }),
        }
    }

    /// One SGD-with-momentum step on `self` (the parameters) in place, with momentum buffer `velocity`.
    pub fn sgd_momentum_step(
        &mut self,
        lr: f32,
        momentum: f32,
        weight_decay: f32,
        grad: &Storage,
        velocity: &mut Storage,
    ) -> Result<()> {
        same_device("sgd_momentum_step", [&*self, grad, &*velocity])?;
        let device = self.device();
        match (self, grad, velocity) {
            (Storage::Cpu(p), Storage::Cpu(g), Storage::Cpu(b)) => {
                cpu::sgd_momentum_step(lr, momentum, weight_decay, p, g, b)
            }
            (Storage::Cuda(p), Storage::Cuda(g), Storage::Cuda(b)) => {
                cuda::sgd_momentum_step(lr, momentum, weight_decay, p, g, b)
            }
            (_, other, _) => Err(Error::DeviceMismatch {
                op: "sgd_momentum_step",
                lhs: device,
                rhs: other.device(),
            }),
        }
    }

    /// Overwrites this whole buffer with the elements of `src` under `layout` (the caller checked the counts agree).
    pub fn assign(&mut self, src: &Storage, layout: &Layout) -> Result<()> {
        let device = self.device();
        match (self, src) {
            (Storage::Cpu(d), Storage::Cpu(s)) => cpu::assign(d, s, layout),
            (Storage::Cuda(d), Storage::Cuda(s)) if d.device() == s.device() => {
                cuda::assign(d, s, layout)
            }
            (_, s) => Err(Error::DeviceMismatch {
                op: "assign",
                lhs: device,
                rhs: s.device(),
            }),
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
            Storage::Cuda(s) => {
                let (x_t, eps) = cuda::q_sample(s, sqrt_ab, sqrt_1mab, seed, offset)?;
                Ok((Storage::Cuda(x_t), Storage::Cuda(eps)))
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
        match same_device("sampler_step", [self, model_out])? {
            Same::Cpu([x, m]) => {
                let (prev, x0) = cpu::sampler_step(x, m, coef, clip, seed, offset)?;
                Ok((Storage::Cpu(prev), Storage::Cpu(x0)))
            }
            Same::Cuda([x, m]) => {
                let (prev, x0) = cuda::sampler_step(x, m, coef, clip, seed, offset)?;
                Ok((Storage::Cuda(prev), Storage::Cuda(x0)))
            }
        }
    }
}
