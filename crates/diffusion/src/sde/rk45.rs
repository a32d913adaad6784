//! The adaptive Dormand–Prince 5(4) Runge–Kutta method ("RK45", Dormand & Prince 1980) on tensors, with the step
//! control of SciPy's `solve_ivp(method="RK45")`, which the paper's code uses for the probability-flow ODE.
//!
//! One step of size `h` from `(t, y)` evaluates the right-hand side at seven stages,
//! `k_i = f(t + c_i h, y + h Σ_{j<i} a_ij k_j)`; the fifth-order solution is `y + h Σ b_i k_i`, and the difference
//! to the embedded fourth-order one, `h Σ e_i k_i`, estimates the local error. The last stage is `f` at the new
//! point ("first same as last"), so an accepted step costs six evaluations. The error is measured against the mixed
//! tolerance `scale = atol + rtol·max(|y|, |y_new|)` in the root-mean-square norm over every component:
//! `err = √(mean((h Σ e_i k_i / scale)²))`. A step with `err < 1` is accepted; either way the next step size is
//! `h·min(10, max(0.2, 0.9·err^{−1/5}))`, never growing right after a rejection. The first step size comes from
//! SciPy's rule (Hairer, Nørsett & Wanner, *Solving ODEs I*, §II.4), which costs one extra evaluation.

use crate::error::{Error, Result};
use diffuse_tensor::Tensor;
use std::cell::Cell;

/// The nodes `c_i`.
const C: [f64; 7] = [0.0, 1.0 / 5.0, 3.0 / 10.0, 4.0 / 5.0, 8.0 / 9.0, 1.0, 1.0];
/// The coupling coefficients `a_ij`, row `i` for stage `i + 1`.
const A: [&[f64]; 6] = [
    &[1.0 / 5.0],
    &[3.0 / 40.0, 9.0 / 40.0],
    &[44.0 / 45.0, -56.0 / 15.0, 32.0 / 9.0],
    &[
        19372.0 / 6561.0,
        -25360.0 / 2187.0,
        64448.0 / 6561.0,
        -212.0 / 729.0,
    ],
    &[
        9017.0 / 3168.0,
        -355.0 / 33.0,
        46732.0 / 5247.0,
        49.0 / 176.0,
        -5103.0 / 18656.0,
    ],
    &[
        35.0 / 384.0,
        0.0,
        500.0 / 1113.0,
        125.0 / 192.0,
        -2187.0 / 6784.0,
        11.0 / 84.0,
    ],
];
/// The fifth-order weights `b_i` (the last row of `A`; `b_7 = 0`).
const B: [f64; 6] = [
    35.0 / 384.0,
    0.0,
    500.0 / 1113.0,
    125.0 / 192.0,
    -2187.0 / 6784.0,
    11.0 / 84.0,
];
/// `e_i = b_i − b̂_i`, the fifth- minus the fourth-order weights.
const E: [f64; 7] = [
    71.0 / 57600.0,
    0.0,
    -71.0 / 16695.0,
    71.0 / 1920.0,
    -17253.0 / 339200.0,
    22.0 / 525.0,
    -1.0 / 40.0,
];

const SAFETY: f64 = 0.9;
const MIN_FACTOR: f64 = 0.2;
const MAX_FACTOR: f64 = 10.0;
/// The error estimator's order plus one: the exponent of the step-size update is `−1/5`.
const ERROR_EXPONENT: f64 = -1.0 / 5.0;
/// Accepted plus rejected steps after which a solve gives up.
pub const MAX_STEPS: usize = 100_000;

/// The relative and absolute tolerances of an adaptive solve.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tolerances {
    pub rtol: f64,
    pub atol: f64,
}

impl Tolerances {
    /// Refuses non-positive or non-finite tolerances, and a relative tolerance below what an `f32` state resolves.
    pub fn validate(&self) -> Result<()> {
        for (what, value) in [("rtol", self.rtol), ("atol", self.atol)] {
            if !(value > 0.0 && value.is_finite()) {
                return Err(Error::sampler(
                    what,
                    format!("the tolerance {what} = {value} must be positive and finite"),
                ));
            }
        }
        if self.rtol < 1e-6 {
            return Err(Error::sampler(
                "rtol",
                format!(
                    "{} is below what an f32 state can resolve (its relative precision is 6e-8, and the step's \
                     rounding is larger); use rtol ≥ 1e-6",
                    self.rtol
                ),
            ));
        }
        Ok(())
    }
}

/// What a solve cost.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OdeStats {
    /// Evaluations of the right-hand side.
    pub nfe: usize,
    pub accepted_steps: usize,
    pub rejected_steps: usize,
}

/// One Dormand–Prince step: the fifth-order solution, the local error estimate `h Σ e_i k_i`, and `f` at the new
/// point.
pub struct Step {
    pub y: Tensor,
    pub error: Tensor,
    pub f_new: Tensor,
}

/// `y + h·Σ c_j k_j`.
fn combine(y: &Tensor, h: f64, terms: impl Iterator<Item = (f64, Tensor)>) -> Result<Tensor> {
    let mut acc = y.clone();
    for (c, k) in terms {
        if c != 0.0 {
            acc = acc.add(&k.mul_scalar((h * c) as f32)?)?;
        }
    }
    Ok(acc)
}

/// One step of size `h` (negative to integrate backwards) from `(t, y)`, where `k1 = f(t, y)`; six evaluations.
pub fn dormand_prince_step(
    f: &mut dyn FnMut(f64, &Tensor) -> Result<Tensor>,
    t: f64,
    y: &Tensor,
    k1: &Tensor,
    h: f64,
) -> Result<Step> {
    let mut k = vec![k1.clone()];
    for (stage, row) in A.iter().enumerate().take(5) {
        let y_stage = combine(y, h, row.iter().copied().zip(k.iter().cloned()))?;
        k.push(f(t + C[stage + 1] * h, &y_stage)?);
    }
    let y_new = combine(y, h, B.iter().copied().zip(k.iter().cloned()))?;
    let f_new = f(t + h, &y_new)?;
    k.push(f_new.clone());
    let zero = y.zeros_like()?;
    let error = combine(&zero, h, E.iter().copied().zip(k.iter().cloned()))?;
    Ok(Step {
        y: y_new,
        error,
        f_new,
    })
}

/// `√(mean((x/scale)²))`.
fn rms_ratio(x: &Tensor, scale: &Tensor) -> Result<f64> {
    Ok(f64::from(x.div(scale)?.square()?.mean_all()?.to_scalar()?).sqrt())
}

/// SciPy's first step size (positive) for the solve from `(t0, y0)` with `f0 = f(t0, y0)` over `interval`.
fn initial_step(
    f: &mut dyn FnMut(f64, &Tensor) -> Result<Tensor>,
    t0: f64,
    y0: &Tensor,
    f0: &Tensor,
    direction: f64,
    interval: f64,
    tol: Tolerances,
) -> Result<f64> {
    let scale = y0.abs()?.affine(tol.rtol as f32, tol.atol as f32)?;
    let (d0, d1) = (rms_ratio(y0, &scale)?, rms_ratio(f0, &scale)?);
    let h0 = if d0 < 1e-5 || d1 < 1e-5 {
        1e-6
    } else {
        0.01 * d0 / d1
    }
    .min(interval);
    let y1 = y0.add(&f0.mul_scalar((h0 * direction) as f32)?)?;
    let f1 = f(t0 + h0 * direction, &y1)?;
    let d2 = rms_ratio(&f1.sub(f0)?, &scale)? / h0;
    let h1 = if d1 <= 1e-15 && d2 <= 1e-15 {
        (h0 * 1e-3).max(1e-6)
    } else {
        (0.01 / d1.max(d2)).powf(-ERROR_EXPONENT)
    };
    Ok((100.0 * h0).min(h1).min(interval))
}

/// Integrates `dy/dt = f(t, y)` from `(t0, y0)` to `t1` (either direction) with adaptive Dormand–Prince steps;
/// returns `y(t1)` and the cost.
pub fn solve(
    f: &mut dyn FnMut(f64, &Tensor) -> Result<Tensor>,
    t0: f64,
    t1: f64,
    y0: &Tensor,
    tol: Tolerances,
) -> Result<(Tensor, OdeStats)> {
    tol.validate()?;
    let mut stats = OdeStats::default();
    let interval = (t1 - t0).abs();
    if interval == 0.0 {
        return Ok((y0.clone(), stats));
    }
    let direction = (t1 - t0).signum();
    let nfe = Cell::new(0);
    let mut counted = |t: f64, y: &Tensor| {
        nfe.set(nfe.get() + 1);
        f(t, y)
    };
    let (mut t, mut y) = (t0, y0.clone());
    let mut k1 = counted(t, &y)?;
    let mut h_abs = initial_step(&mut counted, t, &y, &k1, direction, interval, tol)?;
    while direction * (t1 - t) > 0.0 {
        let min_step = 10.0 * (t.abs() * f64::EPSILON).max(f64::MIN_POSITIVE);
        let mut rejected = false;
        loop {
            if stats.accepted_steps + stats.rejected_steps >= MAX_STEPS {
                return Err(Error::sampler(
                    "rtol",
                    format!("the solve took {MAX_STEPS} steps without reaching t = {t1} (now at t = {t}); loosen the tolerances"),
                ));
            }
            if h_abs < min_step {
                return Err(Error::sampler(
                    "rtol",
                    format!(
                        "the step size fell to {h_abs:.3e} at t = {t} without meeting the tolerances (rtol {}, \
                         atol {}): the right-hand side is not smooth there or returns non-finite values",
                        tol.rtol, tol.atol
                    ),
                ));
            }
            let mut t_new = t + direction * h_abs;
            if direction * (t_new - t1) > 0.0 {
                t_new = t1;
            }
            let h = t_new - t;
            let step = dormand_prince_step(&mut counted, t, &y, &k1, h)?;
            let scale = y
                .abs()?
                .maximum(&step.y.abs()?)?
                .affine(tol.rtol as f32, tol.atol as f32)?;
            let err = rms_ratio(&step.error, &scale)?;
            if err < 1.0 {
                let mut factor = if err == 0.0 {
                    MAX_FACTOR
                } else {
                    (SAFETY * err.powf(ERROR_EXPONENT)).min(MAX_FACTOR)
                };
                if rejected {
                    factor = factor.min(1.0);
                }
                h_abs = h.abs() * factor;
                (t, y, k1) = (t_new, step.y, step.f_new);
                stats.accepted_steps += 1;
                break;
            }
            // A NaN error (non-finite values) shrinks the step as much as allowed.
            let factor = if err.is_finite() {
                (SAFETY * err.powf(ERROR_EXPONENT)).max(MIN_FACTOR)
            } else {
                MIN_FACTOR
            };
            h_abs = h.abs() * factor;
            rejected = true;
            stats.rejected_steps += 1;
        }
    }
    stats.nfe = nfe.get();
    Ok((y, stats))
}
