//! The two places diffusion draws Gaussian noise, with the arithmetic around the draw fused in
//! (`kernels/noise.ptx` has the math). The noise is element `offset + i` of the Philox normal stream of `seed`, the
//! same stream as [`crate::philox::fill_normal`] and the CPU generator.

use cudarc::driver::{DevicePtr, DevicePtrMut};

use crate::context::{Gpu, Module};
use crate::error::{check_len, KernelError, Result};
use crate::launch::{grid_for, launch, Arg, Launch};
pub use diffuse_cpu_kernels::noise::StepCoefficients;

const THREADS: u32 = 256;

/// Floats per sample in the packed coefficient buffer of [`sampler_step`].
pub const COEFFICIENTS_PER_SAMPLE: usize = 5;

/// Packs per-sample [`StepCoefficients`] for [`sampler_step`]: sample `b`'s five values
/// `(x0_from_xt, x0_from_model, mean_from_x0, mean_from_xt, sigma)` at `5b .. 5b + 5`, the layout the kernel reads.
pub fn pack_coefficients(coef: &[StepCoefficients]) -> Vec<f32> {
    coef.iter()
        .flat_map(|c| {
            [
                c.x0_from_xt,
                c.x0_from_model,
                c.mean_from_x0,
                c.mean_from_xt,
                c.sigma,
            ]
        })
        .collect()
}

/// Shape of a `[batch, per_sample]` tensor given its length and the batch (from a per-sample coefficient array).
fn per_sample(op: &'static str, numel: usize, batch: usize) -> Result<usize> {
    if batch == 0 || numel % batch != 0 {
        return Err(KernelError::new(
            op,
            format!(
                "{numel} elements do not split into {batch} samples (one coefficient per sample)"
            ),
        ));
    }
    Ok(numel / batch)
}

/// Forward diffusion: `eps = z(offset..)`, `x_t = sqrt_ab[b] * x0 + sqrt_1mab[b] * eps`, for x0 of shape
/// `[batch, per_sample]` with `batch = sqrt_ab.len()`.
#[allow(clippy::too_many_arguments)] // the operation's own argument list, as on the CPU
pub fn q_sample(
    gpu: &Gpu,
    x0: &impl DevicePtr<f32>,
    sqrt_ab: &impl DevicePtr<f32>,
    sqrt_1mab: &impl DevicePtr<f32>,
    seed: u64,
    offset: u64,
    x_t: &mut impl DevicePtrMut<f32>,
    eps: &mut impl DevicePtrMut<f32>,
) -> Result<()> {
    const OP: &str = "q_sample";
    let batch = sqrt_ab.len();
    let n = x0.len();
    let per_sample = per_sample(OP, n, batch)?;
    check_len(OP, "sqrt_1mab", sqrt_1mab.len(), batch)?;
    check_len(OP, "x_t", x_t.len(), n)?;
    check_len(OP, "eps", eps.len(), n)?;
    if n == 0 {
        return Ok(());
    }
    let stream = gpu.stream();
    let (x0_ptr, _g0) = x0.device_ptr(stream);
    let (a_ptr, _g1) = sqrt_ab.device_ptr(stream);
    let (b_ptr, _g2) = sqrt_1mab.device_ptr(stream);
    let (xt_ptr, _g3) = x_t.device_ptr_mut(stream);
    let (eps_ptr, _g4) = eps.device_ptr_mut(stream);
    let blocks_touched = (offset + n as u64).div_ceil(4) - offset / 4;
    launch(
        gpu,
        OP,
        Launch::linear(
            Module::Noise,
            "q_sample",
            grid_for(blocks_touched, THREADS, gpu),
            THREADS,
        ),
        &[
            Arg::Ptr(x0_ptr),
            Arg::Ptr(a_ptr),
            Arg::Ptr(b_ptr),
            Arg::Ptr(xt_ptr),
            Arg::Ptr(eps_ptr),
            Arg::U64(n as u64),
            Arg::U64(per_sample as u64),
            Arg::U64(seed),
            Arg::U64(offset),
        ],
    )
}

/// One reverse-diffusion step for x_t of shape `[batch, per_sample]`, `coef` the [`pack_coefficients`] of `batch`
/// samples' [`StepCoefficients`]: writes the predicted clean sample
/// `x0_hat = x0_from_xt·x_t + x0_from_model·model_out` (clipped to [−1, 1] if asked) and the next sample
/// `x_prev = mean_from_x0·x0_hat + mean_from_xt·x_t + sigma·z`, with `z = z(offset..)`.
#[allow(clippy::too_many_arguments)] // the operation's own argument list, as on the CPU
pub fn sampler_step(
    gpu: &Gpu,
    x_t: &impl DevicePtr<f32>,
    model_out: &impl DevicePtr<f32>,
    coef: &impl DevicePtr<f32>,
    clip: bool,
    seed: u64,
    offset: u64,
    x_prev: &mut impl DevicePtrMut<f32>,
    x0_hat: &mut impl DevicePtrMut<f32>,
) -> Result<()> {
    const OP: &str = "sampler_step";
    let n = x_t.len();
    if coef.len() % COEFFICIENTS_PER_SAMPLE != 0 {
        return Err(KernelError::new(
            OP,
            format!(
                "coef has {} floats, not a whole number of samples of {COEFFICIENTS_PER_SAMPLE}",
                coef.len()
            ),
        ));
    }
    let per_sample = per_sample(OP, n, coef.len() / COEFFICIENTS_PER_SAMPLE)?;
    check_len(OP, "model_out", model_out.len(), n)?;
    check_len(OP, "x_prev", x_prev.len(), n)?;
    check_len(OP, "x0_hat", x0_hat.len(), n)?;
    if n == 0 {
        return Ok(());
    }
    let stream = gpu.stream();
    let (xt_ptr, _g0) = x_t.device_ptr(stream);
    let (model_ptr, _g1) = model_out.device_ptr(stream);
    let (coef_ptr, _g2) = coef.device_ptr(stream);
    let (prev_ptr, _g3) = x_prev.device_ptr_mut(stream);
    let (x0_ptr, _g4) = x0_hat.device_ptr_mut(stream);
    let blocks_touched = (offset + n as u64).div_ceil(4) - offset / 4;
    launch(
        gpu,
        OP,
        Launch::linear(
            Module::Noise,
            "sampler_step",
            grid_for(blocks_touched, THREADS, gpu),
            THREADS,
        ),
        &[
            Arg::Ptr(xt_ptr),
            Arg::Ptr(model_ptr),
            Arg::Ptr(coef_ptr),
            Arg::Ptr(prev_ptr),
            Arg::Ptr(x0_ptr),
            Arg::U64(n as u64),
            Arg::U64(per_sample as u64),
            Arg::U32(u32::from(clip)),
            Arg::U64(seed),
            Arg::U64(offset),
        ],
    )
}
