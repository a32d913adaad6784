//! The per-sample mean squared error of a training loss, `mse[n] = mean_i (p[n, i] − t[n, i])²`, forward and
//! backward, on a prediction and target `[batch, len]` (`kernels/sample_mse.ptx` has the math).

use cudarc::driver::{DevicePtr, DevicePtrMut};

use crate::context::{Gpu, Module};
use crate::error::{check_len, KernelError, Result};
use crate::launch::{grid_for, launch, Arg, Launch};
pub use diffuse_cpu_kernels::sample_mse::SampleShape;

const THREADS: u32 = 256;

/// Checks the shape for the kernels' u32 indices (the backward's grid-stride loop also needs `batch·len < 2^31`);
/// returns the element count.
fn check_shape(op: &'static str, s: &SampleShape) -> Result<usize> {
    s.batch
        .checked_mul(s.len)
        .filter(|&len| len <= i32::MAX as usize && s.batch <= i32::MAX as usize)
        .ok_or_else(|| {
            KernelError::new(
                op,
                format!("{s:?} has more than the 2^31 - 1 elements the kernels index"),
            )
        })
}

/// `mse[n] = mean_i (prediction[n, i] − target[n, i])²`; 0 for samples of no elements.
pub fn sample_mse_forward(
    gpu: &Gpu,
    shape: &SampleShape,
    prediction: &impl DevicePtr<f32>,
    target: &impl DevicePtr<f32>,
    mse: &mut impl DevicePtrMut<f32>,
) -> Result<()> {
    const OP: &str = "sample_mse_forward";
    let elements = check_shape(OP, shape)?;
    check_len(OP, "prediction", prediction.len(), elements)?;
    check_len(OP, "target", target.len(), elements)?;
    check_len(OP, "mse", mse.len(), shape.batch)?;
    if shape.batch == 0 {
        return Ok(());
    }
    let stream = gpu.stream();
    let (p_ptr, _g0) = prediction.device_ptr(stream);
    let (t_ptr, _g1) = target.device_ptr(stream);
    let (mse_ptr, _g2) = mse.device_ptr_mut(stream);
    launch(
        gpu,
        OP,
        Launch::linear(
            Module::SampleMse,
            "sample_mse_forward",
            shape.batch as u32,
            THREADS,
        ),
        &[
            Arg::Ptr(p_ptr),
            Arg::Ptr(t_ptr),
            Arg::Ptr(mse_ptr),
            Arg::U32(shape.len as u32),
        ],
    )
}

/// `grad_prediction[n, i] = (2/len)·grad_mse[n]·(prediction[n, i] − target[n, i])`.
pub fn sample_mse_backward(
    gpu: &Gpu,
    shape: &SampleShape,
    prediction: &impl DevicePtr<f32>,
    target: &impl DevicePtr<f32>,
    grad_mse: &impl DevicePtr<f32>,
    grad_prediction: &mut impl DevicePtrMut<f32>,
) -> Result<()> {
    const OP: &str = "sample_mse_backward";
    let elements = check_shape(OP, shape)?;
    check_len(OP, "prediction", prediction.len(), elements)?;
    check_len(OP, "target", target.len(), elements)?;
    check_len(OP, "grad_mse", grad_mse.len(), shape.batch)?;
    check_len(OP, "grad_prediction", grad_prediction.len(), elements)?;
    if elements == 0 {
        return Ok(());
    }
    let stream = gpu.stream();
    let (p_ptr, _g0) = prediction.device_ptr(stream);
    let (t_ptr, _g1) = target.device_ptr(stream);
    let (g_ptr, _g2) = grad_mse.device_ptr(stream);
    let (dp_ptr, _g3) = grad_prediction.device_ptr_mut(stream);
    launch(
        gpu,
        OP,
        Launch::linear(
            Module::SampleMse,
            "sample_mse_backward",
            grid_for(elements as u64, THREADS, gpu),
            THREADS,
        ),
        &[
            Arg::Ptr(p_ptr),
            Arg::Ptr(t_ptr),
            Arg::Ptr(g_ptr),
            Arg::Ptr(dp_ptr),
            Arg::U32(elements as u32),
            Arg::U32(shape.len as u32),
        ],
    )
}
