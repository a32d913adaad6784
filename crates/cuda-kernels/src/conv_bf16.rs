//! The 2-D convolution (groups = 1) and both of its gradients on the tensor cores: operands rounded to bf16, products
//! accumulated in f32, results in f32. Each is one `gemm_bf16` per chunk of samples between the gathers of
//! `kernels/conv2d_bf16.ptx` (which has the math):
//!
//! | pass | product | around it |
//! |---|---|---|
//! | forward | `Y [OC, Q₈] = W [OC, K₈] · col [K₈, Q₈]` | `pack_bf16(W)`, `im2col_bf16(x)`; Y's columns to y (+ bias) |
//! | input gradient | `dcol [K, Q₈] = Wᵀ [K, OC₈] · dY [OC₈, Q₈]` | `pack_bf16(Wᵀ)`, `im2col_bf16(dy)` (1×1); `col2im` |
//! | weight gradient | `dW [OC, K₈] += dY [OC, Q₈] · colᵀ [Q₈, K₈]` | `im2col_bf16(dy)`, `im2col_bf16(x)` transposed |
//!
//! with K = C·KH·KW, Q the output pixels of the chunk, and ₈ a size rounded up to a multiple of 8 (zero padding, which
//! adds nothing to any sum). A chunk holds as many whole samples as keep one patch matrix within
//! [`CHUNK_ELEMENTS`]; the weight gradient accumulates the chunks (`beta = 1`). The bias gradient is the f32 kernel's.
//! Scratch comes from the device's caching allocator. Grouped convolutions have no bf16 path (the tensor crate keeps
//! them in f32): their products are small and they are rare in the models here.

use cudarc::driver::{CudaView, CudaViewMut, DevicePtr, DevicePtrMut};

use crate::buffer::DeviceBuffer;
use crate::context::{Gpu, Module};
use crate::conv::Conv2dShape;
use crate::conv_backward::bias_gradient;
use crate::elementwise::{binary, copy_strided, BinaryOp, Operand};
use crate::error::{check_len, driver_error, KernelError, Result};
use crate::gemm::{gemm_bf16, MatrixLayout};
use crate::launch::{grid_for, launch, Arg, Launch};
use crate::pack_bf16::pack_bf16;

const THREADS: u32 = 256;
/// The most elements one chunk's patch matrix (`K₈ × Q₈`, or `OC₈ × Q₈` for dY) may have: 2²⁶, so 128 MiB of bf16
/// scratch and 256 MiB for the input gradient's f32 column gradient. A single sample may need more; it is then a
/// chunk on its own, within the kernels' 31-bit indices.
pub const CHUNK_ELEMENTS: usize = 1 << 26;

/// A convolution with a bf16 path and the sizes its three passes share, checked once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    pub shape: Conv2dShape,
    pub out_h: usize,
    pub out_w: usize,
    /// K = C·KH·KW and K₈.
    pub k: usize,
    pub k8: usize,
    /// OC₈.
    pub oc8: usize,
    /// Samples per chunk (the last chunk may hold fewer).
    pub samples: usize,
}

impl Plan {
    /// Checks that `s` has a bf16 path (groups = 1) and that a chunk's matrices fit the kernels' 31-bit indices.
    pub fn new(op: &'static str, s: &Conv2dShape) -> Result<Plan> {
        Self::with_chunk_elements(op, s, CHUNK_ELEMENTS)
    }

    /// [`Plan::new`] with patch matrices of at most `budget` elements per chunk (tests use small ones to reach
    /// several chunks on small shapes).
    pub fn with_chunk_elements(op: &'static str, s: &Conv2dShape, budget: usize) -> Result<Plan> {
        if s.groups != 1 {
            return Err(KernelError::new(
                op,
                format!(
                    "the bf16 convolution takes groups = 1, not {}; run grouped convolutions in f32",
                    s.groups
                ),
            ));
        }
        let (out_h, out_w) = s.checked_output_hw(op)?;
        let plane = out_h * out_w;
        let k = s.in_channels * s.kernel_h * s.kernel_w;
        let (k8, oc8) = (k.next_multiple_of(8), s.out_channels.next_multiple_of(8));
        let rows = k8.max(oc8).max(1);
        let samples = (budget / (rows * plane.max(1))).clamp(1, s.batch.max(1));
        let q8 = (samples * plane).next_multiple_of(8);
        let fits = |v: Option<usize>| v.is_some_and(|v| v < (1usize << 31));
        let within = fits(rows.checked_mul(q8))
            && fits(samples.checked_mul(s.in_channels * s.in_h * s.in_w))
            && fits(samples.checked_mul(s.out_channels * plane))
            && fits(Some(s.in_h + s.padding))
            && fits(Some(s.in_w + s.padding))
            && fits(s.kernel_h.max(s.kernel_w).checked_mul(s.dilation))
            && fits(out_h.max(out_w).checked_mul(s.stride));
        if !within {
            return Err(KernelError::new(
                op,
                format!(
                    "{s:?} exceeds the bf16 convolution's 31-bit indices even one sample at a time"
                ),
            ));
        }
        Ok(Plan {
            shape: *s,
            out_h,
            out_w,
            k,
            k8,
            oc8,
            samples,
        })
    }

    /// The chunks of samples, `(first, count)`.
    pub fn chunks(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        let batch = self.shape.batch;
        (0..batch)
            .step_by(self.samples)
            .map(move |first| (first, self.samples.min(batch - first)))
    }
}

/// A buffer of the caching allocator, handed back when dropped. Later work on the stream, the only work that can get
/// it next, runs after the kernels that used it.
struct Scratch<'g> {
    gpu: &'g Gpu,
    buffer: Option<DeviceBuffer>,
}

impl<'g> Scratch<'g> {
    fn f32(gpu: &'g Gpu, len: usize) -> Result<Self> {
        Ok(Scratch {
            gpu,
            buffer: Some(gpu.take_buffer(len)?),
        })
    }

    /// Room for `len` bf16 (`len` even: every matrix here has an even number of columns).
    fn bf16(gpu: &'g Gpu, len: usize) -> Result<Self> {
        Self::f32(gpu, len / 2)
    }

    fn get(&self) -> &DeviceBuffer {
        self.buffer.as_ref().expect("scratch present until dropped")
    }

    fn get_mut(&mut self) -> &mut DeviceBuffer {
        self.buffer.as_mut().expect("scratch present until dropped")
    }
}

impl Drop for Scratch<'_> {
    fn drop(&mut self) {
        if let Some(buffer) = self.buffer.take() {
            self.gpu.give_back_buffer(buffer);
        }
    }
}

/// The convolution geometry `im2col_bf16` and `col2im` take, in their parameter order.
#[derive(Debug, Clone, Copy)]
struct Gather {
    batch: usize,
    channels: usize,
    height: usize,
    width: usize,
    kernel_h: usize,
    kernel_w: usize,
    stride: usize,
    padding: usize,
    dilation: usize,
    out_h: usize,
    out_w: usize,
}

impl Gather {
    /// The convolution `s` over `samples` samples.
    fn of(s: &Conv2dShape, plan: &Plan, samples: usize) -> Gather {
        Gather {
            batch: samples,
            channels: s.in_channels,
            height: s.in_h,
            width: s.in_w,
            kernel_h: s.kernel_h,
            kernel_w: s.kernel_w,
            stride: s.stride,
            padding: s.padding,
            dilation: s.dilation,
            out_h: plan.out_h,
            out_w: plan.out_w,
        }
    }

    /// The 1×1 gather that lays out `samples` samples of the output gradient as dY `[OC, Q]`.
    fn output_gradient(s: &Conv2dShape, plan: &Plan, samples: usize) -> Gather {
        Gather {
            batch: samples,
            channels: s.out_channels,
            height: plan.out_h,
            width: plan.out_w,
            kernel_h: 1,
            kernel_w: 1,
            stride: 1,
            padding: 0,
            dilation: 1,
            out_h: plan.out_h,
            out_w: plan.out_w,
        }
    }

    fn input_len(&self) -> usize {
        self.batch * self.channels * self.height * self.width
    }

    fn args(&self) -> [Arg; 11] {
        let u = |v: usize| Arg::U32(v as u32);
        [
            u(self.batch),
            u(self.channels),
            u(self.height),
            u(self.width),
            u(self.kernel_h),
            u(self.kernel_w),
            u(self.stride),
            u(self.padding),
            u(self.dilation),
            u(self.out_h),
            u(self.out_w),
        ]
    }
}

/// `dst [rows_out, cols_out] = bf16(col)` (or `bf16(colᵀ)` when `transposed`) of the gather `g` over `x`, zero past
/// the matrix; `rows_out · cols_out` bf16 in `dst`.
fn im2col(
    gpu: &Gpu,
    x: &CudaView<f32>,
    g: &Gather,
    transposed: bool,
    (rows_out, cols_out): (usize, usize),
    dst: &mut DeviceBuffer,
) -> Result<()> {
    const OP: &str = "im2col_bf16";
    check_len(OP, "x", x.len(), g.input_len())?;
    check_len(OP, "the patch matrix", 2 * dst.len(), rows_out * cols_out)?;
    let stream = gpu.stream();
    let (x_ptr, _gx) = x.device_ptr(stream);
    let mut dst16 = dst.as_bf16_mut();
    let (dst_ptr, _gd) = dst16.device_ptr_mut(stream);
    let pairs = (cols_out / 2) as u64;
    let grid = (
        pairs.div_ceil(u64::from(THREADS)).clamp(1, 1024) as u32,
        rows_out.clamp(1, 65535) as u32,
        1,
    );
    let mut args = vec![
        Arg::Ptr(dst_ptr),
        Arg::Ptr(x_ptr),
        Arg::U32(rows_out as u32),
        Arg::U32(cols_out as u32),
        Arg::U32(u32::from(transposed)),
    ];
    args.extend(g.args());
    launch(
        gpu,
        OP,
        Launch {
            module: Module::Conv2dBf16,
            kernel: OP,
            grid,
            block: (THREADS, 1, 1),
            shared_bytes: 0,
        },
        &args,
    )
}

/// `dx = fold(dcol)`: each input element sums the column-gradient entries of the taps that read it.
fn col2im(
    gpu: &Gpu,
    dcol: &DeviceBuffer,
    ld: usize,
    g: &Gather,
    dx: &mut CudaViewMut<f32>,
) -> Result<()> {
    const OP: &str = "col2im";
    check_len(OP, "dx", dx.len(), g.input_len())?;
    let k = g.channels * g.kernel_h * g.kernel_w;
    check_len(OP, "the column gradient", dcol.len(), k * ld)?;
    let stream = gpu.stream();
    let (dcol_ptr, _gc) = dcol.device_ptr(stream);
    let (dx_ptr, _gx) = dx.device_ptr_mut(stream);
    let mut args = vec![Arg::Ptr(dx_ptr), Arg::Ptr(dcol_ptr), Arg::U32(ld as u32)];
    args.extend(g.args());
    launch(
        gpu,
        OP,
        Launch::linear(
            Module::Conv2dBf16,
            OP,
            grid_for(g.input_len() as u64, THREADS, gpu),
            THREADS,
        ),
        &args,
    )
}

/// `y = conv2d(x, weight) + bias` for the convolution `plan.shape`, in bf16 with f32 accumulation; shapes as
/// [`crate::conv::conv2d_forward`].
pub fn conv2d_forward_bf16(
    gpu: &Gpu,
    plan: &Plan,
    x: &CudaView<f32>,
    weight: &CudaView<f32>,
    bias: Option<&CudaView<f32>>,
    y: &mut CudaViewMut<f32>,
) -> Result<()> {
    const OP: &str = "conv2d_forward_bf16";
    let s = &plan.shape;
    let plane = plan.out_h * plan.out_w;
    let (x_per, y_per) = (s.in_channels * s.in_h * s.in_w, s.out_channels * plane);
    check_len(OP, "x", x.len(), s.batch * x_per)?;
    check_len(OP, "weight", weight.len(), s.out_channels * plan.k)?;
    if let Some(b) = bias {
        check_len(OP, "bias", b.len(), s.out_channels)?;
    }
    check_len(OP, "y", y.len(), s.batch * y_per)?;
    if s.batch * y_per == 0 {
        return Ok(());
    }
    let mut w16 = Scratch::bf16(gpu, s.out_channels * plan.k8)?;
    let rows_major = MatrixLayout::row_major(plan.k);
    let (oc, k, k8) = (s.out_channels, plan.k, plan.k8);
    pack_bf16(
        gpu,
        weight,
        oc,
        k,
        rows_major,
        oc,
        k8,
        &mut w16.get_mut().as_bf16_mut(),
    )?;
    for (first, samples) in plan.chunks() {
        let q8 = (samples * plane).next_multiple_of(8);
        let g = Gather::of(s, plan, samples);
        let mut col = Scratch::bf16(gpu, k8 * q8)?;
        let x_chunk = x.slice(first * x_per..(first + samples) * x_per);
        im2col(gpu, &x_chunk, &g, false, (k8, q8), col.get_mut())?;
        let mut product = Scratch::f32(gpu, oc * q8)?;
        let (a, b) = (w16.get().as_bf16(), col.get().as_bf16());
        gemm_bf16(gpu, oc, q8, k8, 1.0, &a, &b, 0.0, product.get_mut())?;
        // Y[oc, n·plane + p] -> y[first + n, oc, p], plus bias[oc]
        let shape = [samples, oc, plane];
        let strides = [plane as isize, q8 as isize, 1];
        let mut y_chunk = y.slice_mut(first * y_per..(first + samples) * y_per);
        match bias {
            Some(b) => binary(
                gpu,
                BinaryOp::Add,
                &shape,
                product.get(),
                Operand::new(&strides, 0),
                b,
                Operand::new(&[0, 1, 0], 0),
                &mut y_chunk,
            )?,
            None => copy_strided(
                gpu,
                &shape,
                product.get(),
                Operand::new(&strides, 0),
                &mut y_chunk,
            )?,
        }
    }
    Ok(())
}

/// `grad_input` of the convolution in bf16 with f32 accumulation (overwritten); shapes as
/// [`crate::conv_backward::conv2d_backward_input`].
pub fn conv2d_backward_input_bf16(
    gpu: &Gpu,
    plan: &Plan,
    grad_output: &CudaView<f32>,
    weight: &CudaView<f32>,
    grad_input: &mut CudaViewMut<f32>,
) -> Result<()> {
    const OP: &str = "conv2d_backward_input_bf16";
    let s = &plan.shape;
    let plane = plan.out_h * plan.out_w;
    let (x_per, y_per) = (s.in_channels * s.in_h * s.in_w, s.out_channels * plane);
    check_len(OP, "grad_output", grad_output.len(), s.batch * y_per)?;
    check_len(OP, "weight", weight.len(), s.out_channels * plan.k)?;
    check_len(OP, "grad_input", grad_input.len(), s.batch * x_per)?;
    if s.batch * x_per == 0 {
        return Ok(());
    }
    if plan.k * s.out_channels == 0 {
        // every tap of every input element sums nothing
        return gpu
            .stream()
            .memset_zeros(grad_input)
            .map_err(|e| driver_error(OP, "zeroing grad_input", e));
    }
    let (oc, oc8, k) = (s.out_channels, plan.oc8, plan.k);
    // Wᵀ [K, OC]: the weight [OC, K] read down its columns
    let transposed = MatrixLayout::transposed(k);
    let mut wt16 = Scratch::bf16(gpu, k * oc8)?;
    pack_bf16(
        gpu,
        weight,
        k,
        oc,
        transposed,
        k,
        oc8,
        &mut wt16.get_mut().as_bf16_mut(),
    )?;
    for (first, samples) in plan.chunks() {
        let q8 = (samples * plane).next_multiple_of(8);
        let mut dy16 = Scratch::bf16(gpu, oc8 * q8)?;
        let dy_chunk = grad_output.slice(first * y_per..(first + samples) * y_per);
        let dy_gather = Gather::output_gradient(s, plan, samples);
        im2col(gpu, &dy_chunk, &dy_gather, false, (oc8, q8), dy16.get_mut())?;
        let mut dcol = Scratch::f32(gpu, k * q8)?;
        let (a, b) = (wt16.get().as_bf16(), dy16.get().as_bf16());
        gemm_bf16(gpu, k, q8, oc8, 1.0, &a, &b, 0.0, dcol.get_mut())?;
        let mut dx_chunk = grad_input.slice_mut(first * x_per..(first + samples) * x_per);
        col2im(
            gpu,
            dcol.get(),
            q8,
            &Gather::of(s, plan, samples),
            &mut dx_chunk,
        )?;
    }
    Ok(())
}

/// `(grad_weight, grad_bias when asked)` of the convolution, both overwritten: the weight gradient in bf16 with f32
/// accumulation, the bias gradient by the f32 kernel. Shapes as [`crate::conv_backward::conv2d_backward_weight`].
pub fn conv2d_backward_weight_bf16(
    gpu: &Gpu,
    plan: &Plan,
    input: &CudaView<f32>,
    grad_output: &CudaView<f32>,
    grad_weight: &mut CudaViewMut<f32>,
    grad_bias: Option<&mut CudaViewMut<f32>>,
) -> Result<()> {
    const OP: &str = "conv2d_backward_weight_bf16";
    let s = &plan.shape;
    let plane = plan.out_h * plan.out_w;
    let (x_per, y_per) = (s.in_channels * s.in_h * s.in_w, s.out_channels * plane);
    let (oc, k) = (s.out_channels, plan.k);
    check_len(OP, "input", input.len(), s.batch * x_per)?;
    check_len(OP, "grad_output", grad_output.len(), s.batch * y_per)?;
    check_len(OP, "grad_weight", grad_weight.len(), oc * k)?;
    if let Some(db) = &grad_bias {
        check_len(OP, "grad_bias", db.len(), oc)?;
    }
    if oc * k > 0 {
        if s.batch * plane == 0 {
            // no output pixels: the gradient is the empty sum
            gpu.stream()
                .memset_zeros(grad_weight)
                .map_err(|e| driver_error(OP, "zeroing grad_weight", e))?;
        } else {
            weight_gradient(gpu, plan, input, grad_output, grad_weight)?;
        }
    }
    if let Some(db) = grad_bias {
        bias_gradient(gpu, s, plane, grad_output, db)?;
    }
    Ok(())
}

/// dW = Σ over chunks of dY · colᵀ, into `grad_weight` directly when K₈ = K, else into `[OC, K₈]` scratch whose first
/// K columns are copied out.
fn weight_gradient(
    gpu: &Gpu,
    plan: &Plan,
    input: &CudaView<f32>,
    grad_output: &CudaView<f32>,
    grad_weight: &mut CudaViewMut<f32>,
) -> Result<()> {
    let s = &plan.shape;
    let plane = plan.out_h * plan.out_w;
    let (x_per, y_per) = (s.in_channels * s.in_h * s.in_w, s.out_channels * plane);
    let (oc, k, k8) = (s.out_channels, plan.k, plan.k8);
    let mut wide = if k8 == k {
        None
    } else {
        Some(Scratch::f32(gpu, oc * k8)?)
    };
    for (first, samples) in plan.chunks() {
        let q8 = (samples * plane).next_multiple_of(8);
        let mut dy16 = Scratch::bf16(gpu, oc * q8)?;
        let dy_chunk = grad_output.slice(first * y_per..(first + samples) * y_per);
        let dy_gather = Gather::output_gradient(s, plan, samples);
        im2col(gpu, &dy_chunk, &dy_gather, false, (oc, q8), dy16.get_mut())?;
        let mut colt = Scratch::bf16(gpu, q8 * k8)?;
        let x_chunk = input.slice(first * x_per..(first + samples) * x_per);
        im2col(
            gpu,
            &x_chunk,
            &Gather::of(s, plan, samples),
            true,
            (q8, k8),
            colt.get_mut(),
        )?;
        let (a, b) = (dy16.get().as_bf16(), colt.get().as_bf16());
        let beta = if first == 0 { 0.0 } else { 1.0 };
        match wide.as_mut() {
            Some(wide) => gemm_bf16(gpu, oc, k8, q8, 1.0, &a, &b, beta, wide.get_mut())?,
            None => gemm_bf16(gpu, oc, k8, q8, 1.0, &a, &b, beta, grad_weight)?,
        }
    }
    if let Some(wide) = wide {
        let strides = [k8 as isize, 1];
        copy_strided(
            gpu,
            &[oc, k],
            wide.get(),
            Operand::new(&strides, 0),
            grad_weight,
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(batch: usize, channels: usize, side: usize, out_channels: usize) -> Conv2dShape {
        Conv2dShape {
            batch,
            in_channels: channels,
            in_h: side,
            in_w: side,
            out_channels,
            kernel_h: 3,
            kernel_w: 3,
            stride: 1,
            padding: 1,
            dilation: 1,
            groups: 1,
        }
    }

    #[test]
    fn the_chunks_cover_the_batch_in_order_within_the_patch_budget() {
        // fashion-base's 64-channel 3x3 at 28x28: K = 576, 451584 patch elements per sample
        let plan = Plan::new("test", &shape(300, 64, 28, 64)).unwrap();
        assert_eq!((plan.k, plan.k8, plan.oc8), (576, 576, 64));
        assert_eq!(plan.samples, 148); // ⌊2²⁶ / 451584⌋
        assert!(plan.k8 * (plan.samples * 784).next_multiple_of(8) <= CHUNK_ELEMENTS);
        let chunks: Vec<_> = plan.chunks().collect();
        assert_eq!(chunks, [(0, 148), (148, 148), (296, 4)]);
        // at the benchmark's batch of 128, one chunk
        let plan = Plan::new("test", &shape(128, 64, 28, 64)).unwrap();
        assert_eq!(plan.chunks().collect::<Vec<_>>(), [(0, 128)]);
        // a batch that fits in one chunk, and batch 1
        assert_eq!(
            Plan::new("test", &shape(4, 3, 8, 5))
                .unwrap()
                .chunks()
                .collect::<Vec<_>>(),
            [(0, 4)]
        );
        assert_eq!(
            Plan::new("test", &shape(1, 3, 8, 5))
                .unwrap()
                .chunks()
                .collect::<Vec<_>>(),
            [(0, 1)]
        );
        assert_eq!(
            Plan::new("test", &shape(0, 3, 8, 5))
                .unwrap()
                .chunks()
                .count(),
            0
        );
    }

    #[test]
    fn a_sample_too_large_for_one_chunk_is_a_chunk_of_its_own() {
        let plan = Plan::new("test", &shape(3, 64, 512, 8)).unwrap();
        assert_eq!(plan.samples, 1);
        assert_eq!(plan.chunks().collect::<Vec<_>>(), [(0, 1), (1, 1), (2, 1)]);
    }

    #[test]
    fn grouped_and_oversized_convolutions_are_refused_by_name() {
        let mut grouped = shape(2, 4, 8, 4);
        grouped.groups = 2;
        let err = Plan::new("conv2d_forward_bf16", &grouped).unwrap_err();
        assert!(err.to_string().contains("groups = 1, not 2"), "{err}");
        let err = Plan::new("conv2d_forward_bf16", &shape(1, 4096, 1024, 8)).unwrap_err();
        assert!(err.to_string().contains("31-bit indices"), "{err}");
    }
}
