//! NCHW 2-D convolution (stride, padding, dilation, groups) and its two gradients, as im2col + GEMM or, for 3×3
//! stride-1 convolutions with enough channels, Winograd F(2×2, 3×3) (`winograd/`), or, for stride-1 convolutions with
//! few output channels, a direct convolution (`direct.rs`; see [`Conv2dAlgorithm`]).
//!
//! With `G = groups`, `Cg = in_channels / G`, `Og = out_channels / G`, group `g` of image `n` computes
//!
//! ```text
//! y[n, g·Og + o, oh, ow] = b[g·Og + o] + Σ_{c<Cg, kh, kw} W[g·Og + o, c, kh, kw] · x[n, g·Cg + c, oh·sh − ph + kh·dh, ow·sw − pw + kw·dw]
//! ```
//!
//! (x is 0 in the padding). Writing `col = im2col(x[n, group g])` (`[Cg·KH·KW × OH·OW]`, see `im2col.rs`) and
//! `W_g = W[g·Og.., ·]` as an `[Og × Cg·KH·KW]` matrix, each step is one GEMM:
//!
//! ```text
//! forward          y_g   = W_g · col  (+ b_g broadcast along each row)
//! backward input   dx_g  = col2im(W_gᵀ · dy_g)
//! backward weight  dW_g  = Σ_n dy_g[n] · col[n]ᵀ           db = Σ_{n, oh, ow} dy
//! ```
//!
//! Small images make thin GEMMs (7×7 outputs are 49 columns: a quarter of the 16-wide register tile wasted, and
//! the whole weight repacked for 49 columns of work), so `images = ⌈MIN_GEMM_COLUMNS / (OH·OW)⌉` images are put side
//! by side: their column matrices form one `[Cg·KH·KW × images·OH·OW]` matrix and each step above is one GEMM per
//! chunk of images, with `y_g`/`dy_g` copied between NCHW and `[Og × images·OH·OW]` (a copy of the output, cheap
//! against the `Cg·KH·KW` multiply-adds per output). A chunk of one image writes/reads NCHW directly, and a 1×1
//! kernel with stride 1 and no padding uses the input slab itself as `col`.
//!
//! Threading and memory. Forward and backward-input run chunks in parallel (rayon); each task keeps a scratch
//! column matrix of `Cg·KH·KW · images·OH·OW` floats and, for chunks of several images, an output block of
//! `Og · images·OH·OW`, taken from a per-thread spare and never cleared (every float is written before it is read;
//! see `scratch.rs`): about one set per thread (1.8 MiB for 64 channels, 3×3, 28×28; 2.7 MiB for 256 channels, 3×3,
//! 6 images of 7×7). The GEMMs inside parallelise too, which keeps both cores
//! busy when the batch is 1. Backward-weight sums over chunks, so it walks them in order (the sum order, hence the
//! result, never depends on the thread count) with a single scratch set and parallelises inside: im2col row by row
//! and the GEMM over its tiles. Chunking depends only on the shape, so every result is bit-identical for any number
//! of threads.

mod addends;
mod bias_gradient;
mod direct;
mod im2col;
mod scratch;
mod shape;
mod winograd;
use winograd::Tiling;

use rayon::prelude::*;

pub use addends::Conv2dAddends;
pub use direct::DIRECT_MAX_CHANNELS;
pub use shape::Conv2dShape;

use scratch::{Buffer, Role};

use crate::elementwise::add_assign;
use crate::error::{check_len, KernelError, Result};
use crate::gemm::{sgemm, MatMut, MatRef};

/// Narrowest GEMM (in output positions) worth running: 16 register tiles of 16 columns.
const MIN_GEMM_COLUMNS: usize = 256;

/// Sizes derived from the shape, shared by the three kernels.
struct Plan {
    /// Output channels per group: the GEMM rows of the forward pass.
    og: usize,
    /// `Cg·KH·KW`: rows of the column matrix.
    patch: usize,
    /// `OH·OW`: output positions per image.
    plane: usize,
    /// Floats per image of input and of output.
    in_image: usize,
    out_image: usize,
    /// Floats per group inside one image of input, output and in the weight.
    in_slab: usize,
    out_slab: usize,
    weight_slab: usize,
    /// Images per GEMM.
    images: usize,
    /// The column matrix's rows (im2col's taps).
    taps: im2col::Taps,
}

impl Plan {
    fn new(s: &Conv2dShape) -> Self {
        let plane = s.out_plane();
        let (in_image, out_image) = (s.in_channels * s.in_h * s.in_w, s.out_channels * plane);
        Self {
            og: s.group_out_channels(),
            patch: s.patch_len(),
            plane,
            in_image,
            out_image,
            in_slab: in_image / s.groups,
            out_slab: out_image / s.groups,
            weight_slab: s.weight_len() / s.groups,
            images: MIN_GEMM_COLUMNS.div_ceil(plane).min(s.batch).max(1),
            taps: im2col::Taps::new(s),
        }
    }

    /// The weight of group `g` as an `[Og × Cg·KH·KW]` matrix.
    fn weight<'a>(&self, weight: &'a [f32], g: usize) -> MatRef<'a> {
        MatRef::row_major(
            &weight[g * self.weight_slab..][..self.weight_slab],
            self.patch,
        )
    }

    /// The column matrix of group `g` of a chunk of images (`x` holds them whole), `[Cg·KH·KW × images·OH·OW]`: the
    /// input slab itself for a pointwise convolution of one image, else built in `scratch`.
    fn columns<'a>(
        &self,
        s: &Conv2dShape,
        x: &'a [f32],
        g: usize,
        scratch: &'a mut Buffer,
        parallel: bool,
    ) -> &'a [f32] {
        let images = x.len() / self.in_image;
        if s.is_pointwise() && images == 1 {
            return &x[g * self.in_slab..][..self.in_slab];
        }
        let ld = images * self.plane;
        // im2col writes every float of the matrix (zeros for the padding), so the buffer is not cleared first.
        let col = scratch.floats(self.patch * ld);
        for (i, x_i) in x.chunks_exact(self.in_image).enumerate() {
            im2col::im2col(
                s,
                &self.taps,
                &x_i[g * self.in_slab..][..self.in_slab],
                &mut col[i * self.plane..],
                ld,
                parallel,
            );
        }
        col
    }

    /// Copies group `g` of a chunk of NCHW images `y` into the `[Og × images·OH·OW]` matrix `block` (every float).
    fn gather<'a>(&self, y: &[f32], g: usize, block: &'a mut Buffer) -> &'a [f32] {
        let ld = y.len() / self.out_image * self.plane;
        let block = block.floats(self.og * ld);
        for (i, y_i) in y.chunks_exact(self.out_image).enumerate() {
            for (o, src) in y_i[g * self.out_slab..][..self.out_slab]
                .chunks_exact(self.plane)
                .enumerate()
            {
                block[o * ld + i * self.plane..][..self.plane].copy_from_slice(src);
            }
        }
        block
    }

    /// The inverse of [`Plan::gather`]: copies `block` into group `g` of the chunk of NCHW images `y`.
    fn scatter(&self, block: &[f32], g: usize, y: &mut [f32]) {
        let ld = y.len() / self.out_image * self.plane;
        for (i, y_i) in y.chunks_exact_mut(self.out_image).enumerate() {
            for (o, dst) in y_i[g * self.out_slab..][..self.out_slab]
                .chunks_exact_mut(self.plane)
                .enumerate()
            {
                dst.copy_from_slice(&block[o * ld + i * self.plane..][..self.plane]);
            }
        }
    }
}

/// Per-task scratch: a column matrix and an output block, recycled per thread (see `scratch.rs`).
struct Scratch {
    col: Buffer,
    block: Buffer,
}

impl Scratch {
    fn take() -> Self {
        Self {
            col: Buffer::take(Role::Columns),
            block: Buffer::take(Role::Block),
        }
    }
}

/// How a convolution or one of its gradients is computed. Every algorithm gives the same result up to rounding;
/// each is deterministic and bit-identical for any thread count.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Conv2dAlgorithm {
    /// Winograd F(4×4, 3×3) where it applies ([`Conv2dShape::supports_winograd`]) and both channel counts are at
    /// least [`WINOGRAD_MIN_CHANNELS`]; else the direct convolution where it applies and there are at most
    /// [`DIRECT_MAX_CHANNELS`] output channels; im2col + GEMM otherwise. F(4×4, 3×3) is ahead of F(2×2, 3×3) on
    /// every shape measured from 7² to 28² and 16 to 256 channels, or level (`docs/kernels/cpu-gemm-conv.md`).
    #[default]
    Auto,
    /// im2col + GEMM (`im2col.rs`), any shape.
    Im2col,
    /// Winograd F(2×2, 3×3) (`winograd/`); a shape it cannot compute is an error.
    Winograd,
    /// Winograd F(4×4, 3×3) (`winograd/transform4.rs`) for the forward pass and the input gradient, F(2×2, 3×3) for
    /// the weight gradient; the same shapes as [`Conv2dAlgorithm::Winograd`].
    Winograd4,
    /// Direct convolution at the padded width (`direct.rs`): stride 1, dilation 1, one group, padding below the
    /// kernel size; a shape it cannot compute is an error.
    Direct,
}

/// Fewest input and output channels for which [`Conv2dAlgorithm::Auto`] picks Winograd: with fewer, its 16 thin
/// GEMMs and the transforms' memory traffic cost more than the multiplications it saves.
pub const WINOGRAD_MIN_CHANNELS: usize = 16;

/// The algorithm a call runs on.
enum Route {
    Im2col,
    Winograd(Tiling),
    Direct,
}

impl Conv2dAlgorithm {
    /// What runs `s` under this choice; an error if an algorithm was asked for that cannot run `s`.
    fn route(self, op: &'static str, s: &Conv2dShape) -> Result<Route> {
        let checked = |why: Option<String>, route| match why {
            Some(why) => Err(KernelError::new(op, why)),
            None => Ok(route),
        };
        match self {
            Self::Auto => Ok(
                if s.supports_winograd()
                    && s.in_channels.min(s.out_channels) >= WINOGRAD_MIN_CHANNELS
                {
                    Route::Winograd(Tiling::F4)
                } else if direct::unsupported(s).is_none() && s.out_channels <= DIRECT_MAX_CHANNELS
                {
                    Route::Direct
                } else {
                    Route::Im2col
                },
            ),
            Self::Im2col => Ok(Route::Im2col),
            Self::Winograd => checked(winograd::unsupported(s), Route::Winograd(Tiling::F2)),
            Self::Winograd4 => checked(winograd::unsupported(s), Route::Winograd(Tiling::F4)),
            Self::Direct => checked(direct::unsupported(s).map(String::from), Route::Direct),
        }
    }
}

impl Conv2dShape {
    /// Whether Winograd F(2×2, 3×3) can compute this convolution: a 3×3 kernel, stride 1, dilation 1, padding ≤ 2
    /// and one group.
    pub fn supports_winograd(&self) -> bool {
        winograd::unsupported(self).is_none()
    }
}

/// Forward convolution: `output = conv(input, weight) + bias`. `output` is overwritten.
pub fn conv2d_forward(
    s: &Conv2dShape,
    input: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    output: &mut [f32],
) -> Result<()> {
    conv2d_forward_add(s, input, weight, Conv2dAddends::bias(bias), output)
}

/// [`conv2d_forward`] by a chosen algorithm.
pub fn conv2d_forward_with(
    algorithm: Conv2dAlgorithm,
    s: &Conv2dShape,
    input: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    output: &mut [f32],
) -> Result<()> {
    conv2d_forward_add_with(
        algorithm,
        s,
        input,
        weight,
        Conv2dAddends::bias(bias),
        output,
    )
}

/// Forward convolution with its addends fused into the output stage (`addends.rs`):
/// `output = conv(input, weight) + bias + channel + residual`. `output` is overwritten.
pub fn conv2d_forward_add(
    s: &Conv2dShape,
    input: &[f32],
    weight: &[f32],
    addends: Conv2dAddends,
    output: &mut [f32],
) -> Result<()> {
    conv2d_forward_add_with(Conv2dAlgorithm::Auto, s, input, weight, addends, output)
}

/// [`conv2d_forward_add`] by a chosen algorithm.
pub fn conv2d_forward_add_with(
    algorithm: Conv2dAlgorithm,
    s: &Conv2dShape,
    input: &[f32],
    weight: &[f32],
    addends: Conv2dAddends,
    output: &mut [f32],
) -> Result<()> {
    const OP: &str = "conv2d_forward";
    crate::threads::keep_workers_spinning();
    s.validate_for(OP)?;
    check_len(OP, "input", input.len(), s.input_len())?;
    check_len(OP, "weight", weight.len(), s.weight_len())?;
    addends.check(OP, s)?;
    check_len(OP, "output", output.len(), s.output_len())?;
    let route = algorithm.route(OP, s)?;
    if s.batch == 0 {
        return Ok(());
    }
    match route {
        Route::Winograd(tiling) => {
            return winograd::forward(tiling, s, input, weight, &addends, output)
        }
        Route::Direct => {
            direct::forward(s, input, weight, &addends, output);
            return Ok(());
        }
        Route::Im2col => {}
    }

    let plan = Plan::new(s);
    let (og, k) = (plan.og, plan.patch);
    let beta = if addends.any() { 1.0 } else { 0.0 };
    output
        .par_chunks_mut(plan.images * plan.out_image)
        .zip(input.par_chunks(plan.images * plan.in_image))
        .enumerate()
        .try_for_each_init(Scratch::take, |scratch, (chunk, (y, x))| {
            let images = y.len() / plan.out_image;
            let first_image = chunk * plan.images;
            let ld = images * plan.plane;
            for g in 0..s.groups {
                let col = plan.columns(s, x, g, &mut scratch.col, false);
                let y_g = if images == 1 {
                    &mut y[g * plan.out_slab..][..plan.out_slab]
                } else {
                    scratch.block.floats(og * ld)
                };
                // The addends are the GEMM's starting value (β = 1); without any, β = 0 ignores the stale floats.
                if addends.any() {
                    for (o, row) in y_g.chunks_exact_mut(ld).enumerate() {
                        for (i, row_i) in row.chunks_exact_mut(plan.plane).enumerate() {
                            addends.fill(first_image + i, g * og + o, s.out_channels, row_i);
                        }
                    }
                }
                let col = MatRef::row_major(col, ld);
                sgemm(
                    og,
                    ld,
                    k,
                    1.0,
                    plan.weight(weight, g),
                    col,
                    beta,
                    MatMut::row_major(y_g, ld),
                )?;
                if images > 1 {
                    plan.scatter(scratch.block.floats(og * ld), g, y);
                }
            }
            Ok(())
        })
}

/// Gradient of the forward convolution with respect to its input: `grad_input = convᵀ(grad_output, weight)`,
/// overwritten.
pub fn conv2d_backward_input(
    s: &Conv2dShape,
    grad_output: &[f32],
    weight: &[f32],
    grad_input: &mut [f32],
) -> Result<()> {
    conv2d_backward_input_with(Conv2dAlgorithm::Auto, s, grad_output, weight, grad_input)
}

/// [`conv2d_backward_input`] by a chosen algorithm.
pub fn conv2d_backward_input_with(
    algorithm: Conv2dAlgorithm,
    s: &Conv2dShape,
    grad_output: &[f32],
    weight: &[f32],
    grad_input: &mut [f32],
) -> Result<()> {
    const OP: &str = "conv2d_backward_input";
    crate::threads::keep_workers_spinning();
    s.validate_for(OP)?;
    check_len(OP, "grad_output", grad_output.len(), s.output_len())?;
    check_len(OP, "weight", weight.len(), s.weight_len())?;
    check_len(OP, "grad_input", grad_input.len(), s.input_len())?;
    let route = algorithm.route(OP, s)?;
    if s.batch == 0 {
        return Ok(());
    }
    match route {
        Route::Winograd(tiling) => {
            return winograd::backward_input(tiling, s, grad_output, weight, grad_input)
        }
        Route::Direct => {
            direct::backward_input(s, grad_output, weight, grad_input);
            return Ok(());
        }
        Route::Im2col => {}
    }

    let plan = Plan::new(s);
    let (og, k) = (plan.og, plan.patch);
    grad_input
        .par_chunks_mut(plan.images * plan.in_image)
        .zip(grad_output.par_chunks(plan.images * plan.out_image))
        .try_for_each_init(Scratch::take, |scratch, (dx, dy)| {
            let images = dx.len() / plan.in_image;
            let ld = images * plan.plane;
            for g in 0..s.groups {
                let dy_g = if images == 1 {
                    &dy[g * plan.out_slab..][..plan.out_slab]
                } else {
                    plan.gather(dy, g, &mut scratch.block)
                };
                let (w_g_t, dy_g) = (plan.weight(weight, g).t(), MatRef::row_major(dy_g, ld));
                if s.is_pointwise() && images == 1 {
                    // col2im is the identity: the column gradient is the input gradient.
                    let dx_g = MatMut::row_major(&mut dx[g * plan.in_slab..][..plan.in_slab], ld);
                    sgemm(k, ld, og, 1.0, w_g_t, dy_g, 0.0, dx_g)?;
                    continue;
                }
                // beta = 0: the GEMM overwrites every float of the column gradient.
                let col = scratch.col.floats(k * ld);
                sgemm(k, ld, og, 1.0, w_g_t, dy_g, 0.0, MatMut::row_major(col, ld))?;
                for (i, dx_i) in dx.chunks_exact_mut(plan.in_image).enumerate() {
                    let dx_ig = &mut dx_i[g * plan.in_slab..][..plan.in_slab];
                    dx_ig.fill(0.0);
                    im2col::col2im_add(s, &plan.taps, &col[i * plan.plane..], ld, dx_ig);
                }
            }
            Ok(())
        })
}

/// Gradient of the forward convolution with respect to its weight (and bias, if asked): both overwritten.
pub fn conv2d_backward_weight(
    s: &Conv2dShape,
    input: &[f32],
    grad_output: &[f32],
    grad_weight: &mut [f32],
    grad_bias: Option<&mut [f32]>,
) -> Result<()> {
    conv2d_backward_weight_with(
        Conv2dAlgorithm::Auto,
        s,
        input,
        grad_output,
        grad_weight,
        grad_bias,
    )
}

/// [`conv2d_backward_weight`] by a chosen algorithm (the bias gradient is an f64 sum for both, `bias_gradient.rs`;
/// Winograd adds the rows in its chunk order, so the two may differ by the last bit).
pub fn conv2d_backward_weight_with(
    algorithm: Conv2dAlgorithm,
    s: &Conv2dShape,
    input: &[f32],
    grad_output: &[f32],
    grad_weight: &mut [f32],
    grad_bias: Option<&mut [f32]>,
) -> Result<()> {
    const OP: &str = "conv2d_backward_weight";
    crate::threads::keep_workers_spinning();
    s.validate_for(OP)?;
    check_len(OP, "input", input.len(), s.input_len())?;
    check_len(OP, "grad_output", grad_output.len(), s.output_len())?;
    check_len(OP, "grad_weight", grad_weight.len(), s.weight_len())?;
    if let Some(grad_bias) = &grad_bias {
        check_len(OP, "grad_bias", grad_bias.len(), s.out_channels)?;
    }
    match algorithm.route(OP, s)? {
        // The bias gradient too, from the rows the transform reads.
        Route::Winograd(_) if s.batch > 0 => {
            return winograd::backward_weight(s, input, grad_output, grad_weight, grad_bias)
        }
        Route::Direct if s.batch > 0 => direct::backward_weight(s, input, grad_output, grad_weight),
        _ => weight_gradient_im2col(s, &Plan::new(s), input, grad_output, grad_weight)?,
    }
    if let Some(grad_bias) = grad_bias {
        let plane = s.out_plane();
        bias_gradient::bias_gradient(grad_output, plane, s.out_channels * plane, grad_bias);
    }
    Ok(())
}

/// Where the second of a weight gradient's two fixed halves of the batch starts (in images: whole chunks of
/// `images_per_chunk`, the first half the larger), or `None` when the batch is one chunk. Both weight gradients
/// (im2col's below, Winograd's) sum each half's chunks in order in a task of its own, the two at once, and add the
/// second half's sum to the first's: the sum order depends on the shape alone, never on the threads, and one half's
/// work fills the gaps the other leaves between its short parallel phases.
fn second_half(batch: usize, images_per_chunk: usize) -> Option<usize> {
    let split = batch.div_ceil(images_per_chunk).div_ceil(2) * images_per_chunk;
    (split < batch).then_some(split)
}

/// The weight gradient by im2col + GEMM: `dW_g = Σ_chunks dy_g · colᵀ`, in two halves ([`second_half`]).
fn weight_gradient_im2col(
    s: &Conv2dShape,
    plan: &Plan,
    input: &[f32],
    grad_output: &[f32],
    grad_weight: &mut [f32],
) -> Result<()> {
    if s.batch == 0 {
        grad_weight.fill(0.0);
        return Ok(());
    }
    let Some(split) = second_half(s.batch, plan.images) else {
        return accumulate_weight_gradient(s, plan, input, grad_output, grad_weight);
    };
    let half = |images: std::ops::Range<usize>, grad_weight: &mut [f32]| {
        accumulate_weight_gradient(
            s,
            plan,
            &input[images.start * plan.in_image..images.end * plan.in_image],
            &grad_output[images.start * plan.out_image..images.end * plan.out_image],
            grad_weight,
        )
    };
    let mut second = vec![0.0; grad_weight.len()];
    let (first_half, second_half) = rayon::join(
        || half(0..split, grad_weight),
        || half(split..s.batch, &mut second),
    );
    first_half?;
    second_half?;
    add_assign(grad_weight, &second)
}

/// `grad_weight = Σ` over the chunks of `input` and `grad_output` (whole images, at least one), in order, of the
/// chunk's weight gradient by im2col + GEMM.
fn accumulate_weight_gradient(
    s: &Conv2dShape,
    plan: &Plan,
    input: &[f32],
    grad_output: &[f32],
    grad_weight: &mut [f32],
) -> Result<()> {
    let (og, k) = (plan.og, plan.patch);
    // The first chunk's GEMMs overwrite the gradient (beta = 0), later ones accumulate onto it.
    let mut beta = 0.0;
    let mut scratch = Scratch::take();
    let chunks = input
        .chunks(plan.images * plan.in_image)
        .zip(grad_output.chunks(plan.images * plan.out_image));
    for (x, dy) in chunks {
        let ld = x.len() / plan.in_image * plan.plane;
        for g in 0..s.groups {
            let col = plan.columns(s, x, g, &mut scratch.col, true);
            let dy_g = if ld == plan.plane {
                &dy[g * plan.out_slab..][..plan.out_slab]
            } else {
                plan.gather(dy, g, &mut scratch.block)
            };
            let dw_g = MatMut::row_major(
                &mut grad_weight[g * plan.weight_slab..][..plan.weight_slab],
                k,
            );
            let (dy_g, col_t) = (MatRef::row_major(dy_g, ld), MatRef::row_major(col, ld).t());
            sgemm(og, k, ld, 1.0, dy_g, col_t, beta, dw_g)?;
        }
        beta = 1.0;
    }
    Ok(())
}
