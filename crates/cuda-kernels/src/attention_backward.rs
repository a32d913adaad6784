//! Gradients of scaled dot-product attention, flash style (`kernels/attention_backward.ptx`): the probabilities are
//! recomputed tile by tile from the forward's log-sum-exp, no `q_len × kv_len` matrix is stored. Arguments in the order
//! of `diffuse_cpu_kernels::attention::attention_backward`.

use cudarc::driver::{DevicePtr, DevicePtrMut};

use crate::attention::{check_launch, grid, AttentionShape, ROWS_PER_BLOCK};
use crate::context::{Gpu, Module};
use crate::error::Result;
use crate::launch::{launch, Arg, Launch};

/// `grad_q`, `grad_k`, `grad_v` (overwritten) of `out = softmax(scale q kᵀ + bias) v`, from the forward's `out` and
/// `lse` ([`crate::attention::attention_forward`]) and `grad_out`, in the operands' head-interleaved layouts (columns
/// past `heads·head_dim` are not touched). `bias` is `[q_len, kv_len]`, shared by every sequence and head; a fully
/// masked query row (lse = -inf) gets no gradient.
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
    check_launch(OP, s)?;
    let lengths = [q.len(), k.len(), v.len(), out.len(), lse.len()];
    s.check_forward_lengths(OP, lengths, bias.as_ref().map(|b| b.len()))?;
    s.check_gradient_lengths(
        OP,
        [grad_out.len(), grad_q.len(), grad_k.len(), grad_v.len()],
    )?;
    if s.batch * s.kv_len == 0 {
        return Ok(());
    }
    let stream = gpu.stream();
    let rows = s.problems() * s.q_len;
    // D lives in a pooled workspace: the pool hands it out again only to later work on this same stream, which runs
    // after the second kernel has read it. Without queries only the second kernel runs (over no query tiles: it
    // writes dK = dV = 0) and D is never read.
    let mut delta = gpu.take_buffer(rows.max(1))?;
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
            Arg::U32(s.q_row_stride as u32),
            Arg::U32(s.kv_row_stride as u32),
            Arg::F32(s.scale),
        ];
        let per_rows = |kernel: &'static str, rows: usize| Launch {
            module: Module::AttentionBackward,
            kernel,
            grid: grid(s, rows),
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
        if rows > 0 {
            launch(gpu, OP, per_rows("attention_backward_dq", s.q_len), &args)?;
        }
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
