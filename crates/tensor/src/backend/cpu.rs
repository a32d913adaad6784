//! The CPU backend: host buffers, and the glue from tensor layouts to the slice kernels of `diffuse-cpu-kernels`.
//!
//! Kernels compute in f32. An f16/bf16 buffer is widened to f32 on the way in ([`CpuStorage::to_f32`] borrows an f32
//! buffer and converts the others) and rounded back on the way out ([`CpuStorage::from_f32`]).

use crate::error::Result;
use crate::layout::Layout;
use crate::DType;
use diffuse_cpu_kernels::elementwise::{self, BinaryOp, UnaryOp};
use diffuse_cpu_kernels::index;
use diffuse_cpu_kernels::noise::{self, StepCoefficients};
use diffuse_cpu_kernels::reduce::{self, ReduceOp};
use half::{bf16, f16};
use std::borrow::Cow;

#[derive(Debug, Clone)]
pub enum CpuStorage {
    F32(Vec<f32>),
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
            CpuStorage::F32(v) => Cow::Borrowed(v),
            CpuStorage::F16(v) => Cow::Owned(v.iter().map(|x| x.to_f32()).collect()),
            CpuStorage::BF16(v) => Cow::Owned(v.iter().map(|x| x.to_f32()).collect()),
        }
    }

    /// An f32 result stored as `dtype` (rounding to nearest even for the half types).
    pub fn from_f32(data: Vec<f32>, dtype: DType) -> Self {
        match dtype {
            DType::F32 => CpuStorage::F32(data),
            DType::F16 => CpuStorage::F16(data.iter().map(|&x| f16::from_f32(x)).collect()),
            DType::BF16 => CpuStorage::BF16(data.iter().map(|&x| bf16::from_f32(x)).collect()),
        }
    }

    pub fn into_f32(self) -> Vec<f32> {
        match self {
            CpuStorage::F32(v) => v,
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

pub fn copy_contiguous(s: &CpuStorage, layout: &Layout, dtype: DType) -> Result<CpuStorage> {
    let src = s.to_f32();
    let mut out = vec![0.0; layout.numel()];
    elementwise::copy_strided(layout.shape(), &src, layout.strided_ref(), &mut out)?;
    Ok(CpuStorage::from_f32(out, dtype))
}

pub fn unary(s: &CpuStorage, layout: &Layout, op: UnaryOp) -> Result<CpuStorage> {
    let src = s.to_f32();
    let mut out = vec![0.0; layout.numel()];
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
    let mut out = vec![0.0; al.numel()];
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
    let mut out = vec![0.0; cl.numel()];
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
    let rows = layout.shape()[..layout.rank().saturating_sub(1)]
        .iter()
        .product();
    let src = copy_contiguous(s, layout, DType::F32)?.into_f32();
    let mut out = vec![0.0; rows];
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
    let mut out = vec![0.0; outer * sizes.iter().sum::<usize>() * inner];
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
    let mut out = vec![0.0; outer * indices.len() * inner];
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
    let mut out = vec![0.0; outer * dim * inner];
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
    let mut out = vec![0.0; outer * k * inner];
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
    let mut out = vec![0.0; outer * dim * inner];
    index::gather_backward(&g.to_f32(), outer, dim, inner, idx, k, &mut out)?;
    Ok(CpuStorage::from_f32(out, g.dtype()))
}

pub fn upsample_nearest2x(s: &CpuStorage, planes: usize, h: usize, w: usize) -> Result<CpuStorage> {
    let mut out = vec![0.0; planes * 4 * h * w];
    index::upsample_nearest2x(&s.to_f32(), planes, h, w, &mut out)?;
    Ok(CpuStorage::from_f32(out, s.dtype()))
}

pub fn upsample_nearest2x_backward(
    g: &CpuStorage,
    planes: usize,
    h: usize,
    w: usize,
) -> Result<CpuStorage> {
    let mut out = vec![0.0; planes * h * w];
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
    let (mut x_t, mut eps) = (vec![0.0; x.len()], vec![0.0; x.len()]);
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
    let (mut prev, mut x0) = (vec![0.0; x.len()], vec![0.0; x.len()]);
    noise::sampler_step(&x, &m, coef, clip, seed, offset, &mut prev, &mut x0)?;
    Ok((
        CpuStorage::from_f32(prev, x_t.dtype()),
        CpuStorage::from_f32(x0, x_t.dtype()),
    ))
}
