//! Linear multistep sampling (k-diffusion's `sample_lms`), as diffusers' `LMSDiscreteScheduler`.
//!
//! The probability flow ODE `dx/dσ = d(x, σ) = (x − D(x, σ))/σ` is integrated over `[σ_i, σ_{i+1}]` by replacing `d`
//! with the polynomial through the last `k` slopes `d_i, d_{i−1}, …, d_{i−k+1}` at their noise levels (an
//! Adams–Bashforth method on the non-uniform grid of σ):
//!
//! `x_{i+1} = x_i + Σ_j c_j·d_{i−j}`,   `c_j = ∫_{σ_i}^{σ_{i+1}} Π_{m≠j} (τ − σ_{i−m})/(σ_{i−j} − σ_{i−m}) dτ`,
//!
//! the integral of the `j`-th Lagrange basis polynomial. `k = min(i + 1, order)`, order 4 by default (diffusers'
//! `step(order=4)`), so the first steps build up the history with lower orders. One network call per step.
//!
//! diffusers integrates the basis polynomials numerically (`scipy.integrate.quad`); they have degree below 4, so the
//! three-point Gauss–Legendre rule used here (exact to degree 5) gives the integral exactly.

use super::grid::{k_grid, SigmaInterpolation};
use super::k_diffusion::{init_noise_sigma, SigmaDenoiser};
use super::{Condition, Denoiser, SamplerOptions, Start};
use crate::error::{Error, Result};
use crate::schedule::NoiseSchedule;
use diffuse_tensor::Tensor;

/// The highest order the three-point Gauss–Legendre rule integrates exactly (basis polynomials of degree ≤ 5).
pub const MAX_LMS_ORDER: usize = 6;

/// `∫_a^b Π_{m≠j} (τ − nodes[m])/(nodes[j] − nodes[m]) dτ`: the integral of the `j`-th Lagrange basis polynomial over
/// `nodes` (at most [`MAX_LMS_ORDER`] of them), by three-point Gauss–Legendre quadrature.
pub fn lagrange_integral(nodes: &[f64], j: usize, a: f64, b: f64) -> f64 {
    let basis = |tau: f64| {
        nodes
            .iter()
            .enumerate()
            .filter(|&(m, _)| m != j)
            .map(|(_, &node)| (tau - node) / (nodes[j] - node))
            .product::<f64>()
    };
    let (mid, half) = (0.5 * (a + b), 0.5 * (b - a));
    let offset = (0.6f64).sqrt() * half;
    half * (5.0 / 9.0 * basis(mid - offset)
        + 8.0 / 9.0 * basis(mid)
        + 5.0 / 9.0 * basis(mid + offset))
}

/// LMS sampling of order `order` from the unit normal `noise` (scaled here by `init_noise_sigma`).
pub fn lms(
    model: &dyn Denoiser,
    schedule: &NoiseSchedule,
    options: &SamplerOptions,
    order: usize,
    start: Start<'_>,
    cond: Condition<'_>,
) -> Result<Tensor> {
    if !(1..=MAX_LMS_ORDER).contains(&order) {
        return Err(Error::sampler(
            "order",
            format!("LMS order {order} must be between 1 and {MAX_LMS_ORDER}"),
        ));
    }
    if options.step_noise.is_some() {
        return Err(Error::sampler(
            "step noise",
            "LMS is deterministic and draws no noise",
        ));
    }
    let grid = k_grid(schedule, options, SigmaInterpolation::Linear, false)?;
    let denoiser = SigmaDenoiser {
        model,
        cond,
        limit: options.x0_limit(),
    };
    let mut x = start.initial(
        init_noise_sigma(&grid, options.spacing),
        grid.timesteps.len(),
    )?;
    // The slopes of the last `order` steps, oldest first.
    let mut slopes: Vec<Tensor> = Vec::with_capacity(order);
    for (i, &t) in grid.timesteps.iter().enumerate().skip(start.first_step()) {
        let sigma = grid.sigmas[i];
        if slopes.len() == order {
            slopes.remove(0);
        }
        slopes.push(denoiser.slope(&x, sigma as f32, t)?);
        let k = slopes.len();
        // nodes[j] = σ_{i−j}, the level of slopes[k − 1 − j].
        let nodes: Vec<f64> = (0..k).map(|j| grid.sigmas[i - j]).collect();
        // Σ_j c_j·d_{i−j} first, then added to x (diffusers' `sample + sum(…)`).
        let mut increment: Option<Tensor> = None;
        for j in 0..k {
            let c = lagrange_integral(&nodes, j, sigma, grid.sigmas[i + 1]) as f32;
            let term = slopes[k - 1 - j].mul_scalar(c)?;
            increment = Some(match increment {
                Some(sum) => sum.add(&term)?,
                None => term,
            });
        }
        if let Some(increment) = increment {
            x = x.add(&increment)?;
        }
    }
    Ok(x)
}
