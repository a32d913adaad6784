//! The loop shared by DDPM and DDIM: walk the spaced training timesteps `t_0 > t_1 > … > t_{N−1}` and at each one
//! call the model, then take one fused [`Tensor::sampler_step`] to the next timestep (`ᾱ_prev = 1` after the last,
//! so the final step returns the mean, i.e. the clean sample, without noise).

use super::{
    batch_of, clip_bound, step_offset, Condition, Denoiser, SamplerOptions, StepCoefficients,
};
use crate::error::Result;
use crate::schedule::{timesteps, NoiseSchedule};
use diffuse_tensor::Tensor;

/// Runs the discrete sampler whose step `t → prev` has coefficients `coefficients(ᾱ_t, ᾱ_prev)`.
pub(super) fn run(
    model: &dyn Denoiser,
    schedule: &NoiseSchedule,
    options: &SamplerOptions,
    noise: &Tensor,
    cond: Condition<'_>,
    coefficients: impl Fn(f64, f64) -> Result<StepCoefficients>,
) -> Result<Tensor> {
    let batch = batch_of(noise, cond)?;
    let clip = clip_bound(options)?;
    let visited = timesteps(
        options.spacing,
        schedule.len(),
        options.steps,
        options.steps_offset,
    )?;
    let mut x = noise.clone();
    for (step, &t) in visited.iter().enumerate() {
        let alpha_bar = schedule.alpha_bar(t)?;
        let alpha_bar_prev = match visited.get(step + 1) {
            Some(&prev) => schedule.alpha_bar(prev)?,
            None => 1.0,
        };
        let coef = coefficients(alpha_bar, alpha_bar_prev)?;
        let out = model.predict(&x, &vec![t as f64; batch], cond)?;
        let offset = step_offset(step, x.numel())?;
        let (next, _x0) = match &options.dynamic_threshold {
            None => x.sampler_step(&out, &vec![coef; batch], clip, options.seed, offset)?,
            Some(threshold) => {
                // Form x̂0 here, threshold it, and hand the kernel x̂0 itself as the "model output" with
                // coefficients that take it as is (x̂0 = 0·x_t + 1·x̂0).
                let x0 = x
                    .mul_scalar(coef.x0_from_xt)?
                    .add(&out.mul_scalar(coef.x0_from_model)?)?;
                let as_is = StepCoefficients {
                    x0_from_xt: 0.0,
                    x0_from_model: 1.0,
                    ..coef
                };
                let x0 = threshold.apply(&x0)?;
                x.sampler_step(&x0, &vec![as_is; batch], None, options.seed, offset)?
            }
        };
        x = next;
    }
    Ok(x)
}
