//! UniPC (Zhao et al. 2023, "UniPC: A Unified Predictor-Corrector Framework for Fast Sampling of Diffusion Models"),
//! as diffusers' `UniPCMultistepScheduler`.
//!
//! Like DPM-Solver it integrates the linear part of the probability flow ODE exactly in log-SNR `λ`, over a step of
//! `h = λ_t − λ_s`, and approximates the network output over the step from its values at earlier levels. With data
//! prediction (`predict_x0`) and `hh = −h` (noise prediction: `hh = h` and `α ↔ σ` swapped):
//!
//! `x_t = (σ_t/σ_s)·x_s − α_t·φ₁(hh)·m0 − α_t·B(h)·Σ_k ρ_k·D_k`,   `φ₁(hh) = e^{hh} − 1`,
//!
//! where `D_k = (m_k − m0)/r_k` are divided differences of the stored outputs at relative log-SNR distances
//! `r_k = (λ_{s_k} − λ_s)/h`, and `B(h) = hh` (variant **bh1**) or `e^{hh} − 1` (**bh2**). The weights ρ solve the
//! order conditions `Σ_k ρ_k·r_k^{i−1} = i!·φ_{i+1}(hh)/B(h)` (`φ_{k+1}(hh) = φ_k(hh)/hh − 1/k!`, `φ₁` as above; at
//! order 2 the predictor uses ρ = ½).
//!
//! - **UniP** (the predictor) uses the outputs of earlier steps only: a multistep method of the chosen order.
//! - **UniC** (the corrector) runs after the network has been called at the new point `x_t`: it redoes the step with
//!   that new output included (`D_t = m_t − m0`, its weight the last ρ of the full system), which raises the order
//!   by one at no extra network call. The corrected `x_t` replaces the predicted one before the next prediction.
//!
//! Orders follow diffusers: the `k`-th step at most `k`, and with `lower_order_final` at most the number of steps
//! left; correctors can be disabled per step (`disable_corrector`). The last step is a prediction only. A
//! first-order step to σ = 0 lands on the network's x̂0 (the limit of the update; diffusers computes `∞·0` there for
//! bh1 and for noise prediction and returns NaN); higher orders cannot step to σ = 0 and are refused.

use super::grid::{multistep_grid, Multistep};
use super::prediction::{
    div_scalar, eps_from, eps_of_x0, predict, vp_level, weighted_sum, x0_from,
};
use super::{Condition, Denoiser, SamplerOptions, Start};
use crate::error::{Error, Result};
use crate::schedule::NoiseSchedule;
use diffuse_tensor::Tensor;

/// The form of `B(h)` (diffusers' `solver_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UniPcVariant {
    /// `B(h) = hh`.
    Bh1,
    /// `B(h) = e^{hh} − 1`.
    Bh2,
}

/// UniPC's own settings.
#[derive(Clone, Debug, PartialEq)]
pub struct UniPc {
    /// 1, 2 or 3.
    pub order: usize,
    pub variant: UniPcVariant,
    /// Work with x̂0 (true, diffusers' default) or with ε̂.
    pub predict_x0: bool,
    /// Lower the order of the last steps to the steps left.
    pub lower_order_final: bool,
    /// Steps (by index) whose corrector is skipped; the corrector after step `i` runs at step `i + 1`.
    pub disable_corrector: Vec<usize>,
}

impl Default for UniPc {
    fn default() -> Self {
        Self {
            order: 2,
            variant: UniPcVariant::Bh2,
            predict_x0: true,
            lower_order_final: true,
            disable_corrector: Vec::new(),
        }
    }
}

/// The highest order implemented (diffusers' configurations use 1 to 3).
pub const MAX_UNIPC_ORDER: usize = 3;

/// Solves the small dense system `a·x = b` by Gaussian elimination with partial pivoting.
fn solve(mut a: Vec<Vec<f64>>, mut b: Vec<f64>) -> Result<Vec<f64>> {
    let n = b.len();
    for col in 0..n {
        let pivot = (col..n)
            .max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))
            .unwrap_or(col);
        if a[pivot][col] == 0.0 || !a[pivot][col].is_finite() {
            return Err(Error::sampler(
                "UniPC",
                "the order conditions are singular (two stored levels coincide)",
            ));
        }
        a.swap(col, pivot);
        b.swap(col, pivot);
        let (top, below) = a.split_at_mut(col + 1);
        let pivot_row = &top[col];
        for (offset, row) in below.iter_mut().enumerate() {
            let f = row[col] / pivot_row[col];
            for (entry, &p) in row[col..].iter_mut().zip(&pivot_row[col..]) {
                *entry -= f * p;
            }
            b[col + 1 + offset] -= f * b[col];
        }
    }
    let mut x = vec![0.0; n];
    for row in (0..n).rev() {
        let tail: f64 = (row + 1..n).map(|k| a[row][k] * x[k]).sum();
        x[row] = (b[row] - tail) / a[row][row];
    }
    Ok(x)
}

/// One UniPC update from level `s` (sample `x`, newest output `m0`) to level `t`, of `order`: the predictor when
/// `corrector` is `None`, else the corrector with the new output `m_t`. `earlier` are the older outputs with their
/// levels, newest first (`order − 1` of them are used). Scalars are float32 and the expressions are evaluated in
/// diffusers' order.
#[allow(clippy::too_many_arguments)]
fn update(
    settings: &UniPc,
    x: &Tensor,
    m0: &Tensor,
    earlier: &[(&Tensor, f32)],
    sigma_s: f32,
    sigma_t: f32,
    order: usize,
    corrector: Option<&Tensor>,
) -> Result<Tensor> {
    let (alpha_s, sig_s, lambda_s) = vp_level(sigma_s);
    let (alpha_t, sig_t, lambda_t) = vp_level(sigma_t);
    if sigma_t == 0.0 {
        if order > 1 || corrector.is_some() {
            return Err(Error::sampler(
                "lower_order_final",
                "UniPC above first order cannot step to σ = 0 (diffusers returns NaN there): keep \
                 lower_order_final or use final_sigmas_type sigma_min",
            ));
        }
        // The limit h → ∞: x_t = x̂0 (data prediction: m0 itself; noise prediction: (x − σ_s·ε)/α_s).
        return if settings.predict_x0 {
            Ok(m0.clone())
        } else {
            div_scalar(&x.sub(&m0.mul_scalar(sig_s)?)?, alpha_s)
        };
    }
    let (lead, scale) = if settings.predict_x0 {
        (sig_t / sig_s, alpha_t)
    } else {
        (alpha_t / alpha_s, sig_t)
    };
    let h = lambda_t - lambda_s;
    // Divided differences D_k over the older outputs, at r_k = (λ_{s_k} − λ_s)/h.
    let mut rks = Vec::with_capacity(order);
    let mut differences = Vec::with_capacity(order);
    for &(m, sigma_k) in earlier.iter().take(order - 1) {
        let rk = (vp_level(sigma_k).2 - lambda_s) / h;
        rks.push(rk);
        differences.push(div_scalar(&m.sub(m0)?, rk)?);
    }
    rks.push(1.0);
    let hh = if settings.predict_x0 { -h } else { h };
    let phi_1 = hh.exp_m1();
    let b_h = match settings.variant {
        UniPcVariant::Bh1 => hh,
        UniPcVariant::Bh2 => phi_1,
    };
    // The order conditions: row i holds r_k^i, right-hand side i!·φ_{i+2}(hh)/B(h).
    let mut rows = Vec::with_capacity(order);
    let mut rhs = Vec::with_capacity(order);
    let mut phi_k = phi_1 / hh - 1.0;
    let mut factorial = 1.0f32;
    for i in 1..=order {
        rows.push(
            rks.iter()
                .map(|r| f64::from(r.powi(i as i32 - 1)))
                .collect::<Vec<f64>>(),
        );
        rhs.push(f64::from(phi_k * factorial / b_h));
        factorial *= (i + 1) as f32;
        phi_k = phi_k / hh - 1.0 / factorial;
    }
    let base = weighted_sum(&[(lead, x), (-(scale * phi_1), m0)])?;
    let rhos: Vec<f32> = match corrector {
        None if differences.is_empty() => return Ok(base),
        None if order == 2 => vec![0.5],
        None => {
            let square = rows[..order - 1]
                .iter()
                .map(|r| r[..order - 1].to_vec())
                .collect();
            solve(square, rhs[..order - 1].to_vec())?
        }
        Some(_) if order == 1 => vec![0.5],
        Some(_) => solve(rows, rhs)?,
    }
    .into_iter()
    .map(|r| r as f32)
    .collect();
    let mut terms: Vec<(f32, &Tensor)> = rhos.iter().copied().zip(&differences).collect();
    let newest;
    if let Some(m_t) = corrector {
        newest = m_t.sub(m0)?;
        terms.push((rhos[rhos.len() - 1], &newest));
    }
    let residual = weighted_sum(&terms)?;
    Ok(base.sub(&residual.mul_scalar(scale * b_h)?)?)
}

/// UniPC sampling from the unit normal `noise` (= `x_T`; the initial noise scale is 1).
pub fn unipc(
    model: &dyn Denoiser,
    schedule: &NoiseSchedule,
    options: &SamplerOptions,
    settings: &UniPc,
    start: Start<'_>,
    cond: Condition<'_>,
) -> Result<Tensor> {
    if !(1..=MAX_UNIPC_ORDER).contains(&settings.order) {
        return Err(Error::sampler(
            "solver_order",
            format!(
                "UniPC order {} must be between 1 and {MAX_UNIPC_ORDER}",
                settings.order
            ),
        ));
    }
    if options.step_noise.is_some() {
        return Err(Error::sampler(
            "step noise",
            "UniPC is deterministic and draws no noise",
        ));
    }
    let grid = multistep_grid(schedule, options, Multistep::UniPc)?;
    let n = grid.timesteps.len();
    let limit = options.x0_limit();
    let prediction = model.prediction();
    let mut x = start.initial(1.0, n)?;
    // Converted outputs (x̂0 or ε̂) with the index of their level, newest last.
    let mut outputs: Vec<(Tensor, usize)> = Vec::with_capacity(settings.order);
    let mut last_sample: Option<Tensor> = None;
    let mut this_order = 0;
    let mut lower_order_nums = 0;
    for (i, &t) in grid.timesteps.iter().enumerate().skip(start.first_step()) {
        let (alpha, sigma, _) = vp_level(grid.sigmas[i] as f32);
        let out = predict(model, &x, t, cond)?.prediction;
        let m = if settings.predict_x0 {
            limit.apply(x0_from(prediction, &out, &x, alpha, sigma)?)?
        } else if limit.is_active() {
            let x0 = limit.apply(x0_from(prediction, &out, &x, alpha, sigma)?)?;
            eps_of_x0(&x0, &x, alpha, sigma)?
        } else {
            eps_from(prediction, &out, &x, alpha, sigma)?
        };
        if let Some(previous) = last_sample.as_ref() {
            if i > 0 && !settings.disable_corrector.contains(&(i - 1)) {
                let k = outputs.len();
                let earlier: Vec<(&Tensor, f32)> = outputs[..k - 1]
                    .iter()
                    .rev()
                    .map(|(m, j)| (m, grid.sigmas[*j] as f32))
                    .collect();
                x = update(
                    settings,
                    previous,
                    &outputs[k - 1].0,
                    &earlier,
                    grid.sigmas[i - 1] as f32,
                    grid.sigmas[i] as f32,
                    this_order,
                    Some(&m),
                )?;
            }
        }
        if outputs.len() == settings.order {
            outputs.remove(0);
        }
        outputs.push((m, i));
        let allowed = if settings.lower_order_final {
            settings.order.min(n - i)
        } else {
            settings.order
        };
        this_order = allowed.min(lower_order_nums + 1);
        let k = outputs.len();
        let earlier: Vec<(&Tensor, f32)> = outputs[..k - 1]
            .iter()
            .rev()
            .map(|(m, j)| (m, grid.sigmas[*j] as f32))
            .collect();
        let next = update(
            settings,
            &x,
            &outputs[k - 1].0,
            &earlier,
            grid.sigmas[i] as f32,
            grid.sigmas[i + 1] as f32,
            this_order,
            None,
        )?;
        last_sample = Some(x);
        x = next;
        lower_order_nums = (lower_order_nums + 1).min(settings.order);
    }
    Ok(x)
}
