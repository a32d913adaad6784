//! DPM-Solver++(2M) (Lu et al. 2022, "DPM-Solver++", Algorithm 2; k-diffusion's `sample_dpmpp_2m`), a multistep
//! solver of the data-prediction ODE in log-SNR time `λ = −log σ`.
//!
//! Exactly integrating the linear part gives, for a step of size `h = λ_next − λ`,
//! `x_next = (σ_next/σ)·x − (e^{−h} − 1)·D̄`, where `D̄` approximates `D` over the step. The first step (and the last,
//! to σ = 0, where `x_next = D̄`) uses `D̄ = D_i` (first order); otherwise the previous step's `D_{i−1}`, taken
//! `h_prev` earlier, extrapolates linearly: with `r = h_prev/h`, `D̄ = (1 + 1/(2r))·D_i − (1/(2r))·D_{i−1}`.
//! Second order with one model call per step.

use super::sigmas::{initial_x, sampling_sigmas, SigmaDenoiser};
use super::{Condition, Denoiser, SamplerOptions};
use crate::error::Result;
use crate::schedule::NoiseSchedule;
use diffuse_tensor::Tensor;

/// Deterministic DPM-Solver++(2M) sampling from the variance-preserving noise `noise` (= `x_T`).
pub fn dpm_solver_pp_2m(
    model: &dyn Denoiser,
    schedule: &NoiseSchedule,
    options: &SamplerOptions,
    noise: &Tensor,
    cond: Condition<'_>,
) -> Result<Tensor> {
    let denoiser = SigmaDenoiser::new(model, schedule, options, noise, cond)?;
    let sigmas = sampling_sigmas(schedule, options)?;
    let mut x = initial_x(noise, sigmas[0])?;
    // The previous step's D and its step size h.
    let mut previous: Option<(Tensor, f64)> = None;
    for pair in sigmas.windows(2) {
        let (sigma, sigma_next) = (pair[0], pair[1]);
        let x0 = denoiser.x0(&x, sigma)?;
        if sigma_next == 0.0 {
            x = x0;
            break;
        }
        let h = sigma.ln() - sigma_next.ln();
        let x0_bar = match &previous {
            Some((x0_prev, h_prev)) => {
                let r = h_prev / h;
                let lead = 1.0 + 1.0 / (2.0 * r);
                x0.mul_scalar(lead as f32)?
                    .sub(&x0_prev.mul_scalar((1.0 / (2.0 * r)) as f32)?)?
            }
            None => x0.clone(),
        };
        x = x
            .mul_scalar((sigma_next / sigma) as f32)?
            .sub(&x0_bar.mul_scalar((-h).exp_m1() as f32)?)?;
        previous = Some((x0, h));
    }
    Ok(x)
}
