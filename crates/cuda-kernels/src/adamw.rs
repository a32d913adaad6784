//! One fused AdamW step with PyTorch's semantics (`kernels/adamw.ptx` has the math).

use cudarc::driver::DevicePtr;
use cudarc::driver::DevicePtrMut;

use crate::context::{Gpu, Module};
use crate::error::{check_len, KernelError, Result};
use crate::launch::{grid_for, launch, Arg, Launch};
pub use diffuse_cpu_kernels::adamw::AdamWConfig;

const THREADS: u32 = 256;

/// Step `step` (counting from 1) of AdamW on `params` given `grads`, updating the moments `m` and `v` in place.
pub fn adamw_step(
    gpu: &Gpu,
    cfg: &AdamWConfig,
    step: u64,
    params: &mut impl DevicePtrMut<f32>,
    grads: &impl DevicePtr<f32>,
    m: &mut impl DevicePtrMut<f32>,
    v: &mut impl DevicePtrMut<f32>,
) -> Result<()> {
    const OP: &str = "adamw_step";
    if step == 0 {
        return Err(KernelError::new(
            OP,
            "step counts from 1 (the bias corrections divide by 1 - beta^step)",
        ));
    }
    let n = params.len();
    check_len(OP, "grads", grads.len(), n)?;
    check_len(OP, "m", m.len(), n)?;
    check_len(OP, "v", v.len(), n)?;
    if n == 0 {
        return Ok(());
    }
    // the step-dependent scalars, in f64 as PyTorch computes them on the host
    let t = step.min(i32::MAX as u64) as i32;
    let lr = f64::from(cfg.lr);
    let decay = 1.0 - lr * f64::from(cfg.weight_decay);
    let step_size = lr / (1.0 - f64::from(cfg.beta1).powi(t));
    let inv_sqrt_bc2 = 1.0 / (1.0 - f64::from(cfg.beta2).powi(t)).sqrt();
    let stream = gpu.stream();
    let (p_ptr, _g0) = params.device_ptr_mut(stream);
    let (g_ptr, _g1) = grads.device_ptr(stream);
    let (m_ptr, _g2) = m.device_ptr_mut(stream);
    let (v_ptr, _g3) = v.device_ptr_mut(stream);
    launch(
        gpu,
        OP,
        Launch::linear(
            Module::Adamw,
            "adamw_step",
            grid_for(n as u64, THREADS, gpu),
            THREADS,
        ),
        &[
            Arg::Ptr(p_ptr),
            Arg::Ptr(g_ptr),
            Arg::Ptr(m_ptr),
            Arg::Ptr(v_ptr),
            Arg::U64(n as u64),
            Arg::F32(decay as f32),
            Arg::F32(cfg.beta1),
            Arg::F32(cfg.beta2),
            Arg::F32(step_size as f32),
            Arg::F32(inv_sqrt_bc2 as f32),
            Arg::F32(cfg.eps),
        ],
    )
}
