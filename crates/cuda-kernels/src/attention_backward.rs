//! Gradients of scaled dot-product attention, flash style (`kernels/attention_backward.ptx`): the probabilities are
//! recomputed tile by tile from the forward's log-sum-exp, no `q_len × kv_len` matrix is stored. Arguments in the order
//! of `diffuse_cpu_kernels::attention::attention_backward`.

use cudarc::driver::{DevicePtr, DevicePtrMut};

use crate::attention::{AttentionShape, MAX_HEAD_DIM};
use crate::context::{Gpu, Module};
use crate::error::{check_len, driver_error, KernelError, Result};
use crate::launch::{launch, Arg, Launch};

/// Rows per block: one warp per query row (dq) or key row (dk, dv).
const ROWS_PER_BLOCK: usize = 8;

/// `grad_q`, `grad_k`, `grad_v` (overwritten) of `out = softmax(scale q kᵀ + bias) v`, from the forward's `out` and
/// `lse` ([`crate::attention::attention_forward`]) and `grad_out`. `bias` is `[q_len, kv_len]`, shared by every
/// batch-head; a fully masked query row (lse = -inf) gets no gradient.
///
/// Two kernels on the handle's stream: the first writes `D = rowsum(grad_out ∘ out)` to a pooled workspace and
/// `grad_q`, the second reads `D` and writes `grad_k`, `grad_v`. No atomics: every result is summed in a fixed order.
#[allow(clippy::too_many_arguments)] // the operation's own argument list, as on the CPU
pub fn attention_backward(
    gpu: &Gpu,
    shape: &AttentionShape,
    q: &impl DevicePtr<f32>,
    k: &impl DevicePtr<f32>,
    v: &impl DevicePtr<f32>,
    bias: Option<&impl DevicePtr<f32>>,
    out: &impl DevicePtr<f32>,
    lse: &impl DevicePtr<f32>,
    grad_out: &impl DevicePtr<f32>,
    grad_q: &mut impl DevicePtrMut<f32>,
    grad_k: &mut impl DevicePtrMut<f32>,
    grad_v: &mut impl DevicePtrMut<f32>,
) -> Result<()> {
    const OP: &str = "attention_backward";
    let s = shape;
    if s.head_dim == 0 || s.head_dim > MAX_HEAD_DIM {
        return Err(KernelError::new(
            OP,
            format!("head_dim {} is outside 1..={MAX_HEAD_DIM}", s.head_dim),
        ));
    }
    if s.kv_len == 0 && s.q_len > 0 {
        return Err(KernelError::new(
            OP,
            format!("kv_len is 0 but q_len is {}: nothing to attend to", s.q_len),
        ));
    }
    if !s.scale.is_finite() {
        return Err(KernelError::new(
            OP,
            format!("scale {} is not finite", s.scale),
        ));
    }
    let fits = |v: Option<usize>| v.is_some_and(|v| v < (1usize << 31));
    let q_elems = s.batch_heads.checked_mul(s.q_len * s.head_dim);
    let kv_elems = s.batch_heads.checked_mul(s.kv_len * s.head_dim);
    if !(fits(q_elems)
        && fits(kv_elems)
        && fits(s.q_len.checked_mul(s.kv_len))
        && s.batch_heads < 65536)
    {
        return Err(KernelError::new(
            OP,
            format!("{shape:?} exceeds the kernels' 32-bit indices"),
        ));
    }
    let (q_elems, kv_elems) = (q_elems.unwrap_or(0), kv_elems.unwrap_or(0));
    let rows = s.batch_heads * s.q_len;
    check_len(OP, "q", q.len(), q_elems)?;
    check_len(OP, "k", k.len(), kv_elems)?;
    check_len(OP, "v", v.len(), kv_elems)?;
    if let Some(b) = &bias {
        check_len(OP, "bias", b.len(), s.q_len * s.kv_len)?;
    }
    check_len(OP, "out", out.len(), q_elems)?;
    check_len(OP, "lse", lse.len(), rows)?;
    check_len(OP, "grad_out", grad_out.len(), q_elems)?;
    check_len(OP, "grad_q", grad_q.len(), q_elems)?;
    check_len(OP, "grad_k", grad_k.len(), kv_elems)?;
    check_len(OP, "grad_v", grad_v.len(), kv_elems)?;
    if kv_elems == 0 {
        return Ok(());
    }
    let stream = gpu.stream();
    if rows == 0 {
        // no queries: dK and dV are empty sums
        stream
            .memset_zeros(grad_k)
            .map_err(|e| driver_error(OP, "zeroing grad_k", e))?;
        stream
            .memset_zeros(grad_v)
            .map_err(|e| driver_error(OP, "zeroing grad_v", e))?;
        return Ok(());
    }
    // D lives in a pooled workspace: the pool hands it out again only to later work on this same stream, which runs
    // after the second kernel has read it.
    let mut delta = gpu.take_buffer(rows)?;
    let result = (|| {
        let mut delta_view = delta.view_mut();
        let (delta_ptr, _gd) = delta_view.device_ptr_mut(stream);
        let (q_ptr, _gq) = q.device_ptr(stream);
        let (k_ptr, _gk) = k.device_ptr(stream);
        let (v_ptr, _gv) = v.device_ptr(stream);
        let bias_ptr = bias.map(|b| b.device_ptr(stream));
        let bias_ptr = bias_ptr.as_ref().map_or(0, |(ptr, _guard)| *ptr);
        let (out_ptr, _go) = out.device_ptr(stream);
        let (lse_ptr, _gl) = lse.device_ptr(stream);
        let (grad_out_ptr, _gdo) = grad_out.device_ptr(stream);
        let (grad_q_ptr, _gdq) = grad_q.device_ptr_mut(stream);
        let (grad_k_ptr, _gdk) = grad_k.device_ptr_mut(stream);
        let (grad_v_ptr, _gdv) = grad_v.device_ptr_mut(stream);
        let scalars = [
            Arg::U32(u32::from(bias.is_some())),
            Arg::U32(s.q_len as u32),
            Arg::U32(s.kv_len as u32),
            Arg::U32(s.head_dim as u32),
            Arg::F32(s.scale),
        ];
        let per_rows = |kernel: &'static str, rows: usize| Launch {
            module: Module::AttentionBackward,
            kernel,
            grid: (
                rows.div_ceil(ROWS_PER_BLOCK) as u32,
                s.batch_heads as u32,
                1,
            ),
            block: (32 * ROWS_PER_BLOCK as u32, 1, 1),
            shared_bytes: 0,
        };
        let mut args = vec![
            Arg::Ptr(q_ptr),
            Arg::Ptr(k_ptr),
            Arg::Ptr(v_ptr),
            Arg::Ptr(bias_ptr),
            Arg::Ptr(out_ptr),
            Arg::Ptr(grad_out_ptr),
            Arg::Ptr(lse_ptr),
            Arg::Ptr(delta_ptr),
            Arg::Ptr(grad_q_ptr),
        ];
        args.extend(scalars);
        launch(gpu, OP, per_rows("attention_backward_dq", s.q_len), &args)?;
        let mut args = vec![
            Arg::Ptr(q_ptr),
            Arg::Ptr(k_ptr),
            Arg::Ptr(v_ptr),
            Arg::Ptr(bias_ptr),
            Arg::Ptr(grad_out_ptr),
            Arg::Ptr(lse_ptr),
            Arg::Ptr(delta_ptr),
            Arg::Ptr(grad_k_ptr),
            Arg::Ptr(grad_v_ptr),
        ];
        args.extend(scalars);
        launch(gpu, OP, per_rows("attention_backward_dkv", s.kv_len), &args)
    })();
    gpu.give_back_buffer(delta);
    result
}
