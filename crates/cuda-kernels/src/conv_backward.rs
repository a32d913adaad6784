//! The two gradients of the 2-D convolution (NCHW, stride, padding, dilation, groups) and the bias gradient, as
//! implicit GEMMs on the forward's tiles (`kernels/conv2d_backward.ptx` has the mapping, the tiling and the split of
//! the weight gradient's reduction). Arguments in the order of `diffuse_cpu_kernels::conv2d`.

use cudarc::driver::{DevicePtr, DevicePtrMut};

use crate::buffer::DeviceBuffer;
use crate::context::{Gpu, Module};
use crate::conv::Conv2dShape;
use crate::error::{check_len, KernelError, Result};
use crate::launch::{grid_for, launch, Arg, Launch};

/// The block tile of both GEMM kernels (rows and columns) and the threads of a block.
const TILE: usize = 128;
const THREADS: u32 = 256;
/// The reduction is cut into chunks of whole k steps of 8 rows.
const K_STEP: usize = 8;
/// The fewest reduction rows worth a split of their own: below this a block's staging overhead dominates.
const MIN_SPLIT_ROWS: usize = 512;

/// The sizes every kernel of this file needs, checked once.
struct Geometry {
    out_h: usize,
    out_w: usize,
    /// `Cg = in_channels / groups`, `OCg = out_channels / groups`.
    cg: usize,
    ocg: usize,
}

/// Checks the shape (groups, the kernel fitting the padded input, every 32-bit index of the PTX) and derives sizes.
fn geometry(op: &'static str, s: &Conv2dShape) -> Result<Geometry> {
    let (out_h, out_w) = s.checked_output_hw(op)?;
    let (cg, ocg) = (s.in_channels / s.groups, s.out_channels / s.groups);
    let khw = s.kernel_h * s.kernel_w;
    let fits = |v: Option<usize>| v.is_some_and(|v| v < (1usize << 31));
    let input = s.batch.checked_mul(s.in_channels * s.in_h * s.in_w);
    let output = s.batch.checked_mul(s.out_channels * out_h * out_w);
    let within = fits(input)
        && fits(output)
        && fits(s.out_channels.checked_mul(cg * khw))
        && fits(Some(s.in_h + s.padding))
        && fits(Some(s.in_w + s.padding))
        && fits(s.kernel_h.checked_mul(s.dilation))
        && fits(s.kernel_w.checked_mul(s.dilation))
        && fits(s.stride.checked_mul(s.dilation))
        && s.stride
            .checked_mul(s.stride)
            .and_then(|phases| phases.checked_mul(s.groups))
            .is_some_and(|z| z < 65536);
    if !within {
        return Err(KernelError::new(
            op,
            format!("{s:?} exceeds the kernels' 32-bit indices"),
        ));
    }
    Ok(Geometry {
        out_h,
        out_w,
        cg,
        ocg,
    })
}

/// The geometry parameters every GEMM kernel takes after its pointers, in the PTX order.
fn geometry_args(s: &Conv2dShape, g: &Geometry) -> [Arg; 13] {
    let u = |v: usize| Arg::U32(v as u32);
    [
        u(s.batch),
        u(s.in_channels),
        u(s.in_h),
        u(s.in_w),
        u(s.out_channels),
        u(s.kernel_h),
        u(s.kernel_w),
        u(s.stride),
        u(s.padding),
        u(s.dilation),
        u(s.groups),
        u(g.out_h),
        u(g.out_w),
    ]
}

/// `grad_input = convᵀ(grad_output, weight)`: the gradient of [`crate::conv::conv2d_forward`] with respect to `x`,
/// overwritten. `grad_output` is `[batch, out_channels, out_h, out_w]`, `weight` as in the forward. One GEMM per
/// group and stride phase, each multiplying only the taps that reach its pixels.
pub fn conv2d_backward_input(
    gpu: &Gpu,
    shape: &Conv2dShape,
    grad_output: &impl DevicePtr<f32>,
    weight: &impl DevicePtr<f32>,
    grad_input: &mut impl DevicePtrMut<f32>,
) -> Result<()> {
    const OP: &str = "conv2d_backward_input";
    let s = shape;
    let g = geometry(OP, s)?;
    check_len(
        OP,
        "grad_output",
        grad_output.len(),
        s.batch * s.out_channels * g.out_h * g.out_w,
    )?;
    check_len(
        OP,
        "weight",
        weight.len(),
        s.out_channels * g.cg * s.kernel_h * s.kernel_w,
    )?;
    check_len(
        OP,
        "grad_input",
        grad_input.len(),
        s.batch * s.in_channels * s.in_h * s.in_w,
    )?;
    // the largest stride phase: ⌈H / s⌉·⌈W / s⌉ pixels per image
    let pixels = s.batch * s.in_h.div_ceil(s.stride) * s.in_w.div_ceil(s.stride);
    if pixels == 0 || g.cg == 0 {
        return Ok(());
    }
    let stream = gpu.stream();
    let (dy_ptr, _gdy) = grad_output.device_ptr(stream);
    let (w_ptr, _gw) = weight.device_ptr(stream);
    let (dx_ptr, _gdx) = grad_input.device_ptr_mut(stream);
    let mut args = vec![Arg::Ptr(dy_ptr), Arg::Ptr(w_ptr), Arg::Ptr(dx_ptr)];
    args.extend(geometry_args(s, &g));
    launch(
        gpu,
        OP,
        Launch {
            module: Module::Conv2dBackward,
            kernel: "conv2d_backward_input",
            grid: (
                pixels.div_ceil(TILE) as u32,
                g.cg.div_ceil(TILE) as u32,
                (s.groups * s.stride * s.stride) as u32,
            ),
            block: (THREADS, 1, 1),
            shared_bytes: 0,
        },
        &args,
    )
}

/// How the weight gradient's reduction over `rows = batch·out_h·out_w` is split: `(splits, chunk)` with `chunk` a
/// multiple of 8 and every split non-empty. Enough splits to give each multiprocessor about two blocks, but no more
/// than one per `MIN_SPLIT_ROWS` rows.
fn reduction_split(rows: usize, tiles_per_split: usize, multiprocessors: usize) -> (usize, usize) {
    let wanted = (2 * multiprocessors).div_ceil(tiles_per_split.max(1));
    let most = rows.div_ceil(MIN_SPLIT_ROWS).max(1);
    let splits = wanted.clamp(1, most);
    let chunk = (rows.div_ceil(splits).div_ceil(K_STEP) * K_STEP).max(K_STEP);
    (rows.div_ceil(chunk).max(1), chunk)
}

/// `grad_weight = Σ_{b, oh, ow} grad_output ⊗ im2col(input)` and, if asked, `grad_bias[oc] = Σ grad_output[., oc, ., .]`:
/// the gradients of [`crate::conv::conv2d_forward`] with respect to its weight and bias, both overwritten.
///
/// Deterministic: the reduction over `batch·out_h·out_w` is cut into a fixed number of chunks (a function of the
/// shape and the device's multiprocessor count), each summed in order into a slab of a pooled workspace, and the
/// slabs are added in order by a second kernel. The same inputs on the same device give the same bits every time.
pub fn conv2d_backward_weight(
    gpu: &Gpu,
    shape: &Conv2dShape,
    input: &impl DevicePtr<f32>,
    grad_output: &impl DevicePtr<f32>,
    grad_weight: &mut impl DevicePtrMut<f32>,
    grad_bias: Option<&mut impl DevicePtrMut<f32>>,
) -> Result<()> {
    const OP: &str = "conv2d_backward_weight";
    let s = shape;
    let g = geometry(OP, s)?;
    let patch = g.cg * s.kernel_h * s.kernel_w;
    let weight_len = s.out_channels * patch;
    let plane = g.out_h * g.out_w;
    check_len(
        OP,
        "input",
        input.len(),
        s.batch * s.in_channels * s.in_h * s.in_w,
    )?;
    check_len(
        OP,
        "grad_output",
        grad_output.len(),
        s.batch * s.out_channels * plane,
    )?;
    check_len(OP, "grad_weight", grad_weight.len(), weight_len)?;
    if let Some(db) = &grad_bias {
        check_len(OP, "grad_bias", db.len(), s.out_channels)?;
    }
    let rows = s.batch * plane;
    let tiles = patch.div_ceil(TILE) * g.ocg.div_ceil(TILE) * s.groups;
    let (splits, chunk) = reduction_split(rows, tiles, gpu.limits().multiprocessors as usize);
    if splits as u64 * weight_len as u64 >= 1 << 31 {
        return Err(KernelError::new(
            OP,
            format!(
                "{splits} partial weight gradients of {weight_len} floats exceed 32-bit indices"
            ),
        ));
    }
    // One split writes the gradient directly; several write weight-shaped slabs of a pooled workspace. The pool hands
    // the workspace out again only to later work on this same stream, which runs after the summing kernel read it.
    let mut workspace = if splits > 1 {
        Some(gpu.take_buffer(splits * weight_len)?)
    } else {
        None
    };
    let split = Split { splits, chunk };
    let result = weight_gradient(
        gpu,
        s,
        &g,
        input,
        grad_output,
        grad_weight,
        workspace.as_mut(),
        split,
    );
    if let Some(buffer) = workspace {
        gpu.give_back_buffer(buffer);
    }
    result?;
    if let Some(db) = grad_bias {
        bias_gradient(gpu, s, plane, grad_output, db)?;
    }
    Ok(())
}

/// The reduction split of [`reduction_split`].
#[derive(Clone, Copy)]
struct Split {
    splits: usize,
    chunk: usize,
}

/// Launches the split GEMM (into `workspace`, or into `grad_weight` when there is one split) and the ordered sum.
/// An empty batch runs the GEMM with an empty reduction, which writes zeros.
#[allow(clippy::too_many_arguments)] // the buffers of one operation and its plan
fn weight_gradient(
    gpu: &Gpu,
    s: &Conv2dShape,
    g: &Geometry,
    input: &impl DevicePtr<f32>,
    grad_output: &impl DevicePtr<f32>,
    grad_weight: &mut impl DevicePtrMut<f32>,
    workspace: Option<&mut DeviceBuffer>,
    split: Split,
) -> Result<()> {
    const OP: &str = "conv2d_backward_weight";
    let patch = g.cg * s.kernel_h * s.kernel_w;
    let weight_len = s.out_channels * patch;
    if weight_len == 0 {
        return Ok(());
    }
    let stream = gpu.stream();
    let (x_ptr, _gx) = input.device_ptr(stream);
    let (dy_ptr, _gdy) = grad_output.device_ptr(stream);
    let (dw_ptr, _gdw) = grad_weight.device_ptr_mut(stream);
    let mut partial_view = workspace.map(|w| w.view_mut());
    let partial_guard = partial_view.as_mut().map(|v| v.device_ptr_mut(stream));
    let partial_ptr = partial_guard.as_ref().map_or(dw_ptr, |(ptr, _guard)| *ptr);
    let mut args = vec![Arg::Ptr(x_ptr), Arg::Ptr(dy_ptr), Arg::Ptr(partial_ptr)];
    args.extend(geometry_args(s, g));
    args.extend([Arg::U32(split.splits as u32), Arg::U32(split.chunk as u32)]);
    launch(
        gpu,
        OP,
        Launch {
            module: Module::Conv2dBackward,
            kernel: "conv2d_backward_weight",
            grid: (
                patch.div_ceil(TILE) as u32,
                g.ocg.div_ceil(TILE) as u32,
                (s.groups * split.splits) as u32,
            ),
            block: (THREADS, 1, 1),
            shared_bytes: 0,
        },
        &args,
    )?;
    if split.splits == 1 {
        return Ok(());
    }
    launch(
        gpu,
        OP,
        Launch::linear(
            Module::Conv2dBackward,
            "conv2d_sum_splits",
            grid_for(weight_len as u64, THREADS, gpu),
            THREADS,
        ),
        &[
            Arg::Ptr(partial_ptr),
            Arg::Ptr(dw_ptr),
            Arg::U32(weight_len as u32),
            Arg::U32(split.splits as u32),
        ],
    )
}

/// `grad_bias[oc] = Σ_{b, pixel} grad_output[b, oc, pixel]`, one block per output channel.
pub(crate) fn bias_gradient(
    gpu: &Gpu,
    s: &Conv2dShape,
    plane: usize,
    grad_output: &impl DevicePtr<f32>,
    grad_bias: &mut impl DevicePtrMut<f32>,
) -> Result<()> {
    const OP: &str = "conv2d_backward_weight";
    if s.out_channels == 0 {
        return Ok(());
    }
    let stream = gpu.stream();
    let (dy_ptr, _gdy) = grad_output.device_ptr(stream);
    let (db_ptr, _gdb) = grad_bias.device_ptr_mut(stream);
    launch(
        gpu,
        OP,
        Launch::linear(
            Module::Conv2dBackward,
            "conv2d_backward_bias",
            s.out_channels as u32,
            THREADS,
        ),
        &[
            Arg::Ptr(dy_ptr),
            Arg::Ptr(db_ptr),
            Arg::U32(s.batch as u32),
            Arg::U32(s.out_channels as u32),
            Arg::U32(plane as u32),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::{reduction_split, K_STEP, MIN_SPLIT_ROWS};

    #[test]
    fn the_reduction_split_covers_every_row_with_non_empty_chunks_of_whole_k_steps() {
        for rows in [0, 1, 7, 8, 9, 100, 511, 512, 513, 4096, 131_072, 1_000_003] {
            for tiles in [1, 3, 64, 1000] {
                for sms in [1, 132] {
                    let (splits, chunk) = reduction_split(rows, tiles, sms);
                    assert!(splits >= 1 && chunk % K_STEP == 0 && chunk > 0);
                    assert!(splits * chunk >= rows, "{rows} rows, {splits} x {chunk}");
                    assert!(rows == 0 || (splits - 1) * chunk < rows, "an empty split");
                    assert!(splits <= rows.div_ceil(MIN_SPLIT_ROWS).max(1));
                }
            }
        }
    }

    #[test]
    fn a_small_reduction_is_not_split() {
        assert_eq!(reduction_split(300, 1, 132), (1, 304));
    }
}
