//! The CPU backend: host buffers, and the glue from tensor layouts to the slice kernels of `diffuse-cpu-kernels`.
//!
//! Kernels compute in f32. An f16/bf16 buffer is widened to f32 on the way in ([`CpuStorage::to_f32`] borrows an f32
//! buffer and converts the others) and rounded back on the way out ([`CpuStorage::from_f32`]).

use super::host_cache::{take, HostVec};
use crate::error::{Error, Result};
use crate::layout::{checked_numel, dims_product, Layout};
use crate::storage::MatmulOperand;
use crate::DType;
use diffuse_cpu_kernels::adamw::{self, AdamWConfig};
use diffuse_cpu_kernels::attention::{self, AttentionShape};
use diffuse_cpu_kernels::elementwise::{self, BinaryOp, UnaryOp};
use diffuse_cpu_kernels::gated_residual::{self, GatedShape};
use diffuse_cpu_kernels::geglu;
use diffuse_cpu_kernels::group_norm::{self, GroupNormShape};
use diffuse_cpu_kernels::group_norm_silu;
use diffuse_cpu_kernels::layer_norm::{self, LayerNormShape};
use diffuse_cpu_kernels::layer_norm_modulate::{self, ModulateShape};
use diffuse_cpu_kernels::noise::{self, StepCoefficients};
use diffuse_cpu_kernels::reduce::{self, ReduceOp};
use diffuse_cpu_kernels::sample_mse::{self, SampleShape};
use diffuse_cpu_kernels::{conv2d, gemm, index, philox, softmax, Conv2dShape, MatMut, MatRef};
use half::{bf16, f16};
use std::borrow::Cow;

#[derive(Debug, Clone)]
pub enum CpuStorage {
    F32(HostVec),
    F16(Vec<f16>),
    BF16(Vec<bf16>),
}

impl CpuStorage {
    pub fn dtype(&self) -> DType {
        match self {
            CpuStorage::F32(_) => DType::F32,
            CpuStorage::F16(_) => DType::F16,
            CpuStorage::BF16(_) => DType::BF16,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            CpuStorage::F32(v) => v.len(),
            CpuStorage::F16(v) => v.len(),
            CpuStorage::BF16(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The whole buffer as f32: borrowed when it already is, widened otherwise.
    pub fn to_f32(&self) -> Cow<'_, [f32]> {
        match self {
            CpuStorage::F32(v) => Cow::Borrowed(&v[..]),
            CpuStorage::F16(v) => Cow::Owned(v.iter().map(|x| x.to_f32()).collect()),
            CpuStorage::BF16(v) => Cow::Owned(v.iter().map(|x| x.to_f32()).collect()),
        }
    }

    /// An f32 result stored as `dtype` (rounding to nearest even for the half types).
    pub fn from_f32(data: Vec<f32>, dtype: DType) -> Self {
        match dtype {
            DType::F32 => CpuStorage::F32(data.into()),
            DType::F16 => CpuStorage::F16(data.iter().map(|&x| f16::from_f32(x)).collect()),
            DType::BF16 => CpuStorage::BF16(data.iter().map(|&x| bf16::from_f32(x)).collect()),
        }
    }

    pub fn into_f32(self) -> Vec<f32> {
        match self {
            CpuStorage::F32(v) => v.into_vec(),
            other => other.to_f32().into_owned(),
        }
    }

    /// Mutable f32 access for in-place updates (optimizers); `None` for the half types, which are never updated in place.
    pub fn as_f32_mut(&mut self) -> Option<&mut [f32]> {
        match self {
            CpuStorage::F32(v) => Some(v),
            _ => None,
        }
    }
}

/// An output buffer of `Π dims` elements from the [`host_cache`] (its contents are stale: every kernel overwrites its
/// whole output). The sizes come from shapes that may be empty yet huge (`[usize::MAX, 2, 0]`), so the product is
/// taken zero-first and checked: an overflow is an error, never a wrapped length or a panic.
fn output(op: &'static str, dims: &[usize]) -> Result<Vec<f32>> {
    Ok(take(checked_numel(op, dims)?))
}

pub fn copy_contiguous(s: &CpuStorage, layout: &Layout, dtype: DType) -> Result<CpuStorage> {
    let src = s.to_f32();
    let mut out = take(layout.numel());
    elementwise::copy_strided(layout.shape(), &src, layout.strided_ref(), &mut out)?;
    Ok(CpuStorage::from_f32(out, dtype))
}

pub fn unary(s: &CpuStorage, layout: &Layout, op: UnaryOp) -> Result<CpuStorage> {
    let src = s.to_f32();
    let mut out = take(layout.numel());
    elementwise::unary(op, layout.shape(), &src, layout.strided_ref(), &mut out)?;
    Ok(CpuStorage::from_f32(out, s.dtype()))
}

/// Both layouts already have the broadcast shape (the tensor layer broadcasts them).
pub fn binary(
    a: &CpuStorage,
    al: &Layout,
    b: &CpuStorage,
    bl: &Layout,
    op: BinaryOp,
) -> Result<CpuStorage> {
    let (x, y) = (a.to_f32(), b.to_f32());
    let mut out = take(al.numel());
    elementwise::binary(
        op,
        al.shape(),
        &x,
        al.strided_ref(),
        &y,
        bl.strided_ref(),
        &mut out,
    )?;
    Ok(CpuStorage::from_f32(out, a.dtype()))
}

pub fn where_select(
    c: &CpuStorage,
    cl: &Layout,
    a: (&CpuStorage, &Layout),
    b: (&CpuStorage, &Layout),
) -> Result<CpuStorage> {
    let (cond, x, y) = (c.to_f32(), a.0.to_f32(), b.0.to_f32());
    let mut out = take(cl.numel());
    elementwise::where_select(
        cl.shape(),
        &cond,
        cl.strided_ref(),
        &x,
        a.1.strided_ref(),
        &y,
        b.1.strided_ref(),
        &mut out,
    )?;
    Ok(CpuStorage::from_f32(out, a.0.dtype()))
}

pub fn reduce_last(s: &CpuStorage, layout: &Layout, op: ReduceOp) -> Result<CpuStorage> {
    let n = layout.shape().last().copied().unwrap_or(1);
    let rows = dims_product(&layout.shape()[..layout.rank().saturating_sub(1)]);
    if let (ReduceOp::Sum, &[columns, _], &[1, row_stride]) = (op, layout.shape(), layout.strides())
    {
        if row_stride == columns {
            // The transpose of a contiguous [n, columns] matrix (a sum over leading axes): summed in place.
            let src = s.to_f32();
            let start = layout.offset();
            let mut out = take(columns);
            reduce::sum_columns(n, columns, &src[start..start + n * columns], &mut out)?;
            return Ok(CpuStorage::from_f32(out, s.dtype()));
        }
    }
    let contiguous = copy_contiguous(s, layout, DType::F32)?;
    let src = contiguous.to_f32();
    let mut out = take(rows);
    reduce::reduce_rows(op, rows, n, &src, &mut out)?;
    // Indices stay exact only in f32.
    let dtype = if op == ReduceOp::ArgMax {
        DType::F32
    } else {
        s.dtype()
    };
    Ok(CpuStorage::from_f32(out, dtype))
}

pub fn concat(
    parts: &[&CpuStorage],
    sizes: &[usize],
    outer: usize,
    inner: usize,
    dtype: DType,
) -> Result<CpuStorage> {
    let widened: Vec<Cow<'_, [f32]>> = parts.iter().map(|p| p.to_f32()).collect();
    let slices: Vec<&[f32]> = widened.iter().map(|c| c.as_ref()).collect();
    let total = sizes
        .iter()
        .try_fold(0usize, |acc, &size| acc.checked_add(size))
        .ok_or_else(|| Error::shape("concat", format!("sizes {sizes:?} overflow usize")))?;
    let mut out = output("concat", &[outer, total, inner])?;
    index::concat(&slices, sizes, outer, inner, &mut out)?;
    Ok(CpuStorage::from_f32(out, dtype))
}

pub fn index_select(
    s: &CpuStorage,
    outer: usize,
    dim: usize,
    inner: usize,
    indices: &[usize],
) -> Result<CpuStorage> {
    let mut out = output("index_select", &[outer, indices.len(), inner])?;
    index::index_select(&s.to_f32(), outer, dim, inner, indices, &mut out)?;
    Ok(CpuStorage::from_f32(out, s.dtype()))
}

pub fn index_select_backward(
    g: &CpuStorage,
    outer: usize,
    dim: usize,
    inner: usize,
    indices: &[usize],
) -> Result<CpuStorage> {
    let mut out = output("index_select_backward", &[outer, dim, inner])?;
    index::index_select_backward(&g.to_f32(), outer, dim, inner, indices, &mut out)?;
    Ok(CpuStorage::from_f32(out, g.dtype()))
}

pub fn gather(
    s: &CpuStorage,
    outer: usize,
    dim: usize,
    inner: usize,
    idx: &[usize],
    k: usize,
) -> Result<CpuStorage> {
    let mut out = output("gather", &[outer, k, inner])?;
    index::gather(&s.to_f32(), outer, dim, inner, idx, k, &mut out)?;
    Ok(CpuStorage::from_f32(out, s.dtype()))
}

pub fn gather_backward(
    g: &CpuStorage,
    outer: usize,
    dim: usize,
    inner: usize,
    idx: &[usize],
    k: usize,
) -> Result<CpuStorage> {
    let mut out = output("gather_backward", &[outer, dim, inner])?;
    index::gather_backward(&g.to_f32(), outer, dim, inner, idx, k, &mut out)?;
    Ok(CpuStorage::from_f32(out, g.dtype()))
}

pub fn upsample_nearest2x(s: &CpuStorage, planes: usize, h: usize, w: usize) -> Result<CpuStorage> {
    let mut out = output("upsample_nearest2x", &[planes, 4, h, w])?;
    index::upsample_nearest2x(&s.to_f32(), planes, h, w, &mut out)?;
    Ok(CpuStorage::from_f32(out, s.dtype()))
}

pub fn upsample_nearest2x_backward(
    g: &CpuStorage,
    planes: usize,
    h: usize,
    w: usize,
) -> Result<CpuStorage> {
    let mut out = output("upsample_nearest2x_backward", &[planes, h, w])?;
    index::upsample_nearest2x_backward(&g.to_f32(), planes, h, w, &mut out)?;
    Ok(CpuStorage::from_f32(out, g.dtype()))
}

pub fn q_sample(
    x0: &CpuStorage,
    sqrt_ab: &[f32],
    sqrt_1mab: &[f32],
    seed: u64,
    offset: u64,
) -> Result<(CpuStorage, CpuStorage)> {
    let x = x0.to_f32();
    let (mut x_t, mut eps) = (take(x.len()), take(x.len()));
    noise::q_sample(&x, sqrt_ab, sqrt_1mab, seed, offset, &mut x_t, &mut eps)?;
    Ok((
        CpuStorage::from_f32(x_t, x0.dtype()),
        CpuStorage::from_f32(eps, x0.dtype()),
    ))
}

pub fn sampler_step(
    x_t: &CpuStorage,
    model_out: &CpuStorage,
    coef: &[StepCoefficients],
    clip: Option<f32>,
    seed: u64,
    offset: u64,
) -> Result<(CpuStorage, CpuStorage)> {
    let (x, m) = (x_t.to_f32(), model_out.to_f32());
    let (mut prev, mut x0) = (take(x.len()), take(x.len()));
    noise::sampler_step(&x, &m, coef, clip, seed, offset, &mut prev, &mut x0)?;
    Ok((
        CpuStorage::from_f32(prev, x_t.dtype()),
        CpuStorage::from_f32(x0, x_t.dtype()),
    ))
}

// ---- heavy kernels: matmul, softmax, convolution, normalisation, attention, random numbers, optimiser ----------------

fn operand<'a>(data: &'a [f32], view: &MatmulOperand) -> MatRef<'a> {
    MatRef {
        data: data.get(view.offset..).unwrap_or(&[]),
        row_stride: view.row_stride,
        col_stride: view.col_stride,
    }
}

/// `batch` products `C_b = A_b · B_b` read through strides, plus `bias` `[n]` on every row when given (added by the
/// GEMM's output stage, [`gemm::sgemm_batched_bias`]); the result is contiguous `[batch, m, n]`.
pub fn matmul(
    a: (&CpuStorage, &MatmulOperand),
    b: (&CpuStorage, &MatmulOperand),
    bias: Option<&CpuStorage>,
    (batch, m, n, k): (usize, usize, usize, usize),
) -> Result<CpuStorage> {
    let a_dtype = a.0.dtype();
    let (x, y) = (a.0.to_f32(), b.0.to_f32());
    let mut out = output("matmul", &[batch, m, n])?;
    let (lhs, rhs) = (operand(&x, a.1), operand(&y, b.1));
    let (lhs_batch, rhs_batch) = (a.1.batch_stride, b.1.batch_stride);
    let c = MatMut::row_major(&mut out, n);
    let c_batch = dims_product(&[m, n]);
    match bias {
        Some(bias) => gemm::sgemm_batched_bias(
            batch,
            m,
            n,
            k,
            1.0,
            lhs,
            lhs_batch,
            rhs,
            rhs_batch,
            &bias.to_f32(),
            c,
            c_batch,
        )?,
        None => gemm::sgemm_batched(
            batch, m, n, k, 1.0, lhs, lhs_batch, rhs, rhs_batch, 0.0, c, c_batch,
        )?,
    }
    Ok(CpuStorage::from_f32(out, a_dtype))
}

/// Softmax (or log-softmax) of each row of a contiguous `[rows, cols]` buffer.
pub fn softmax(s: &CpuStorage, rows: usize, cols: usize, log: bool) -> Result<CpuStorage> {
    let mut out = output("softmax", &[rows, cols])?;
    if log {
        softmax::log_softmax(rows, cols, &s.to_f32(), &mut out)?;
    } else {
        softmax::softmax(rows, cols, &s.to_f32(), &mut out)?;
    }
    Ok(CpuStorage::from_f32(out, s.dtype()))
}

/// The input gradient of [`softmax`] from its output `y` and the output gradient `g`.
pub fn softmax_backward(
    y: &CpuStorage,
    g: &CpuStorage,
    rows: usize,
    cols: usize,
    log: bool,
) -> Result<CpuStorage> {
    let mut out = output("softmax", &[rows, cols])?;
    let (y32, g32) = (y.to_f32(), g.to_f32());
    if log {
        softmax::log_softmax_backward(rows, cols, &y32, &g32, &mut out)?;
    } else {
        softmax::softmax_backward(rows, cols, &y32, &g32, &mut out)?;
    }
    Ok(CpuStorage::from_f32(out, y.dtype()))
}

/// The convolution with its optional addends `[bias, channel, residual]` fused into the output stage.
pub fn conv2d(
    s: &Conv2dShape,
    x: &CpuStorage,
    w: &CpuStorage,
    addends: [Option<&CpuStorage>; 3],
) -> Result<CpuStorage> {
    let mut out = take(s.output_len());
    let [bias, channel, residual] = addends.map(|a| a.map(CpuStorage::to_f32));
    let addends = conv2d::Conv2dAddends {
        bias: bias.as_deref(),
        channel: channel.as_deref(),
        residual: residual.as_deref(),
    };
    conv2d::conv2d_forward_add(s, &x.to_f32(), &w.to_f32(), addends, &mut out)?;
    Ok(CpuStorage::from_f32(out, x.dtype()))
}

pub fn conv2d_backward_input(
    s: &Conv2dShape,
    grad_out: &CpuStorage,
    w: &CpuStorage,
) -> Result<CpuStorage> {
    let mut out = take(s.input_len());
    conv2d::conv2d_backward_input(s, &grad_out.to_f32(), &w.to_f32(), &mut out)?;
    Ok(CpuStorage::from_f32(out, grad_out.dtype()))
}

/// The weight gradient and, when `with_bias`, the bias gradient.
pub fn conv2d_backward_weight(
    s: &Conv2dShape,
    x: &CpuStorage,
    grad_out: &CpuStorage,
    with_bias: bool,
) -> Result<(CpuStorage, Option<CpuStorage>)> {
    let mut gw = take(s.weight_len());
    let mut gb = with_bias.then(|| take(s.out_channels));
    conv2d::conv2d_backward_weight(
        s,
        &x.to_f32(),
        &grad_out.to_f32(),
        &mut gw,
        gb.as_deref_mut(),
    )?;
    let dtype = grad_out.dtype();
    Ok((
        CpuStorage::from_f32(gw, dtype),
        gb.map(|b| CpuStorage::from_f32(b, dtype)),
    ))
}

/// The signature both group-norm forward kernels share: shape, x, γ, β, then y, mean and rstd written.
type GroupNormForward = fn(
    &GroupNormShape,
    &[f32],
    &[f32],
    &[f32],
    &mut [f32],
    &mut [f32],
    &mut [f32],
) -> diffuse_cpu_kernels::error::Result<()>;

/// Runs `kernel` (named `op`) in f32: (y in the dtype of `x`, mean, rstd), the statistics f32 whatever that dtype.
fn group_norm_forward_with(
    op: &'static str,
    kernel: GroupNormForward,
    s: &GroupNormShape,
    [x, gamma, beta]: [&CpuStorage; 3],
) -> Result<[CpuStorage; 3]> {
    let (mut y, mut mean, mut rstd) = (
        take(x.len()),
        output(op, &[s.batch, s.groups])?,
        output(op, &[s.batch, s.groups])?,
    );
    kernel(
        s,
        &x.to_f32(),
        &gamma.to_f32(),
        &beta.to_f32(),
        &mut y,
        &mut mean,
        &mut rstd,
    )?;
    Ok([
        CpuStorage::from_f32(y, x.dtype()),
        CpuStorage::F32(mean.into()),
        CpuStorage::F32(rstd.into()),
    ])
}

/// (y, mean, rstd); the statistics stay f32 whatever the dtype of `x`.
pub fn group_norm(
    s: &GroupNormShape,
    x: &CpuStorage,
    gamma: &CpuStorage,
    beta: &CpuStorage,
) -> Result<[CpuStorage; 3]> {
    group_norm_forward_with(
        "group_norm",
        group_norm::group_norm_forward,
        s,
        [x, gamma, beta],
    )
}

/// (∂x, ∂γ, ∂β) from the input, γ, the saved statistics and ∂y: `[x, gamma, mean, rstd, grad_y]`.
pub fn group_norm_backward(s: &GroupNormShape, t: [&CpuStorage; 5]) -> Result<[CpuStorage; 3]> {
    let [x, gamma, mean, rstd, gy] = t;
    let (mut gx, mut gg, mut gb) = (take(x.len()), take(s.channels), take(s.channels));
    group_norm::group_norm_backward(
        s,
        &x.to_f32(),
        &gamma.to_f32(),
        &mean.to_f32(),
        &rstd.to_f32(),
        &gy.to_f32(),
        &mut gx,
        &mut gg,
        &mut gb,
    )?;
    let dtype = gy.dtype();
    Ok([gx, gg, gb].map(|v| CpuStorage::from_f32(v, dtype)))
}

/// (silu(group_norm(x)), mean, rstd); the statistics stay f32 whatever the dtype of `x`.
pub fn group_norm_silu(
    s: &GroupNormShape,
    x: &CpuStorage,
    gamma: &CpuStorage,
    beta: &CpuStorage,
) -> Result<[CpuStorage; 3]> {
    group_norm_forward_with(
        "group_norm_silu",
        group_norm_silu::group_norm_silu_forward,
        s,
        [x, gamma, beta],
    )
}

/// (∂x, ∂γ, ∂β) of [`group_norm_silu`]: `[x, gamma, beta, mean, rstd, grad_y]`.
pub fn group_norm_silu_backward(
    s: &GroupNormShape,
    t: [&CpuStorage; 6],
) -> Result<[CpuStorage; 3]> {
    let [x, gamma, beta, mean, rstd, gy] = t;
    let (mut gx, mut gg, mut gb) = (take(x.len()), take(s.channels), take(s.channels));
    group_norm_silu::group_norm_silu_backward(
        s,
        &x.to_f32(),
        &gamma.to_f32(),
        &beta.to_f32(),
        &mean.to_f32(),
        &rstd.to_f32(),
        &gy.to_f32(),
        &mut gx,
        &mut gg,
        &mut gb,
    )?;
    let dtype = gy.dtype();
    Ok([gx, gg, gb].map(|v| CpuStorage::from_f32(v, dtype)))
}

/// (y, mean, rstd); the statistics stay f32.
pub fn layer_norm(
    s: &LayerNormShape,
    x: &CpuStorage,
    gamma: &CpuStorage,
    beta: &CpuStorage,
) -> Result<[CpuStorage; 3]> {
    let (mut y, mut mean, mut rstd) = (take(x.len()), take(s.rows), take(s.rows));
    layer_norm::layer_norm_forward(
        s,
        &x.to_f32(),
        &gamma.to_f32(),
        &beta.to_f32(),
        &mut y,
        &mut mean,
        &mut rstd,
    )?;
    Ok([
        CpuStorage::from_f32(y, x.dtype()),
        CpuStorage::F32(mean.into()),
        CpuStorage::F32(rstd.into()),
    ])
}

/// (∂x, ∂γ, ∂β) from `[x, gamma, mean, rstd, grad_y]`.
pub fn layer_norm_backward(s: &LayerNormShape, t: [&CpuStorage; 5]) -> Result<[CpuStorage; 3]> {
    let [x, gamma, mean, rstd, gy] = t;
    let (mut gx, mut gg, mut gb) = (take(x.len()), take(s.dim), take(s.dim));
    layer_norm::layer_norm_backward(
        s,
        &x.to_f32(),
        &gamma.to_f32(),
        &mean.to_f32(),
        &rstd.to_f32(),
        &gy.to_f32(),
        &mut gx,
        &mut gg,
        &mut gb,
    )?;
    let dtype = gy.dtype();
    Ok([gx, gg, gb].map(|v| CpuStorage::from_f32(v, dtype)))
}

/// (y, mean, rstd) of the modulated layer norm; the statistics stay f32.
pub fn layer_norm_modulate(
    s: &ModulateShape,
    x: &CpuStorage,
    scale: &CpuStorage,
    shift: &CpuStorage,
) -> Result<[CpuStorage; 3]> {
    let rows = checked_numel("layer_norm_modulate", &[s.batch, s.tokens])?;
    let (mut y, mut mean, mut rstd) = (take(x.len()), take(rows), take(rows));
    layer_norm_modulate::layer_norm_modulate_forward(
        s,
        &x.to_f32(),
        &scale.to_f32(),
        &shift.to_f32(),
        &mut y,
        &mut mean,
        &mut rstd,
    )?;
    Ok([
        CpuStorage::from_f32(y, x.dtype()),
        CpuStorage::F32(mean.into()),
        CpuStorage::F32(rstd.into()),
    ])
}

/// (∂x, ∂scale, ∂shift) from `[x, scale, mean, rstd, grad_y]`.
pub fn layer_norm_modulate_backward(
    s: &ModulateShape,
    t: [&CpuStorage; 5],
) -> Result<[CpuStorage; 3]> {
    let [x, scale, mean, rstd, gy] = t;
    let (mut gx, mut gs, mut gb) = (take(x.len()), take(scale.len()), take(scale.len()));
    layer_norm_modulate::layer_norm_modulate_backward(
        s,
        &x.to_f32(),
        &scale.to_f32(),
        &mean.to_f32(),
        &rstd.to_f32(),
        &gy.to_f32(),
        &mut gx,
        &mut gs,
        &mut gb,
    )?;
    let dtype = gy.dtype();
    Ok([gx, gs, gb].map(|v| CpuStorage::from_f32(v, dtype)))
}

/// `x + gate[n]∘y`.
pub fn gated_residual(
    s: &GatedShape,
    x: &CpuStorage,
    gate: &CpuStorage,
    y: &CpuStorage,
) -> Result<CpuStorage> {
    let mut out = take(x.len());
    gated_residual::gated_residual_forward(s, &x.to_f32(), &gate.to_f32(), &y.to_f32(), &mut out)?;
    Ok(CpuStorage::from_f32(out, x.dtype()))
}

/// (∂y, ∂gate) from `[gate, y, grad_out]`.
pub fn gated_residual_backward(s: &GatedShape, t: [&CpuStorage; 3]) -> Result<[CpuStorage; 2]> {
    let [gate, y, g] = t;
    let (mut gy, mut gg) = (take(y.len()), take(gate.len()));
    gated_residual::gated_residual_backward(
        s,
        &gate.to_f32(),
        &y.to_f32(),
        &g.to_f32(),
        &mut gy,
        &mut gg,
    )?;
    let dtype = g.dtype();
    Ok([gy, gg].map(|v| CpuStorage::from_f32(v, dtype)))
}

/// GEGLU of the contiguous `[rows, 2·inner]` `x`: `[rows, inner]`.
pub fn geglu(x: &CpuStorage, rows: usize, inner: usize) -> Result<CpuStorage> {
    let mut out = output("geglu", &[rows, inner])?;
    geglu::geglu_forward(rows, inner, &x.to_f32(), &mut out)?;
    Ok(CpuStorage::from_f32(out, x.dtype()))
}

/// ∂x of [`geglu`] from `x` and the output gradient `g`.
pub fn geglu_backward(
    x: &CpuStorage,
    g: &CpuStorage,
    rows: usize,
    inner: usize,
) -> Result<CpuStorage> {
    let mut dx = take(x.len());
    geglu::geglu_backward(rows, inner, &x.to_f32(), &g.to_f32(), &mut dx)?;
    Ok(CpuStorage::from_f32(dx, g.dtype()))
}

/// The per-sample MSE of `prediction` against `target`, in the prediction's dtype.
pub fn sample_mse(
    s: &SampleShape,
    prediction: &CpuStorage,
    target: &CpuStorage,
) -> Result<CpuStorage> {
    let mut mse = output("sample_mse", &[s.batch])?;
    sample_mse::sample_mse_forward(s, &prediction.to_f32(), &target.to_f32(), &mut mse)?;
    Ok(CpuStorage::from_f32(mse, prediction.dtype()))
}

/// ∂prediction of [`sample_mse`] from `[prediction, target, grad_mse]`.
pub fn sample_mse_backward(s: &SampleShape, t: [&CpuStorage; 3]) -> Result<CpuStorage> {
    let [p, target, g] = t;
    let mut gp = take(p.len());
    sample_mse::sample_mse_backward(s, &p.to_f32(), &target.to_f32(), &g.to_f32(), &mut gp)?;
    Ok(CpuStorage::from_f32(gp, g.dtype()))
}

/// (out, lse) of attention with an optional additive `[q_len, kv_len]` score bias; `lse` stays f32.
pub fn attention(
    s: &AttentionShape,
    [q, k, v]: [&CpuStorage; 3],
    bias: Option<&CpuStorage>,
) -> Result<[CpuStorage; 2]> {
    let mut out = take(q.len());
    let mut lse = output("attention", &[s.batch_heads, s.q_len])?;
    let bias = bias.map(CpuStorage::to_f32);
    attention::attention_forward(
        s,
        &q.to_f32(),
        &k.to_f32(),
        &v.to_f32(),
        bias.as_deref(),
        &mut out,
        &mut lse,
    )?;
    Ok([
        CpuStorage::from_f32(out, q.dtype()),
        CpuStorage::F32(lse.into()),
    ])
}

/// (∂q, ∂k, ∂v) from `[q, k, v, out, lse, grad_out]` and the forward's `bias`.
pub fn attention_backward(
    s: &AttentionShape,
    t: [&CpuStorage; 6],
    bias: Option<&CpuStorage>,
) -> Result<[CpuStorage; 3]> {
    let [q, k, v, out, lse, gout] = t;
    let (mut gq, mut gk, mut gv) = (take(q.len()), take(k.len()), take(v.len()));
    let bias = bias.map(CpuStorage::to_f32);
    attention::attention_backward(
        s,
        &q.to_f32(),
        &k.to_f32(),
        &v.to_f32(),
        bias.as_deref(),
        &out.to_f32(),
        &lse.to_f32(),
        &gout.to_f32(),
        &mut gq,
        &mut gk,
        &mut gv,
    )?;
    let dtype = gout.dtype();
    Ok([gq, gk, gv].map(|x| CpuStorage::from_f32(x, dtype)))
}

/// Philox stream elements `offset..offset + len`, standard normal or uniform on (0, 1).
pub fn random(len: usize, seed: u64, offset: u64, normal: bool, dtype: DType) -> CpuStorage {
    let mut out = take(len);
    if normal {
        philox::fill_normal(seed, offset, &mut out);
    } else {
        philox::fill_uniform(seed, offset, &mut out);
    }
    CpuStorage::from_f32(out, dtype)
}

/// One fused AdamW step on f32 buffers, in place.
pub fn adamw_step(
    cfg: &AdamWConfig,
    step: u64,
    param: &mut CpuStorage,
    grad: &CpuStorage,
    m: &mut CpuStorage,
    v: &mut CpuStorage,
) -> Result<()> {
    let not_f32 = |what: &str, d: DType| {
        crate::Error::argument(
            "adamw_step",
            format!("{what} is {d}; the optimiser updates f32 buffers only"),
        )
    };
    let (pd, md, vd) = (param.dtype(), m.dtype(), v.dtype());
    let p = param.as_f32_mut().ok_or_else(|| not_f32("param", pd))?;
    let m = m.as_f32_mut().ok_or_else(|| not_f32("m", md))?;
    let v = v.as_f32_mut().ok_or_else(|| not_f32("v", vd))?;
    adamw::adamw_step(cfg, step, p, &grad.to_f32(), m, v)?;
    Ok(())
}

/// One fused SGD-with-momentum step on f32 buffers, in place.
pub fn sgd_momentum_step(
    lr: f32,
    momentum: f32,
    weight_decay: f32,
    param: &mut CpuStorage,
    grad: &CpuStorage,
    velocity: &mut CpuStorage,
) -> Result<()> {
    let not_f32 = |what: &str, d: DType| {
        crate::Error::argument(
            "sgd_momentum_step",
            format!("{what} is {d}; the optimiser updates f32 buffers only"),
        )
    };
    let (pd, bd) = (param.dtype(), velocity.dtype());
    let p = param.as_f32_mut().ok_or_else(|| not_f32("param", pd))?;
    let b = velocity
        .as_f32_mut()
        .ok_or_else(|| not_f32("velocity", bd))?;
    adamw::sgd_momentum_step(lr, momentum, weight_decay, p, &grad.to_f32(), b)?;
    Ok(())
}

/// Overwrites the whole of `dst` with the elements of `src` under `layout` (same count), in `dst`'s dtype.
pub fn assign(dst: &mut CpuStorage, src: &CpuStorage, layout: &Layout) -> Result<()> {
    *dst = copy_contiguous(src, layout, dst.dtype())?;
    Ok(())
}
