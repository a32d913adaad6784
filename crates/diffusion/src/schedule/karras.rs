//! The Karras et al. (2022, "Elucidating the Design Space of Diffusion-Based Generative Models", eq. 5) noise levels.
//!
//! `σ_i = (σ_max^{1/ρ} + r_i · (σ_min^{1/ρ} − σ_max^{1/ρ}))^ρ` for `r_i = i/(n−1)`, `i = 0 … n−1`: evenly spaced in
//! `σ^{1/ρ}`, which for `ρ = 7` spends most steps at low noise, where detail is decided. The ramp `r_i` is computed as
//! `numpy.linspace(0, 1, n)` does (`i · (1/(n−1))`, last value exactly 1), matching diffusers' `_convert_to_karras`.

use super::error::{Result, ScheduleError};

/// The `ρ` Karras et al. found best for sampling, and diffusers' fixed choice.
pub const KARRAS_RHO: f64 = 7.0;

/// `n` noise levels from `sigma_max` down to `sigma_min`, evenly spaced in `σ^{1/ρ}`. `n = 1` gives `[sigma_max]`.
pub fn karras_sigmas(n: usize, sigma_min: f64, sigma_max: f64, rho: f64) -> Result<Vec<f64>> {
    if n == 0 {
        return Err(ScheduleError::new("karras_sigmas", "needs at least 1 step"));
    }
    if !(sigma_min.is_finite() && sigma_min >= 0.0) {
        return Err(ScheduleError::new(
            "karras_sigmas",
            format!("sigma_min = {sigma_min} must be finite and ≥ 0"),
        ));
    }
    if !(sigma_max.is_finite() && sigma_max >= sigma_min) {
        return Err(ScheduleError::new(
            "karras_sigmas",
            format!("sigma_max = {sigma_max} must be finite and ≥ sigma_min = {sigma_min}"),
        ));
    }
    if !(rho.is_finite() && rho > 0.0) {
        return Err(ScheduleError::new(
            "karras_sigmas",
            format!("rho = {rho} must be finite and > 0"),
        ));
    }
    let min_inv_rho = sigma_min.powf(1.0 / rho);
    let max_inv_rho = sigma_max.powf(1.0 / rho);
    let step = if n > 1 { 1.0 / (n - 1) as f64 } else { 0.0 };
    Ok((0..n)
        .map(|i| {
            let ramp = if i + 1 == n && n > 1 {
                1.0
            } else {
                i as f64 * step
            };
            (max_inv_rho + ramp * (min_inv_rho - max_inv_rho)).powf(rho)
        })
        .collect())
}
