//! The CUDA backend: device buffers, and the glue from tensor layouts to the launch wrappers of `diffuse-cuda-kernels`.
//!
//! Each ordinal gets one [`Gpu`] (context, stream, PTX modules, caching allocator), opened on first use and kept for
//! the life of the process; a failure to open it (no driver, no such device, a device older than sm_80, a module
//! that does not JIT) is remembered and returned as [`Error::DeviceUnavailable`] naming the device and the reason.
//! An empty tensor's buffer owns no device memory (see [`DeviceBuffer`]). Buffers come from the device's
//! [`ck::alloc::BufferPool`] and go back to it when a [`CudaStorage`] drops, so a training loop that repeats the same
//! shapes stops calling `cuMemAlloc` after its first step.
//!
//! Device buffers hold f32 (the kernels read and write f32); an f16/bf16 tensor asked for on a CUDA device is an error
//! that says so. All work goes onto the device's one stream in call order, so a kernel always sees the results of
//! the kernels before it; copies to the host synchronise that stream.
//!
//! Operations without a kernel of their own are compositions of kernels: min is `-max(-x)`, softmax backward is a
//! row sum between element-wise maps, layer norm is group norm with one group and one spatial element per channel.

use std::collections::HashMap;
use std::fmt;
use std::mem::ManuallyDrop;
use std::sync::{Mutex, OnceLock};

use cudarc::driver::{CudaView, CudaViewMut};
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
use diffuse_cuda_kernels as ck;
use diffuse_cuda_kernels::elementwise::Operand;
use diffuse_cuda_kernels::gemm::MatrixLayout;
use diffuse_cuda_kernels::DeviceBuffer;
use diffuse_cuda_kernels::{Gpu, OpenError};

use crate::error::{Error, Result};
use crate::layout::{checked_numel, dims_product, Layout};
use crate::storage::MatmulOperand;
use crate::{matmul_precision, DType, Device, Precision};

/// The opened device of each ordinal (or why it could not be opened), for the life of the process.
fn open(ordinal: usize) -> std::result::Result<&'static Gpu, OpenError> {
    type Opened = std::result::Result<&'static Gpu, OpenError>;
    static GPUS: OnceLock<Mutex<HashMap<usize, Opened>>> = OnceLock::new();
    let mut gpus = GPUS
        .get_or_init(|| Mutex::new(HashMap::new()))
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    gpus.entry(ordinal)
        .or_insert_with(|| {
            // A device lives as long as the process: its buffers may be dropped at any time, even at exit.
            Gpu::new(ordinal).map(|gpu| &*Box::leak(Box::new(gpu)))
        })
        .clone()
}

fn gpu(ordinal: usize) -> Result<&'static Gpu> {
    open(ordinal).map_err(|reason| Error::DeviceUnavailable {
        device: Device::Cuda(ordinal),
        reason,
    })
}

/// Whether device `ordinal` opens, and if not, why (no device, or a device that cannot run the kernels).
pub fn availability(ordinal: usize) -> std::result::Result<(), OpenError> {
    open(ordinal).map(|_| ())
}

/// "NVIDIA H200, compute capability 9.0, 132 SMs" for a device that opens.
pub fn describe(ordinal: usize) -> Result<String> {
    let gpu = gpu(ordinal)?;
    let limits = gpu.limits();
    let (major, minor) = limits.compute_capability;
    Ok(format!(
        "{}, compute capability {major}.{minor}, {} SMs",
        gpu.name(),
        limits.multiprocessors
    ))
}

/// Checks that device `ordinal` opens (else the reason, as every operation on it would say) and that it can hold
/// `dtype` (f32 only), in that order: a missing driver is the more useful thing to hear first.
pub fn check_storable(op: &'static str, ordinal: usize, dtype: DType) -> Result<()> {
    gpu(ordinal)?;
    require_f32(op, Device::Cuda(ordinal), dtype)
}

/// A buffer of f32 on one CUDA device, on loan from its caching allocator until dropped.
pub struct CudaStorage {
    gpu: &'static Gpu,
    ordinal: usize,
    buffer: ManuallyDrop<DeviceBuffer>,
}

impl fmt::Debug for CudaStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CudaStorage(cuda:{}, {} f32)", self.ordinal, self.len())
    }
}

impl Drop for CudaStorage {
    fn drop(&mut self) {
        // SAFETY: `drop` runs once and nothing reads `buffer` after it; the buffer goes back to the pool it came from.
        let buffer = unsafe { ManuallyDrop::take(&mut self.buffer) };
        self.gpu.give_back_buffer(buffer);
    }
}

impl CudaStorage {
    /// A buffer of `len` f32 whose contents are whatever the pool's last user left (callers write before reading).
    fn uninit(gpu: &'static Gpu, ordinal: usize, len: usize) -> Result<Self> {
        let buffer = gpu.take_buffer(len)?;
        Ok(CudaStorage {
            gpu,
            ordinal,
            buffer: ManuallyDrop::new(buffer),
        })
    }

    /// A new buffer on the same device as `self`.
    fn sibling(&self, len: usize) -> Result<Self> {
        Self::uninit(self.gpu, self.ordinal, len)
    }

    pub fn device(&self) -> Device {
        Device::Cuda(self.ordinal)
    }

    pub fn dtype(&self) -> DType {
        DType::F32
    }

    pub fn len(&self) -> usize {
        self.buffer.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn view(&self) -> CudaView<'_, f32> {
        self.buffer.view()
    }

    fn view_mut(&mut self) -> CudaViewMut<'_, f32> {
        self.buffer.view_mut()
    }

    /// The elements from `offset` on, or an error naming `op` when the offset lies past the end.
    fn view_from(&self, op: &'static str, offset: usize) -> Result<CudaView<'_, f32>> {
        if offset > self.len() {
            return Err(Error::argument(
                op,
                format!(
                    "offset {offset} lies past the end of a buffer of {}",
                    self.len()
                ),
            ));
        }
        Ok(self.buffer.view().slice(offset..))
    }
}

/// The error for a dtype the CUDA backend does not store.
fn f32_only(op: &'static str, device: Device, dtype: DType) -> Error {
    Error::argument(
        op,
        format!("{device} stores f32 only, not {dtype}; convert with .to_dtype(DType::F32) first"),
    )
}

fn require_f32(op: &'static str, device: Device, dtype: DType) -> Result<()> {
    if dtype == DType::F32 {
        Ok(())
    } else {
        Err(f32_only(op, device, dtype))
    }
}

fn driver(op: &'static str, doing: &str, e: impl fmt::Display) -> Error {
    Error::Kernel(ck::KernelError::new(
        op,
        format!("{doing}: CUDA driver error {e}"),
    ))
}

// ---- creation and copies ------------------------------------------------------------------------------------------

/// A buffer on device `ordinal` holding `data`.
pub fn from_host(ordinal: usize, data: &[f32]) -> Result<CudaStorage> {
    let gpu = gpu(ordinal)?;
    let mut out = CudaStorage::uninit(gpu, ordinal, data.len())?;
    if !data.is_empty() {
        gpu.stream()
            .memcpy_htod(data, &mut out.view_mut())
            .map_err(|e| driver("to_device", "copying to the device", e))?;
    }
    Ok(out)
}

/// `len` copies of `value` on device `ordinal`, in `dtype` (f32 only).
pub fn full(ordinal: usize, dtype: DType, len: usize, value: f32) -> Result<CudaStorage> {
    check_storable("full", ordinal, dtype)?;
    from_host(ordinal, &vec![value; len])
}

/// The whole buffer, copied to the host (waits for every kernel before the copy).
pub fn to_host(s: &CudaStorage) -> Result<Vec<f32>> {
    let mut host = vec![0.0; s.len()];
    if !host.is_empty() {
        s.gpu
            .stream()
            .memcpy_dtoh(&s.view(), &mut host)
            .map_err(|e| driver("to_host", "copying to the host", e))?;
    }
    s.gpu.synchronize()?;
    Ok(host)
}

/// The layout of a tensor as the element-wise kernels take it.
fn operand_strides(layout: &Layout) -> Vec<isize> {
    layout.strides().iter().map(|&s| s as isize).collect()
}

/// The elements of `layout`, row-major, in a new buffer.
pub fn copy_contiguous(s: &CudaStorage, layout: &Layout) -> Result<CudaStorage> {
    let mut out = s.sibling(layout.numel())?;
    let strides = operand_strides(layout);
    ck::elementwise::copy_strided(
        s.gpu,
        layout.shape(),
        &s.view(),
        Operand::new(&strides, layout.offset()),
        &mut out.view_mut(),
    )?;
    Ok(out)
}

/// The elements of `layout` in `dtype` (f32 only) on the same device.
pub fn copy_contiguous_as(s: &CudaStorage, layout: &Layout, dtype: DType) -> Result<CudaStorage> {
    require_f32("copy_contiguous", s.device(), dtype)?;
    copy_contiguous(s, layout)
}

/// The elements of `layout`, row-major, on the host.
pub fn to_f32_vec(s: &CudaStorage, layout: &Layout) -> Result<Vec<f32>> {
    to_host(&copy_contiguous(s, layout)?)
}

/// The elements of `layout` on device `ordinal` (a device-to-device copy on one device, through the host between two).
pub fn to_cuda(s: &CudaStorage, layout: &Layout, ordinal: usize) -> Result<CudaStorage> {
    if ordinal == s.ordinal {
        copy_contiguous(s, layout)
    } else {
        from_host(ordinal, &to_f32_vec(s, layout)?)
    }
}

// ---- element-wise maps, selection, reductions ----------------------------------------------------------------------

fn unary_op(op: UnaryOp) -> ck::elementwise::UnaryOp {
    use ck::elementwise::UnaryOp as G;
    match op {
        UnaryOp::Neg => G::Neg,
        UnaryOp::Exp => G::Exp,
        UnaryOp::Log => G::Log,
        UnaryOp::Sqrt => G::Sqrt,
        UnaryOp::Rsqrt => G::Rsqrt,
        UnaryOp::Abs => G::Abs,
        UnaryOp::Square => G::Square,
        UnaryOp::Recip => G::Recip,
        UnaryOp::Relu => G::Relu,
        UnaryOp::Tanh => G::Tanh,
        UnaryOp::Sigmoid => G::Sigmoid,
        UnaryOp::Silu => G::Silu,
        UnaryOp::Gelu => G::Gelu,
        UnaryOp::GeluTanh => G::GeluTanh,
        UnaryOp::Powf(p) => G::Powf(p),
        UnaryOp::Clamp(lo, hi) => G::Clamp { lo, hi },
        UnaryOp::Affine(mul, add) => G::Affine { mul, add },
    }
}

fn binary_op(op: BinaryOp) -> ck::elementwise::BinaryOp {
    use ck::elementwise::BinaryOp as G;
    match op {
        BinaryOp::Add => G::Add,
        BinaryOp::Sub => G::Sub,
        BinaryOp::Mul => G::Mul,
        BinaryOp::Div => G::Div,
        BinaryOp::Maximum => G::Max,
        BinaryOp::Minimum => G::Min,
        BinaryOp::SiluBackward => G::SiluBackward,
        BinaryOp::GeluTanhBackward => G::GeluTanhBackward,
        BinaryOp::GeluBackward => G::GeluBackward,
    }
}

pub fn unary(s: &CudaStorage, layout: &Layout, op: UnaryOp) -> Result<CudaStorage> {
    let mut out = s.sibling(layout.numel())?;
    let strides = operand_strides(layout);
    ck::elementwise::unary(
        s.gpu,
        unary_op(op),
        layout.shape(),
        &s.view(),
        Operand::new(&strides, layout.offset()),
        &mut out.view_mut(),
    )?;
    Ok(out)
}

/// Both layouts already have the broadcast shape (the tensor layer broadcasts them).
pub fn binary(
    a: &CudaStorage,
    al: &Layout,
    b: &CudaStorage,
    bl: &Layout,
    op: BinaryOp,
) -> Result<CudaStorage> {
    let mut out = a.sibling(al.numel())?;
    let (sa, sb) = (operand_strides(al), operand_strides(bl));
    ck::elementwise::binary(
        a.gpu,
        binary_op(op),
        al.shape(),
        &a.view(),
        Operand::new(&sa, al.offset()),
        &b.view(),
        Operand::new(&sb, bl.offset()),
        &mut out.view_mut(),
    )?;
    Ok(out)
}

/// The three operands are made contiguous (broadcast expanded), then selected element by element.
pub fn where_select(
    c: &CudaStorage,
    cl: &Layout,
    a: (&CudaStorage, &Layout),
    b: (&CudaStorage, &Layout),
) -> Result<CudaStorage> {
    let cond = copy_contiguous(c, cl)?;
    let x = copy_contiguous(a.0, a.1)?;
    let y = copy_contiguous(b.0, b.1)?;
    let mut out = c.sibling(cl.numel())?;
    ck::select::where_select(
        c.gpu,
        &cond.view(),
        &x.view(),
        &y.view(),
        &mut out.view_mut(),
    )?;
    Ok(out)
}

/// Reduces the last dimension of `layout` (made contiguous first): sum and max have row kernels, min is `-max(-x)`,
/// argmax has its own kernel.
pub fn reduce_last(s: &CudaStorage, layout: &Layout, op: ReduceOp) -> Result<CudaStorage> {
    let n = layout.shape().last().copied().unwrap_or(1);
    let rows = dims_product(&layout.shape()[..layout.rank().saturating_sub(1)]);
    if n == 0 && op != ReduceOp::Sum && rows > 0 {
        return Err(Error::argument(
            "reduce",
            format!("{op:?} of an empty dimension has no value"),
        ));
    }
    let src = copy_contiguous(s, layout)?;
    let mut out = s.sibling(rows)?;
    let gpu = s.gpu;
    match op {
        ReduceOp::Sum => ck::reduce::row_sum(gpu, rows, n, &src.view(), &mut out.view_mut())?,
        ReduceOp::Max => ck::reduce::row_max(gpu, rows, n, &src.view(), &mut out.view_mut())?,
        ReduceOp::Min => {
            let flat = Layout::contiguous(&[rows, n])?;
            let negated = unary(&src, &flat, UnaryOp::Neg)?;
            let mut max = s.sibling(rows)?;
            ck::reduce::row_max(gpu, rows, n, &negated.view(), &mut max.view_mut())?;
            return unary(&max, &Layout::contiguous(&[rows])?, UnaryOp::Neg);
        }
        ReduceOp::ArgMax => ck::select::row_argmax(gpu, rows, n, &src.view(), &mut out.view_mut())?,
    }
    Ok(out)
}

// ---- data movement by index ----------------------------------------------------------------------------------------

pub fn concat(
    parts: &[&CudaStorage],
    sizes: &[usize],
    outer: usize,
    inner: usize,
    dtype: DType,
) -> Result<CudaStorage> {
    let first = parts
        .first()
        .ok_or_else(|| Error::argument("concat", "no parts to concatenate"))?;
    require_f32("concat", first.device(), dtype)?;
    let total = sizes
        .iter()
        .try_fold(0usize, |acc, &size| acc.checked_add(size))
        .ok_or_else(|| Error::shape("concat", format!("sizes {sizes:?} overflow usize")))?;
    let mut out = first.sibling(checked_numel("concat", &[outer, total, inner])?)?;
    let views: Vec<CudaView<'_, f32>> = parts.iter().map(|p| p.view()).collect();
    ck::index::concat(first.gpu, &views, sizes, outer, inner, &mut out.view_mut())?;
    Ok(out)
}

pub fn index_select(
    s: &CudaStorage,
    outer: usize,
    dim: usize,
    inner: usize,
    indices: &[usize],
) -> Result<CudaStorage> {
    let mut out = s.sibling(checked_numel(
        "index_select",
        &[outer, indices.len(), inner],
    )?)?;
    ck::index::index_select(
        s.gpu,
        &s.view(),
        outer,
        dim,
        inner,
        indices,
        &mut out.view_mut(),
    )?;
    Ok(out)
}

pub fn index_select_backward(
    g: &CudaStorage,
    outer: usize,
    dim: usize,
    inner: usize,
    indices: &[usize],
) -> Result<CudaStorage> {
    let mut out = g.sibling(checked_numel(
        "index_select_backward",
        &[outer, dim, inner],
    )?)?;
    ck::index::index_select_backward(
        g.gpu,
        &g.view(),
        outer,
        dim,
        inner,
        indices,
        &mut out.view_mut(),
    )?;
    Ok(out)
}

pub fn gather(
    s: &CudaStorage,
    outer: usize,
    dim: usize,
    inner: usize,
    idx: &[usize],
    k: usize,
) -> Result<CudaStorage> {
    let mut out = s.sibling(checked_numel("gather", &[outer, k, inner])?)?;
    ck::index::gather(
        s.gpu,
        &s.view(),
        outer,
        dim,
        inner,
        idx,
        k,
        &mut out.view_mut(),
    )?;
    Ok(out)
}

pub fn gather_backward(
    g: &CudaStorage,
    outer: usize,
    dim: usize,
    inner: usize,
    idx: &[usize],
    k: usize,
) -> Result<CudaStorage> {
    let mut out = g.sibling(checked_numel("gather_backward", &[outer, dim, inner])?)?;
    ck::index::gather_backward(
        g.gpu,
        &g.view(),
        outer,
        dim,
        inner,
        idx,
        k,
        &mut out.view_mut(),
    )?;
    Ok(out)
}

pub fn upsample_nearest2x(
    s: &CudaStorage,
    planes: usize,
    h: usize,
    w: usize,
) -> Result<CudaStorage> {
    let mut out = s.sibling(checked_numel("upsample_nearest2x", &[planes, 4, h, w])?)?;
    ck::index::upsample_nearest2x(s.gpu, &s.view(), planes, h, w, &mut out.view_mut())?;
    Ok(out)
}

pub fn upsample_nearest2x_backward(
    g: &CudaStorage,
    planes: usize,
    h: usize,
    w: usize,
) -> Result<CudaStorage> {
    let mut out = g.sibling(checked_numel(
        "upsample_nearest2x_backward",
        &[planes, h, w],
    )?)?;
    ck::index::upsample_nearest2x_backward(g.gpu, &g.view(), planes, h, w, &mut out.view_mut())?;
    Ok(out)
}

// ---- matmul, softmax, convolution, normalisation, attention --------------------------------------------------------

/// `batch` products `C_b = A_b · B_b` read through strides, plus `bias` `[n]` on every row when given; the result is
/// contiguous `[batch, m, n]`. In f32 (the default) one SGEMM launch per product, onto an output that starts as the
/// bias repeated (strided copy, β = 1) or from nothing (β = 0); in bf16 ([`crate::set_matmul_precision`]) see
/// [`matmul_bf16`], the bias then added by the element-wise kernel.
pub fn matmul(
    a: (&CudaStorage, &MatmulOperand),
    b: (&CudaStorage, &MatmulOperand),
    bias: Option<&CudaStorage>,
    (batch, m, n, k): (usize, usize, usize, usize),
) -> Result<CudaStorage> {
    const OP: &str = "matmul";
    let per = dims_product(&[m, n]);
    let len = checked_numel(OP, &[batch, m, n])?;
    if len == 0 || k == 0 {
        // no entries, or every entry the empty sum (and the operands may hold no element to point at); the tensor
        // layer answers these shapes itself, bias included
        return from_host(a.0.ordinal, &vec![0.0; len]);
    }
    let rows = Layout::from_parts(vec![batch * m, n], vec![0, 1], 0)?;
    if matmul_precision() == Precision::Bf16 {
        let product = matmul_bf16(a, b, (batch, m, n, k))?;
        return match bias {
            Some(bias) => {
                let flat = Layout::contiguous(&[batch * m, n])?;
                binary(&product, &flat, bias, &rows, BinaryOp::Add)
            }
            None => Ok(product),
        };
    }
    let (mut out, beta) = match bias {
        Some(bias) => (copy_contiguous(bias, &rows)?, 1.0),
        None => (a.0.sibling(len)?, 0.0),
    };
    for index in 0..batch {
        let at = |view: &MatmulOperand| view.offset + index * view.batch_stride;
        let x = a.0.view_from(OP, at(a.1))?;
        let y = b.0.view_from(OP, at(b.1))?;
        let mut whole = out.view_mut();
        let mut c = whole.slice_mut(index * per..(index + 1) * per);
        ck::gemm::sgemm(
            a.0.gpu,
            m,
            n,
            k,
            1.0,
            &x,
            operand_layout(a.1),
            &y,
            operand_layout(b.1),
            beta,
            &mut c,
        )?;
    }
    Ok(out)
}

fn operand_layout(view: &MatmulOperand) -> MatrixLayout {
    MatrixLayout {
        row_stride: view.row_stride,
        col_stride: view.col_stride,
    }
}

/// The bf16 products on the tensor cores: per product, A `[m, k]` is rounded into a row-major bf16 `[m, k₈]` and B
/// `[k, n]` into `[k₈, n₈]` (k₈, n₈: k and n rounded up to multiples of 8, the padding zero, so it adds nothing),
/// `gemm_bf16` writes C `[m, n₈]` in f32, and when n₈ > n the first n columns are copied out. An operand broadcast
/// over the batch (batch stride 0) is rounded once. The bf16 scratch borrows f32 buffers of the caching allocator.
fn matmul_bf16(
    a: (&CudaStorage, &MatmulOperand),
    b: (&CudaStorage, &MatmulOperand),
    (batch, m, n, k): (usize, usize, usize, usize),
) -> Result<CudaStorage> {
    const OP: &str = "matmul";
    let (k8, n8) = (k.next_multiple_of(8), n.next_multiple_of(8));
    let gpu = a.0.gpu;
    // two bf16 per f32 element; m·k₈ and k₈·n₈ are even
    let mut a16 = a.0.sibling(checked_numel(OP, &[m, k8])? / 2)?;
    let mut b16 = a.0.sibling(checked_numel(OP, &[k8, n8])? / 2)?;
    let per = m * n;
    let mut out = a.0.sibling(checked_numel(OP, &[batch, m, n])?)?;
    let mut wide = if n8 == n {
        None
    } else {
        Some(a.0.sibling(checked_numel(OP, &[m, n8])?)?)
    };
    let packed = Layout::from_parts(vec![m, n], vec![n8, 1], 0)?;
    for index in 0..batch {
        let at = |view: &MatmulOperand| view.offset + index * view.batch_stride;
        if index == 0 || a.1.batch_stride != 0 {
            let x = a.0.view_from(OP, at(a.1))?;
            let layout = operand_layout(a.1);
            ck::pack_bf16::pack_bf16(gpu, &x, m, k, layout, m, k8, &mut a16.buffer.as_bf16_mut())?;
        }
        if index == 0 || b.1.batch_stride != 0 {
            let y = b.0.view_from(OP, at(b.1))?;
            let layout = operand_layout(b.1);
            ck::pack_bf16::pack_bf16(gpu, &y, k, n, layout, k8, n8, &mut b16.buffer.as_bf16_mut())?;
        }
        let (x16, y16) = (a16.buffer.as_bf16(), b16.buffer.as_bf16());
        match wide.as_mut() {
            None => {
                let mut whole = out.view_mut();
                let mut c = whole.slice_mut(index * per..(index + 1) * per);
                ck::gemm::gemm_bf16(gpu, m, n8, k8, 1.0, &x16, &y16, 0.0, &mut c)?;
            }
            Some(wide) => {
                ck::gemm::gemm_bf16(gpu, m, n8, k8, 1.0, &x16, &y16, 0.0, &mut wide.view_mut())?;
                let strides = operand_strides(&packed);
                let mut whole = out.view_mut();
                let mut c = whole.slice_mut(index * per..(index + 1) * per);
                ck::elementwise::copy_strided(
                    gpu,
                    packed.shape(),
                    &wide.view(),
                    Operand::new(&strides, 0),
                    &mut c,
                )?;
            }
        }
    }
    Ok(out)
}

pub fn softmax(s: &CudaStorage, rows: usize, cols: usize, log: bool) -> Result<CudaStorage> {
    let mut out = s.sibling(checked_numel("softmax", &[rows, cols])?)?;
    if log {
        ck::softmax::log_softmax(s.gpu, rows, cols, &s.view(), &mut out.view_mut())?;
    } else {
        ck::softmax::softmax(s.gpu, rows, cols, &s.view(), &mut out.view_mut())?;
    }
    Ok(out)
}

/// The input gradient of [`softmax`] from its output `y` and the output gradient `g`, as element-wise maps around a
/// row sum: softmax `y (g - Σ g y)`, log-softmax `g - e^y Σ g`.
pub fn softmax_backward(
    y: &CudaStorage,
    g: &CudaStorage,
    rows: usize,
    cols: usize,
    log: bool,
) -> Result<CudaStorage> {
    let matrix = Layout::contiguous(&[rows, cols])?;
    // the row sums, broadcast along each row
    let per_row = Layout::from_parts(vec![rows, cols], vec![1, 0], 0)?;
    let summand = if log {
        copy_contiguous(g, &matrix)?
    } else {
        binary(g, &matrix, y, &matrix, BinaryOp::Mul)?
    };
    let mut sums = y.sibling(rows)?;
    ck::reduce::row_sum(y.gpu, rows, cols, &summand.view(), &mut sums.view_mut())?;
    if log {
        let scaled = binary(
            &unary(y, &matrix, UnaryOp::Exp)?,
            &matrix,
            &sums,
            &per_row,
            BinaryOp::Mul,
        )?;
        binary(g, &matrix, &scaled, &matrix, BinaryOp::Sub)
    } else {
        let centred = binary(g, &matrix, &sums, &per_row, BinaryOp::Sub)?;
        binary(y, &matrix, &centred, &matrix, BinaryOp::Mul)
    }
}

/// The CUDA convolution takes one stride, padding and dilation for both axes.
fn gpu_conv_shape(s: &Conv2dShape) -> Result<ck::conv::Conv2dShape> {
    let square = |what: &str, (h, w): (usize, usize)| {
        if h == w {
            Ok(h)
        } else {
            Err(Error::argument(
                "conv2d",
                format!("{what} ({h}, {w}) differs between the axes; the CUDA convolution takes one value for both"),
            ))
        }
    };
    Ok(ck::conv::Conv2dShape {
        batch: s.batch,
        in_channels: s.in_channels,
        in_h: s.in_h,
        in_w: s.in_w,
        out_channels: s.out_channels,
        kernel_h: s.kernel_h,
        kernel_w: s.kernel_w,
        stride: square("stride", s.stride)?,
        padding: square("padding", s.padding)?,
        dilation: square("dilation", s.dilation)?,
        groups: s.groups,
    })
}

/// The bf16 plan of a convolution when this thread's precision is bf16 and the convolution has a bf16 path
/// (groups = 1: see [`ck::conv_bf16`]); `None` keeps it in f32 (the default, and every grouped convolution).
fn bf16_plan(
    op: &'static str,
    shape: &ck::conv::Conv2dShape,
) -> Result<Option<ck::conv_bf16::Plan>> {
    if matmul_precision() != Precision::Bf16 || shape.groups != 1 {
        return Ok(None);
    }
    Ok(Some(ck::conv_bf16::Plan::new(op, shape)?))
}

/// A convolution with its optional addends `[bias, channel, residual]`: f32 implicit GEMM adding all three in its
/// epilogue, or in bf16 ([`crate::set_matmul_precision`], see [`bf16_plan`]) adding the bias in the kernel and the
/// other two by element-wise additions.
pub fn conv2d(
    s: &Conv2dShape,
    x: &CudaStorage,
    w: &CudaStorage,
    addends: [Option<&CudaStorage>; 3],
) -> Result<CudaStorage> {
    let shape = gpu_conv_shape(s)?;
    let mut out = x.sibling(s.output_len())?;
    let [bias, channel, residual] = addends.map(|a| a.map(CudaStorage::view));
    if let Some(plan) = bf16_plan("conv2d", &shape)? {
        ck::conv_bf16::conv2d_forward_bf16(
            x.gpu,
            &plan,
            &x.view(),
            &w.view(),
            bias.as_ref(),
            &mut out.view_mut(),
        )?;
        let out_shape = [s.batch, s.out_channels, s.out_h(), s.out_w()];
        let out_layout = Layout::contiguous(&out_shape)?;
        if let Some(channel) = addends[1] {
            let per_image =
                Layout::contiguous(&[s.batch, s.out_channels, 1, 1])?.broadcast_to(&out_shape)?;
            out = binary(&out, &out_layout, channel, &per_image, BinaryOp::Add)?;
        }
        if let Some(residual) = addends[2] {
            out = binary(&out, &out_layout, residual, &out_layout, BinaryOp::Add)?;
        }
        return Ok(out);
    }
    let addends = ck::conv::Conv2dAddends {
        bias: bias.as_ref(),
        channel: channel.as_ref(),
        residual: residual.as_ref(),
    };
    ck::conv::conv2d_forward_add(
        x.gpu,
        &shape,
        &x.view(),
        &w.view(),
        addends,
        &mut out.view_mut(),
    )?;
    Ok(out)
}

/// ∂x of a convolution from the output gradient `g`.
pub fn conv2d_backward_input(
    s: &Conv2dShape,
    g: &CudaStorage,
    w: &CudaStorage,
) -> Result<CudaStorage> {
    let shape = gpu_conv_shape(s)?;
    let mut gx = g.sibling(s.input_len())?;
    if let Some(plan) = bf16_plan("conv2d_backward_input", &shape)? {
        ck::conv_bf16::conv2d_backward_input_bf16(
            g.gpu,
            &plan,
            &g.view(),
            &w.view(),
            &mut gx.view_mut(),
        )?;
        return Ok(gx);
    }
    ck::conv_backward::conv2d_backward_input(
        g.gpu,
        &shape,
        &g.view(),
        &w.view(),
        &mut gx.view_mut(),
    )?;
    Ok(gx)
}

/// (∂w, ∂bias when `with_bias`) of a convolution of input `x` from the output gradient `g`.
pub fn conv2d_backward_weight(
    s: &Conv2dShape,
    x: &CudaStorage,
    g: &CudaStorage,
    with_bias: bool,
) -> Result<(CudaStorage, Option<CudaStorage>)> {
    let shape = gpu_conv_shape(s)?;
    let mut gw = x.sibling(s.weight_len())?;
    let mut gb = if with_bias {
        Some(x.sibling(s.out_channels)?)
    } else {
        None
    };
    let mut gb_view = gb.as_mut().map(CudaStorage::view_mut);
    if let Some(plan) = bf16_plan("conv2d_backward_weight", &shape)? {
        ck::conv_bf16::conv2d_backward_weight_bf16(
            x.gpu,
            &plan,
            &x.view(),
            &g.view(),
            &mut gw.view_mut(),
            gb_view.as_mut(),
        )?;
        return Ok((gw, gb));
    }
    ck::conv_backward::conv2d_backward_weight(
        x.gpu,
        &shape,
        &x.view(),
        &g.view(),
        &mut gw.view_mut(),
        gb_view.as_mut(),
    )?;
    Ok((gw, gb))
}

/// (y, mean, rstd); the statistics are `[batch, groups]`.
pub fn group_norm(
    s: &GroupNormShape,
    x: &CudaStorage,
    gamma: &CudaStorage,
    beta: &CudaStorage,
) -> Result<[CudaStorage; 3]> {
    let stats = checked_numel("group_norm", &[s.batch, s.groups])?;
    let (mut y, mut mean, mut rstd) = (x.sibling(x.len())?, x.sibling(stats)?, x.sibling(stats)?);
    ck::group_norm::group_norm_forward(
        x.gpu,
        s,
        &x.view(),
        &gamma.view(),
        &beta.view(),
        &mut y.view_mut(),
        &mut mean.view_mut(),
        &mut rstd.view_mut(),
    )?;
    Ok([y, mean, rstd])
}

/// (∂x, ∂γ, ∂β) from `[x, gamma, mean, rstd, grad_y]`.
pub fn group_norm_backward(s: &GroupNormShape, t: [&CudaStorage; 5]) -> Result<[CudaStorage; 3]> {
    let [x, gamma, mean, rstd, gy] = t;
    let (mut gx, mut gg, mut gb) = (
        x.sibling(x.len())?,
        x.sibling(s.channels)?,
        x.sibling(s.channels)?,
    );
    ck::group_norm::group_norm_backward(
        x.gpu,
        s,
        &x.view(),
        &gamma.view(),
        &mean.view(),
        &rstd.view(),
        &gy.view(),
        &mut gx.view_mut(),
        &mut gg.view_mut(),
        &mut gb.view_mut(),
    )?;
    Ok([gx, gg, gb])
}

/// (silu(group_norm(x)), mean, rstd); the statistics are `[batch, groups]`.
pub fn group_norm_silu(
    s: &GroupNormShape,
    x: &CudaStorage,
    gamma: &CudaStorage,
    beta: &CudaStorage,
) -> Result<[CudaStorage; 3]> {
    let stats = checked_numel("group_norm_silu", &[s.batch, s.groups])?;
    let (mut y, mut mean, mut rstd) = (x.sibling(x.len())?, x.sibling(stats)?, x.sibling(stats)?);
    ck::group_norm::group_norm_silu_forward(
        x.gpu,
        s,
        &x.view(),
        &gamma.view(),
        &beta.view(),
        &mut y.view_mut(),
        &mut mean.view_mut(),
        &mut rstd.view_mut(),
    )?;
    Ok([y, mean, rstd])
}

/// (∂x, ∂γ, ∂β) of [`group_norm_silu`] from `[x, gamma, beta, mean, rstd, grad_y]`.
pub fn group_norm_silu_backward(
    s: &GroupNormShape,
    t: [&CudaStorage; 6],
) -> Result<[CudaStorage; 3]> {
    let [x, gamma, beta, mean, rstd, gy] = t;
    let (mut gz, mut gx, mut gg, mut gb) = (
        x.sibling(x.len())?,
        x.sibling(x.len())?,
        x.sibling(s.channels)?,
        x.sibling(s.channels)?,
    );
    ck::group_norm::group_norm_silu_backward(
        x.gpu,
        s,
        &x.view(),
        (&gamma.view(), &beta.view()),
        &mean.view(),
        &rstd.view(),
        &gy.view(),
        &mut gz.view_mut(),
        &mut gx.view_mut(),
        &mut gg.view_mut(),
        &mut gb.view_mut(),
    )?;
    Ok([gx, gg, gb])
}

/// Layer norm over rows of `dim` is group norm of `rows` samples with `dim` channels of one element in one group:
/// the statistics run over the row, and γ, β (per channel) are per element of the row.
fn as_group_norm(s: &LayerNormShape) -> GroupNormShape {
    GroupNormShape {
        batch: s.rows,
        channels: s.dim,
        spatial: 1,
        groups: 1,
        eps: s.eps,
    }
}

fn check_layer_norm(op: &'static str, s: &LayerNormShape) -> Result<()> {
    if s.dim == 0 {
        return Err(Error::argument(op, "dim is 0: every row would be empty"));
    }
    if !(s.eps >= 0.0 && s.eps.is_finite()) {
        return Err(Error::argument(
            op,
            format!("eps {} must be finite and ≥ 0", s.eps),
        ));
    }
    Ok(())
}

pub fn layer_norm(
    s: &LayerNormShape,
    x: &CudaStorage,
    gamma: &CudaStorage,
    beta: &CudaStorage,
) -> Result<[CudaStorage; 3]> {
    check_layer_norm("layer_norm", s)?;
    group_norm(&as_group_norm(s), x, gamma, beta)
}

pub fn layer_norm_backward(s: &LayerNormShape, t: [&CudaStorage; 5]) -> Result<[CudaStorage; 3]> {
    check_layer_norm("layer_norm_backward", s)?;
    group_norm_backward(&as_group_norm(s), t)
}

/// (y, mean, rstd) of the modulated layer norm; the statistics are `[batch·tokens]`.
pub fn layer_norm_modulate(
    s: &ModulateShape,
    x: &CudaStorage,
    scale: &CudaStorage,
    shift: &CudaStorage,
) -> Result<[CudaStorage; 3]> {
    let rows = checked_numel("layer_norm_modulate", &[s.batch, s.tokens])?;
    let (mut y, mut mean, mut rstd) = (x.sibling(x.len())?, x.sibling(rows)?, x.sibling(rows)?);
    ck::layer_norm_modulate::layer_norm_modulate_forward(
        x.gpu,
        s,
        &x.view(),
        &scale.view(),
        &shift.view(),
        &mut y.view_mut(),
        &mut mean.view_mut(),
        &mut rstd.view_mut(),
    )?;
    Ok([y, mean, rstd])
}

/// (∂x, ∂scale, ∂shift) from `[x, scale, mean, rstd, grad_y]`.
pub fn layer_norm_modulate_backward(
    s: &ModulateShape,
    t: [&CudaStorage; 5],
) -> Result<[CudaStorage; 3]> {
    let [x, scale, mean, rstd, gy] = t;
    let (mut gx, mut gs, mut gb) = (
        x.sibling(x.len())?,
        x.sibling(scale.len())?,
        x.sibling(scale.len())?,
    );
    ck::layer_norm_modulate::layer_norm_modulate_backward(
        x.gpu,
        s,
        &x.view(),
        &scale.view(),
        &mean.view(),
        &rstd.view(),
        &gy.view(),
        &mut gx.view_mut(),
        &mut gs.view_mut(),
        &mut gb.view_mut(),
    )?;
    Ok([gx, gs, gb])
}

/// `x + gate[n]∘y`.
/// GEGLU of the contiguous `[rows, 2·inner]` `x`: `[rows, inner]`.
pub fn geglu(x: &CudaStorage, rows: usize, inner: usize) -> Result<CudaStorage> {
    let mut out = x.sibling(checked_numel("geglu", &[rows, inner])?)?;
    ck::geglu::geglu_forward(x.gpu, rows, inner, &x.view(), &mut out.view_mut())?;
    Ok(out)
}

/// ∂x of [`geglu`] from `x` and the output gradient `g`.
pub fn geglu_backward(
    x: &CudaStorage,
    g: &CudaStorage,
    rows: usize,
    inner: usize,
) -> Result<CudaStorage> {
    let mut dx = x.sibling(x.len())?;
    ck::geglu::geglu_backward(x.gpu, rows, inner, &x.view(), &g.view(), &mut dx.view_mut())?;
    Ok(dx)
}

pub fn gated_residual(
    s: &GatedShape,
    x: &CudaStorage,
    gate: &CudaStorage,
    y: &CudaStorage,
) -> Result<CudaStorage> {
    let mut out = x.sibling(x.len())?;
    ck::gated_residual::gated_residual_forward(
        x.gpu,
        s,
        &x.view(),
        &gate.view(),
        &y.view(),
        &mut out.view_mut(),
    )?;
    Ok(out)
}

/// (∂y, ∂gate) from `[gate, y, grad_out]`.
pub fn gated_residual_backward(s: &GatedShape, t: [&CudaStorage; 3]) -> Result<[CudaStorage; 2]> {
    let [gate, y, g] = t;
    let (mut gy, mut gg) = (y.sibling(y.len())?, y.sibling(gate.len())?);
    ck::gated_residual::gated_residual_backward(
        y.gpu,
        s,
        &gate.view(),
        &y.view(),
        &g.view(),
        &mut gy.view_mut(),
        &mut gg.view_mut(),
    )?;
    Ok([gy, gg])
}

/// The per-sample MSE of `prediction` against `target`.
pub fn sample_mse(
    s: &SampleShape,
    prediction: &CudaStorage,
    target: &CudaStorage,
) -> Result<CudaStorage> {
    let mut mse = prediction.sibling(s.batch)?;
    ck::sample_mse::sample_mse_forward(
        prediction.gpu,
        s,
        &prediction.view(),
        &target.view(),
        &mut mse.view_mut(),
    )?;
    Ok(mse)
}

/// ∂prediction of [`sample_mse`] from `[prediction, target, grad_mse]`.
pub fn sample_mse_backward(s: &SampleShape, t: [&CudaStorage; 3]) -> Result<CudaStorage> {
    let [p, target, g] = t;
    let mut gp = p.sibling(p.len())?;
    ck::sample_mse::sample_mse_backward(
        p.gpu,
        s,
        &p.view(),
        &target.view(),
        &g.view(),
        &mut gp.view_mut(),
    )?;
    Ok(gp)
}

/// (out, lse) of attention with an optional additive `[q_len, kv_len]` score bias.
pub fn attention(
    s: &AttentionShape,
    [q, k, v]: [&CudaStorage; 3],
    bias: Option<&CudaStorage>,
) -> Result<[CudaStorage; 2]> {
    let mut out = q.sibling(q.len())?;
    let mut lse = q.sibling(checked_numel("attention", &[s.problems(), s.q_len])?)?;
    let bias = bias.map(CudaStorage::view);
    ck::attention::attention_forward(
        q.gpu,
        s,
        &q.view(),
        &k.view(),
        &v.view(),
        bias.as_ref(),
        &mut out.view_mut(),
        &mut lse.view_mut(),
    )?;
    Ok([out, lse])
}

/// (∂q, ∂k, ∂v) from `[q, k, v, out, lse, grad_out]` and the forward's `bias`, recomputing the probabilities from
/// the saved `lse`.
pub fn attention_backward(
    s: &AttentionShape,
    t: [&CudaStorage; 6],
    bias: Option<&CudaStorage>,
) -> Result<[CudaStorage; 3]> {
    let [q, k, v, out, lse, gout] = t;
    let (mut gq, mut gk, mut gv) = (
        q.sibling(q.len())?,
        k.sibling(k.len())?,
        v.sibling(v.len())?,
    );
    let bias = bias.map(CudaStorage::view);
    ck::attention_backward::attention_backward(
        q.gpu,
        s,
        &q.view(),
        &k.view(),
        &v.view(),
        bias.as_ref(),
        &out.view(),
        &lse.view(),
        &gout.view(),
        &mut gq.view_mut(),
        &mut gk.view_mut(),
        &mut gv.view_mut(),
    )?;
    Ok([gq, gk, gv])
}

// ---- random numbers, optimiser, in-place writes, noise ------------------------------------------------------------

/// Philox stream elements `offset..offset + len` on device `ordinal`, standard normal or uniform.
pub fn random(
    ordinal: usize,
    dtype: DType,
    len: usize,
    (seed, offset): (u64, u64),
    normal: bool,
) -> Result<CudaStorage> {
    check_storable("random", ordinal, dtype)?;
    let gpu = gpu(ordinal)?;
    let mut out = CudaStorage::uninit(gpu, ordinal, len)?;
    if normal {
        ck::philox::fill_normal(gpu, seed, offset, &mut out.view_mut())?;
    } else {
        ck::philox::fill_uniform(gpu, seed, offset, &mut out.view_mut())?;
    }
    Ok(out)
}

/// One fused AdamW step, in place.
pub fn adamw_step(
    cfg: &AdamWConfig,
    step: u64,
    param: &mut CudaStorage,
    grad: &CudaStorage,
    m: &mut CudaStorage,
    v: &mut CudaStorage,
) -> Result<()> {
    let gpu = param.gpu;
    ck::adamw::adamw_step(
        gpu,
        cfg,
        step,
        &mut param.view_mut(),
        &grad.view(),
        &mut m.view_mut(),
        &mut v.view_mut(),
    )?;
    Ok(())
}

/// One SGD-with-momentum step in place (PyTorch: `g ← g + wd·p`, `b ← μ·b + g`, `p ← p − lr·b`), composed of the
/// element-wise kernels (an optimiser step is a small share of a training step; AdamW has its own fused kernel).
pub fn sgd_momentum_step(
    lr: f32,
    momentum: f32,
    weight_decay: f32,
    param: &mut CudaStorage,
    grad: &CudaStorage,
    velocity: &mut CudaStorage,
) -> Result<()> {
    let flat = Layout::contiguous(&[param.len()])?;
    let decayed = unary(param, &flat, UnaryOp::Affine(weight_decay, 0.0))?;
    let g = binary(grad, &flat, &decayed, &flat, BinaryOp::Add)?;
    let carried = unary(velocity, &flat, UnaryOp::Affine(momentum, 0.0))?;
    let b = binary(&carried, &flat, &g, &flat, BinaryOp::Add)?;
    let step = unary(&b, &flat, UnaryOp::Affine(-lr, 0.0))?;
    let p = binary(param, &flat, &step, &flat, BinaryOp::Add)?;
    assign(velocity, &b, &flat)?;
    assign(param, &p, &flat)
}

/// Overwrites the whole of `dst` with the elements of `src` under `layout` (same count).
pub fn assign(dst: &mut CudaStorage, src: &CudaStorage, layout: &Layout) -> Result<()> {
    let strides = operand_strides(layout);
    ck::elementwise::copy_strided(
        src.gpu,
        layout.shape(),
        &src.view(),
        Operand::new(&strides, layout.offset()),
        &mut dst.view_mut(),
    )?;
    Ok(())
}

/// The fused forward process; the per-sample coefficients travel to the device first.
pub fn q_sample(
    x0: &CudaStorage,
    sqrt_ab: &[f32],
    sqrt_1mab: &[f32],
    seed: u64,
    offset: u64,
) -> Result<(CudaStorage, CudaStorage)> {
    let a = from_host(x0.ordinal, sqrt_ab)?;
    let b = from_host(x0.ordinal, sqrt_1mab)?;
    let (mut x_t, mut eps) = (x0.sibling(x0.len())?, x0.sibling(x0.len())?);
    ck::noise::q_sample(
        x0.gpu,
        &x0.view(),
        &a.view(),
        &b.view(),
        seed,
        offset,
        &mut x_t.view_mut(),
        &mut eps.view_mut(),
    )?;
    Ok((x_t, eps))
}

/// The fused reverse step. The CUDA kernel clips x̂0 to [−1, 1] or not at all, so `clip` must be `None` or `Some(1)`.
pub fn sampler_step(
    x_t: &CudaStorage,
    model_out: &CudaStorage,
    coef: &[StepCoefficients],
    clip: Option<f32>,
    seed: u64,
    offset: u64,
) -> Result<(CudaStorage, CudaStorage)> {
    let clip = match clip {
        None => false,
        Some(1.0) => true,
        Some(bound) => {
            return Err(Error::argument(
                "sampler_step",
                format!("clip bound {bound}: the CUDA sampler step clips to ±1 or not at all"),
            ))
        }
    };
    let packed = from_host(x_t.ordinal, &ck::noise::pack_coefficients(coef))?;
    let (mut prev, mut x0) = (x_t.sibling(x_t.len())?, x_t.sibling(x_t.len())?);
    ck::noise::sampler_step(
        x_t.gpu,
        &x_t.view(),
        &model_out.view(),
        &packed.view(),
        clip,
        seed,
        offset,
        &mut prev.view_mut(),
        &mut x0.view_mut(),
    )?;
    Ok((prev, x0))
}

// ---- collectives ---------------------------------------------------------------------------------------------------

/// This process's member of the NCCL communicator `id`, as rank `rank` of `size`, on device `ordinal`.
pub fn join_nccl(
    ordinal: usize,
    rank: usize,
    size: usize,
    id: &ck::nccl::UniqueId,
) -> Result<ck::nccl::NcclComm> {
    Ok(ck::nccl::NcclComm::join(gpu(ordinal)?, rank, size, id)?)
}

/// The element-wise sum over the ranks of `comm` of the elements of `layout`, in a new contiguous buffer (queued on
/// the stream after the kernels that wrote `s`).
pub fn nccl_all_reduce_sum(
    comm: &ck::nccl::NcclComm,
    s: &CudaStorage,
    layout: &Layout,
) -> Result<CudaStorage> {
    let mut out = copy_contiguous(s, layout)?;
    if !out.is_empty() {
        comm.all_reduce_sum_in_place(&mut out.view_mut())?;
    }
    Ok(out)
}

/// Waits until every kernel and collective queued on device `ordinal` has finished.
pub fn synchronize(ordinal: usize) -> Result<()> {
    Ok(gpu(ordinal)?.synchronize()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(stride: (usize, usize), padding: (usize, usize)) -> Conv2dShape {
        Conv2dShape {
            batch: 1,
            in_channels: 2,
            in_h: 5,
            in_w: 6,
            out_channels: 4,
            kernel_h: 3,
            kernel_w: 3,
            stride,
            padding,
            dilation: (1, 1),
            groups: 2,
        }
    }

    #[test]
    fn a_convolution_with_one_stride_and_padding_per_axis_maps_to_the_cuda_shape() {
        let gpu = gpu_conv_shape(&shape((2, 2), (1, 1))).unwrap();
        assert_eq!(
            (gpu.stride, gpu.padding, gpu.dilation, gpu.groups),
            (2, 1, 1, 2)
        );
        assert_eq!(
            (gpu.in_h, gpu.in_w, gpu.in_channels, gpu.out_channels),
            (5, 6, 2, 4)
        );
    }

    #[test]
    fn a_convolution_with_different_strides_per_axis_is_refused_by_name() {
        let err = gpu_conv_shape(&shape((1, 2), (0, 0)))
            .unwrap_err()
            .to_string();
        assert!(err.contains("stride (1, 2)"), "{err}");
        let err = gpu_conv_shape(&shape((1, 1), (0, 2)))
            .unwrap_err()
            .to_string();
        assert!(err.contains("padding (0, 2)"), "{err}");
    }

    #[test]
    fn layer_norm_is_group_norm_with_one_group_of_single_element_channels() {
        let s = as_group_norm(&LayerNormShape {
            rows: 6,
            dim: 33,
            eps: 1e-5,
        });
        assert_eq!(
            (s.batch, s.channels, s.spatial, s.groups, s.eps),
            (6, 33, 1, 1, 1e-5)
        );
    }
}
