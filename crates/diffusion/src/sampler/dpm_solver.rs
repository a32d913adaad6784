//! Multistep DPM-Solver (Lu et al. 2022, "DPM-Solver" and "DPM-Solver++"), as diffusers'
//! `DPMSolverMultistepScheduler`.
//!
//! In the variance-preserving view `x_t = α_t·x0 + σ_t·ε` (`α_t = 1/√(1+σ²)`, `σ_t = σ·α_t`) with log-SNR
//! `λ_t = log(α_t/σ_t)`, the probability flow ODE has an exactly integrable linear part. Over a step `s → t` with
//! `h = λ_t − λ_s`:
//!
//! - **DPM-Solver++** (data prediction D = x̂0): `x_t = (σ_t/σ_s)·x_s − α_t·(e^{−h} − 1)·D̄`;
//! - **DPM-Solver** (noise prediction ε̂): `x_t = (α_t/α_s)·x_s − σ_t·(e^h − 1)·ε̄`;
//!
//! where the bar is the network output over the step. First order takes the current output (`D0`; DPM-Solver++(1) is
//! DDIM). Multistep methods extrapolate it from the outputs of the previous steps, at no extra network calls:
//! with `r0 = h_{−1}/h`, `D1 = (m0 − m1)/r0`, the second-order update adds `−½·α_t·(e^{−h} − 1)·D1` ("midpoint")
//! or `α_t·((e^{−h} − 1)/h + 1)·D1` ("heun"); the third order adds a second difference,
//! `D2 = (D1_0 − D1_1)/(r0 + r1)` with `D1 = D1_0 + r0/(r0 + r1)·(D1_0 − D1_1)`, and the terms
//! `α_t·((e^{−h} − 1)/h + 1)·D1 − α_t·((e^{−h} − 1 + h)/h² − ½)·D2` (DPM-Solver: the same with `e^{h}`, σ_t and signs
//! of the ε-form). **SDE-DPM-Solver++** (Lu et al., "DPM-Solver++", §5; Gonzalez et al. 2023) integrates the reverse
//! SDE instead: `x_t = (σ_t/σ_s)·e^{−h}·x_s + α_t·(1 − e^{−2h})·D0 + … + σ_t·√(1 − e^{−2h})·z`.
//!
//! Order schedule, as diffusers': the `k`-th step uses at most order `k`; with `lower_order_final` and fewer than 15
//! steps the last two steps use orders 1 and ≤ 2 (for stability), and a last step to σ = 0 is always first order. The
//! network is called at whole timesteps on the unscaled sample, and the run starts from the unit normal latents.

use super::grid::{multistep_grid, FinalSigma, Multistep};
use super::noise::StepNoise;
use super::prediction::{eps_from, eps_of_x0, predict, vp_level, weighted_sum, x0_from};
use super::{Condition, Denoiser, SamplerOptions, Start};
use crate::error::{Error, Result};
use crate::schedule::NoiseSchedule;
use diffuse_tensor::Tensor;

/// What the solver integrates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DpmAlgorithm {
    /// The noise-prediction ODE (`dpmsolver`).
    DpmSolver,
    /// The data-prediction ODE (`dpmsolver++`).
    DpmSolverPp,
    /// The noise-prediction SDE (`sde-dpmsolver`), orders 1 and 2.
    SdeDpmSolver,
    /// The data-prediction SDE (`sde-dpmsolver++`).
    SdeDpmSolverPp,
}

impl DpmAlgorithm {
    pub const ALL: [DpmAlgorithm; 4] = [
        DpmAlgorithm::DpmSolver,
        DpmAlgorithm::DpmSolverPp,
        DpmAlgorithm::SdeDpmSolver,
        DpmAlgorithm::SdeDpmSolverPp,
    ];

    /// The config name (`algorithm_type`).
    pub fn name(self) -> &'static str {
        match self {
            DpmAlgorithm::DpmSolver => "dpmsolver",
            DpmAlgorithm::DpmSolverPp => "dpmsolver++",
            DpmAlgorithm::SdeDpmSolver => "sde-dpmsolver",
            DpmAlgorithm::SdeDpmSolverPp => "sde-dpmsolver++",
        }
    }

    /// Whether the solver works on x̂0 (the ++ variants) rather than ε̂.
    pub fn predicts_data(self) -> bool {
        matches!(
            self,
            DpmAlgorithm::DpmSolverPp | DpmAlgorithm::SdeDpmSolverPp
        )
    }

    /// Whether it draws noise.
    pub fn is_sde(self) -> bool {
        matches!(
            self,
            DpmAlgorithm::SdeDpmSolver | DpmAlgorithm::SdeDpmSolverPp
        )
    }
}

/// The second-order correction's form (diffusers' `solver_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DpmSolverType {
    Midpoint,
    Heun,
}

/// The multistep DPM-Solver's own settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DpmSolver {
    pub algorithm: DpmAlgorithm,
    /// 1, 2 or 3 (2 for the SDE of ε).
    pub order: usize,
    pub solver_type: DpmSolverType,
    /// Lower orders for the last steps of runs shorter than 15 steps.
    pub lower_order_final: bool,
    /// A first-order last step always.
    pub euler_at_final: bool,
    /// Timesteps whose log-SNR is below this are not visited (−∞: all are).
    pub lambda_min_clipped: f64,
    /// The timesteps of a Karras or Lu ramp are truncated rather than rounded (diffusers does this for
    /// `squaredcos_cap_v2` schedules).
    pub truncate_ramp_timesteps: bool,
    /// diffuse's own choice, off by default: weight the second difference `D2` of the third-order update by what
    /// Taylor's theorem gives. diffusers (like the DPM-Solver reference code) weights it by half of that, which makes
    /// its 3M update second order (`docs/samplers.md` derives both and shows the convergence of each).
    pub exact_third_order: bool,
}

impl Default for DpmSolver {
    fn default() -> Self {
        Self {
            algorithm: DpmAlgorithm::DpmSolverPp,
            order: 2,
            solver_type: DpmSolverType::Midpoint,
            lower_order_final: true,
            euler_at_final: false,
            lambda_min_clipped: f64::NEG_INFINITY,
            truncate_ramp_timesteps: false,
            exact_third_order: false,
        }
    }
}

impl DpmSolver {
    /// Refuses orders and combinations diffusers cannot run.
    pub fn validate(&self, final_sigma: FinalSigma) -> Result<()> {
        let top = if self.algorithm == DpmAlgorithm::SdeDpmSolver {
            2
        } else {
            3
        };
        if !(1..=top).contains(&self.order) {
            return Err(Error::sampler(
                "solver_order",
                format!(
                    "{} for {}: orders 1 to {top} exist",
                    self.order,
                    self.algorithm.name()
                ),
            ));
        }
        if !self.algorithm.predicts_data() && final_sigma == FinalSigma::Zero {
            return Err(Error::sampler(
                "final_sigmas_type",
                format!(
                    "zero is not possible with {} (its last step would divide by σ = 0); use sigma_min",
                    self.algorithm.name()
                ),
            ));
        }
        if self.lambda_min_clipped.is_nan() {
            return Err(Error::sampler("lambda_min_clipped", "NaN is not a bound"));
        }
        Ok(())
    }
}

/// Refuses a coefficient that is not finite.
fn finite(c: f32, step: usize) -> Result<f32> {
    if c.is_finite() {
        Ok(c)
    } else {
        Err(Error::sampler(
            "steps",
            format!("a DPM-Solver coefficient of step {step} is {c}"),
        ))
    }
}

/// Multistep DPM-Solver sampling from the unit normal `noise` (= `x_T`; the initial noise scale is 1). The
/// coefficients are float32 and every expression is evaluated in diffusers' order (`e^{−h} − 1` written as such,
/// not as `expm1`), so that the rounding matches.
pub fn dpm_solver(
    model: &dyn Denoiser,
    schedule: &NoiseSchedule,
    options: &SamplerOptions,
    settings: &DpmSolver,
    start: Start<'_>,
    cond: Condition<'_>,
) -> Result<Tensor> {
    settings.validate(options.sigmas.final_sigma)?;
    let grid = multistep_grid(
        schedule,
        options,
        Multistep::DpmSolver {
            lambda_min_clipped: settings.lambda_min_clipped,
            truncate_ramp_timesteps: settings.truncate_ramp_timesteps,
        },
    )?;
    let algorithm = settings.algorithm;
    let n = grid.timesteps.len();
    let step_noise = StepNoise::new(
        options.seed,
        options.step_noise.as_ref(),
        n,
        start.tensor(),
        algorithm.is_sde(),
    )?;
    let limit = options.x0_limit();
    let prediction = model.prediction();
    let level = |i: usize| vp_level(grid.sigmas[i] as f32);
    let mut x = start.initial(1.0, n)?;
    // The converted outputs (x̂0 or ε̂) of the last steps, newest last.
    let mut outputs: Vec<Tensor> = Vec::with_capacity(settings.order);
    let mut lower_order_nums = 0;
    for (i, &t) in grid.timesteps.iter().enumerate().skip(start.first_step()) {
        let (alpha_s, sigma_s, lambda_s) = level(i);
        let out = predict(model, &x, t, cond)?.prediction;
        let m = if algorithm.predicts_data() {
            limit.apply(x0_from(prediction, &out, &x, alpha_s, sigma_s)?)?
        } else if limit.is_active() {
            let x0 = limit.apply(x0_from(prediction, &out, &x, alpha_s, sigma_s)?)?;
            eps_of_x0(&x0, &x, alpha_s, sigma_s)?
        } else {
            eps_from(prediction, &out, &x, alpha_s, sigma_s)?
        };
        if outputs.len() == settings.order {
            outputs.remove(0);
        }
        outputs.push(m);
        let last = i + 1 == n;
        let lower_order_final = last
            && (settings.euler_at_final
                || (settings.lower_order_final && n < 15)
                || options.sigmas.final_sigma == FinalSigma::Zero);
        let lower_order_second = i + 2 == n && settings.lower_order_final && n < 15;
        let order = if settings.order == 1 || lower_order_nums < 1 || lower_order_final {
            1
        } else if settings.order == 2 || lower_order_nums < 2 || lower_order_second {
            2
        } else {
            3
        };
        let (alpha_t, sigma_t, lambda_t) = level(i + 1);
        let h = lambda_t - lambda_s;
        let k = outputs.len();
        let m0 = &outputs[k - 1];
        // Differences of the outputs: D1 (second order) and, at third order, D2, as diffusers forms them.
        let (d1, d2) = match order {
            1 => (None, None),
            2 => {
                let r0 = (lambda_s - level(i - 1).2) / h;
                let d1 = m0.sub(&outputs[k - 2])?.mul_scalar(finite(1.0 / r0, i)?)?;
                (Some(d1), None)
            }
            _ => {
                let (lambda_s1, lambda_s2) = (level(i - 1).2, level(i - 2).2);
                let (r0, r1) = ((lambda_s - lambda_s1) / h, (lambda_s1 - lambda_s2) / h);
                let (m1, m2) = (&outputs[k - 2], &outputs[k - 3]);
                let d1_0 = m0.sub(m1)?.mul_scalar(finite(1.0 / r0, i)?)?;
                let d1_1 = m1.sub(m2)?.mul_scalar(finite(1.0 / r1, i)?)?;
                let gap = d1_0.sub(&d1_1)?;
                let d1 = d1_0.add(&gap.mul_scalar(finite(r0 / (r0 + r1), i)?)?)?;
                // D2 = (D1_0 − D1_1)/(r0 + r1) ≈ h²·D''/2, while the Taylor term the φ₃ coefficient multiplies is
                // h²·D'': diffusers' weight, or twice it (exact_third_order).
                let weight = if settings.exact_third_order { 2.0 } else { 1.0 };
                let d2 = gap.mul_scalar(finite(weight / (r0 + r1), i)?)?;
                (Some(d1), Some(d2))
            }
        };
        let (em, ep) = ((-h).exp() - 1.0, h.exp() - 1.0); // e^{−h} − 1, e^{h} − 1
        let e2 = 1.0 - (-2.0 * h).exp(); // 1 − e^{−2h}
        let midpoint = order == 2 && settings.solver_type == DpmSolverType::Midpoint;
        // [x, D0, D1, D2] coefficients, each signed and formed as diffusers writes its update.
        let coefficients: [f32; 4] = match algorithm {
            DpmAlgorithm::DpmSolverPp => [
                sigma_t / sigma_s,
                -(alpha_t * em),
                if midpoint {
                    -(0.5 * (alpha_t * em))
                } else {
                    alpha_t * (em / h + 1.0)
                },
                -(alpha_t * ((em + h) / (h * h) - 0.5)),
            ],
            DpmAlgorithm::DpmSolver => [
                alpha_t / alpha_s,
                -(sigma_t * ep),
                if midpoint {
                    -(0.5 * (sigma_t * ep))
                } else {
                    -(sigma_t * (ep / h - 1.0))
                },
                -(sigma_t * ((ep - h) / (h * h) - 0.5)),
            ],
            DpmAlgorithm::SdeDpmSolverPp => [
                sigma_t / sigma_s * (-h).exp(),
                alpha_t * e2,
                if midpoint {
                    0.5 * (alpha_t * e2)
                } else {
                    alpha_t * (e2 / (-2.0 * h) + 1.0)
                },
                alpha_t * ((e2 - 2.0 * h) / ((2.0 * h) * (2.0 * h)) - 0.5),
            ],
            DpmAlgorithm::SdeDpmSolver => [
                alpha_t / alpha_s,
                -(2.0 * (sigma_t * ep)),
                if midpoint {
                    -(sigma_t * ep)
                } else {
                    -(2.0 * (sigma_t * (ep / h - 1.0)))
                },
                0.0,
            ],
        };
        let mut terms: Vec<(f32, &Tensor)> = vec![
            (finite(coefficients[0], i)?, &x),
            (finite(coefficients[1], i)?, m0),
        ];
        if let Some(d1) = &d1 {
            terms.push((finite(coefficients[2], i)?, d1));
        }
        if let Some(d2) = &d2 {
            terms.push((finite(coefficients[3], i)?, d2));
        }
        let z;
        if algorithm.is_sde() {
            z = step_noise.draw(i, &x)?;
            let scale = match algorithm {
                DpmAlgorithm::SdeDpmSolverPp => sigma_t * e2.sqrt(),
                _ => sigma_t * ((2.0 * h).exp() - 1.0).sqrt(),
            };
            terms.push((finite(scale, i)?, &z));
        }
        let next = weighted_sum(&terms)?;
        x = next;
        lower_order_nums = (lower_order_nums + 1).min(settings.order);
    }
    Ok(x)
}
