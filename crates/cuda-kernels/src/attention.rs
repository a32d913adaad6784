//! Scaled dot-product attention forward, flash style (`kernels/attention.ptx` has the online-softmax loop).

use cudarc::driver::{DevicePtr, DevicePtrMut};

use crate::context::{Gpu, Module};
use crate::error::{KernelError, Result};
use crate::launch::{launch, Arg, Launch};
pub use diffuse_cpu_kernels::attention::AttentionShape;

/// Query rows per block (one warp each; key rows in the backward's second kernel) and the largest head dimension the
/// kernels hold in registers.
pub(crate) const ROWS_PER_BLOCK: usize = 8;
pub const MAX_HEAD_DIM: usize = 128;

/// `out = softmax(scale q k^T + bias) v` row by row, and `lse` = the log-sum-exp of each row's scores, over the
/// head-interleaved operands of `diffuse_cpu_kernels::attention` (q, k, v rows holding every head side by side, `out`
/// dense (batch, q_len, heads·head_dim), `lse` (batch, heads, q_len)). `bias` is `[q_len, kv_len]`, shared by every
/// sequence and head (as on the CPU). A row whose scores are all -inf (fully masked by the
/// bias) attends to nothing: zero outputs and lse = -inf.
#[allow(clippy::too_many_arguments)] // the operation's own argument list, as on the CPU
pub fn attention_forward(
    gpu: &Gpu,
    shape: &AttentionShape,
    q: &impl DevicePtr<f32>,
    k: &impl DevicePtr<f32>,
    v: &impl DevicePtr<f32>,
    bias: Option<&impl DevicePtr<f32>>,
    out: &mut impl DevicePtrMut<f32>,
    lse: &mut impl DevicePtrMut<f32>,
) -> Result<()> {
    const OP: &str = "attention_forward";
    let s = shape;
    check_launch(OP, s)?;
    let lengths = [q.len(), k.len(), v.len(), out.len(), lse.len()];
    if s.check_forward_lengths(OP, lengths, bias.as_ref().map(|b| b.len()))? == 0 {
        return Ok(());
    }
    let stream = gpu.stream();
    let (q_ptr, _gq) = q.device_ptr(stream);
    let (k_ptr, _gk) = k.device_ptr(stream);
    let (v_ptr, _gv) = v.device_ptr(stream);
    let bias_ptr = bias.map(|b| b.device_ptr(stream));
    let (out_ptr, _go) = out.device_ptr_mut(stream);
    let (lse_ptr, _gl) = lse.device_ptr_mut(stream);
    let grid = grid(s, s.q_len);
    launch(
        gpu,
        OP,
        Launch {
            module: Module::Attention,
            kernel: "attention_forward",
            grid,
            block: (32 * ROWS_PER_BLOCK as u32, 1, 1),
            shared_bytes: 0,
        },
        &[
            Arg::Ptr(q_ptr),
            Arg::Ptr(k_ptr),
            Arg::Ptr(v_ptr),
            Arg::Ptr(bias_ptr.as_ref().map_or(0, |(ptr, _guard)| *ptr)),
            Arg::Ptr(out_ptr),
            Arg::Ptr(lse_ptr),
            Arg::U32(u32::from(bias_ptr.is_some())),
            Arg::U32(s.q_len as u32),
            Arg::U32(s.kv_len as u32),
            Arg::U32(s.head_dim as u32),
            Arg::U32(s.q_row_stride as u32),
            Arg::U32(s.kv_row_stride as u32),
            Arg::F32(s.scale),
        ],
    )
}

/// Checks what the attention kernels' launch and 32-bit indices need of a shape: `head_dim` in `1..=MAX_HEAD_DIM`,
/// the heads and sequences within the grid's y and z extents, and every row index, row stride and score index
/// below 2³¹ (element offsets are formed in 64 bits from a row index times a stride).
pub(crate) fn check_launch(op: &'static str, s: &AttentionShape) -> Result<()> {
    if s.head_dim == 0 || s.head_dim > MAX_HEAD_DIM {
        return Err(KernelError::new(
            op,
            format!("head_dim {} is outside 1..={MAX_HEAD_DIM}", s.head_dim),
        ));
    }
    let fits = |v: Option<usize>| v.is_some_and(|v| v < (1usize << 31));
    let rows = |len: usize| s.batch.checked_mul(len);
    let lse_rows = s
        .batch
        .checked_mul(s.heads)
        .and_then(|p| p.checked_mul(s.q_len.max(s.kv_len)));
    if !(fits(rows(s.q_len))
        && fits(rows(s.kv_len))
        && fits(lse_rows)
        && fits(s.q_len.checked_mul(s.kv_len))
        && fits(Some(s.q_row_stride))
        && fits(Some(s.kv_row_stride))
        && s.heads < 65536
        && s.batch < 65536)
    {
        return Err(KernelError::new(
            op,
            format!("{s:?} exceeds the kernels' 32-bit indices or grid"),
        ));
    }
    Ok(())
}

/// The grid of a kernel with one warp per row of `len` rows: (row blocks, heads, sequences).
pub(crate) fn grid(s: &AttentionShape, len: usize) -> (u32, u32, u32) {
    (
        len.div_ceil(ROWS_PER_BLOCK) as u32,
        s.heads as u32,
        s.batch as u32,
    )
}
