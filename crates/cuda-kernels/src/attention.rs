//! Scaled dot-product attention forward, flash style (`kernels/attention.ptx` has the online-softmax loop).

use cudarc::driver::{DevicePtr, DevicePtrMut};

use crate::context::{Gpu, Module};
use crate::error::{check_len, KernelError, Result};
use crate::launch::{launch, Arg, Launch};
pub use diffuse_cpu_kernels::attention::AttentionShape;

/// Query rows per block (one warp each) and the largest head dimension the kernel holds in registers.
const ROWS_PER_BLOCK: usize = 8;
pub const MAX_HEAD_DIM: usize = 128;

/// `out = softmax(scale q k^T + bias) v` row by row, and `lse` = the log-sum-exp of each row's scores. `bias` is
/// `[q_len, kv_len]`, shared by every batch-head (as on the CPU). A row whose scores are all -inf (fully masked by the
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
    if s.head_dim == 0 || s.head_dim > MAX_HEAD_DIM {
        return Err(KernelError::new(
            OP,
            format!("head_dim {} is outside 1..={MAX_HEAD_DIM}", s.head_dim),
        ));
    }
    let fits = |v: usize| v < (1usize << 31);
    if !(fits(s.batch_heads * s.q_len)
        && fits(s.kv_len * s.head_dim)
        && fits(s.q_len * s.head_dim)
        && s.batch_heads < 65536)
    {
        return Err(KernelError::new(
            OP,
            format!("{shape:?} exceeds the kernel's 32-bit indices"),
        ));
    }
    check_len(OP, "q", q.len(), s.batch_heads * s.q_len * s.head_dim)?;
    check_len(OP, "k", k.len(), s.batch_heads * s.kv_len * s.head_dim)?;
    check_len(OP, "v", v.len(), s.batch_heads * s.kv_len * s.head_dim)?;
    if let Some(b) = &bias {
        check_len(OP, "bias", b.len(), s.q_len * s.kv_len)?;
    }
    check_len(OP, "out", out.len(), s.batch_heads * s.q_len * s.head_dim)?;
    check_len(OP, "lse", lse.len(), s.batch_heads * s.q_len)?;
    if s.batch_heads == 0 || s.q_len == 0 {
        return Ok(());
    }
    let stream = gpu.stream();
    let (q_ptr, _gq) = q.device_ptr(stream);
    let (k_ptr, _gk) = k.device_ptr(stream);
    let (v_ptr, _gv) = v.device_ptr(stream);
    let bias_ptr = bias.map(|b| b.device_ptr(stream));
    let (out_ptr, _go) = out.device_ptr_mut(stream);
    let (lse_ptr, _gl) = lse.device_ptr_mut(stream);
    let grid = (
        s.q_len.div_ceil(ROWS_PER_BLOCK) as u32,
        s.batch_heads as u32,
        1,
    );
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
            Arg::F32(s.scale),
        ],
    )
}
