//! The forward SDEs of Song et al. (2021), `dx = f(t)·x dt + g(t) dw` on `t ∈ [0, 1]`, with their Gaussian
//! transition kernels `p_{0t}(x_t | x_0) = N(m(t)·x_0, s(t)² I)`.
//!
//! | SDE | f(t) | g(t)² | m(t) | s(t) | prior |
//! |-----|------|-------|------|------|-------|
//! | VE  | 0 | `d σ²/dt = 2 ln(σ_max/σ_min)·σ(t)²` | 1 | `σ(t) = σ_min (σ_max/σ_min)^t` | `N(0, σ_max² I)` |
//! | VP  | `−β(t)/2` | `β(t)` | `e^{−B(t)/2}` | `√(1 − e^{−B(t)})` | `N(0, I)` |
//! | sub-VP | `−β(t)/2` | `β(t)(1 − e^{−2B(t)})` | `e^{−B(t)/2}` | `1 − e^{−B(t)}` | `N(0, I)` |
//!
//! with `B(t) = ∫₀ᵗ β(u) du`. The linear `β(t) = β_min + t(β_max − β_min)` gives
//! `B(t) = β_min t + ½ t² (β_max − β_min)`. A discrete schedule of `T` training steps (any of [`crate::schedule`]'s)
//! is a VP SDE too: its `ᾱ_i` sits at `t_i = i/(T − 1)`, `B(t) = −ln ᾱ(t)` with `ln ᾱ` interpolated linearly between
//! them, so `β(t)` is constant on each interval, `(T − 1)(ln ᾱ_i − ln ᾱ_{i+1})`, and a network trained on the
//! schedule sees `t` as the fractional training timestep `(T − 1)·t`.
//!
//! The VE `s(t)` is `σ(t)`, as in the paper's code, rather than the exact `√(σ(t)² − σ_min²)` of an SDE started at
//! `σ_min`: the two differ only below `t ≈ 0.1` where `σ ≈ σ_min`, and this is the convention the networks were
//! trained with.

use super::noise::NoiseSource;
use crate::error::{Error, Result};
use crate::schedule::NoiseSchedule;
use diffuse_tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};
use std::f64::consts::PI;

/// A forward SDE. Build it with [`Sde::ve`], [`Sde::vp`], [`Sde::sub_vp`] or [`Sde::vp_discrete`], which check the
/// parameters. The continuous ones serialise as `{"kind": "ve", "sigma_min": …, "sigma_max": …}` and the like (a
/// training run stores its SDE so); a discrete one is rebuilt from its schedule instead.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Sde {
    /// Variance exploding (SMLD / NCSN): geometric noise levels from `sigma_min` to `sigma_max`.
    Ve { sigma_min: f64, sigma_max: f64 },
    /// Variance preserving (DDPM) with the linear `β(t)`.
    Vp { beta_min: f64, beta_max: f64 },
    /// Sub-variance preserving with the linear `β(t)`: the VP drift with less diffusion.
    SubVp { beta_min: f64, beta_max: f64 },
    /// Variance preserving with a discrete schedule's `ᾱ`, interpolated in `ln ᾱ`.
    #[serde(skip)]
    VpDiscrete(DiscreteVp),
}

/// A discrete schedule seen as a VP SDE: `ln ᾱ_i` at `t_i = i/(T − 1)`.
#[derive(Clone, Debug, PartialEq)]
pub struct DiscreteVp {
    log_alpha_bars: Vec<f64>,
}

impl DiscreteVp {
    /// The number of training timesteps `T`.
    pub fn len(&self) -> usize {
        self.log_alpha_bars.len()
    }

    /// Never true: [`Sde::vp_discrete`] refuses a schedule of fewer than two steps.
    pub fn is_empty(&self) -> bool {
        self.log_alpha_bars.is_empty()
    }

    /// `(i, w)` with `(T − 1)·t = i + w`, `0 ≤ w ≤ 1`, `i ≤ T − 2`.
    fn segment(&self, t: f64) -> (usize, f64) {
        let last = (self.len() - 1) as f64;
        let u = (t.clamp(0.0, 1.0)) * last;
        let i = (u.floor() as usize).min(self.len() - 2);
        (i, u - i as f64)
    }

    /// `B(t) = −ln ᾱ(t)`.
    fn integral(&self, t: f64) -> f64 {
        let (i, w) = self.segment(t);
        -((1.0 - w) * self.log_alpha_bars[i] + w * self.log_alpha_bars[i + 1])
    }

    /// `β(t)`: the slope of `B` on the interval holding `t` (the right-hand one at a grid point).
    fn beta(&self, t: f64) -> f64 {
        let (i, _) = self.segment(t);
        (self.len() - 1) as f64 * (self.log_alpha_bars[i] - self.log_alpha_bars[i + 1])
    }
}

fn positive_finite(value: f64) -> bool {
    value > 0.0 && value.is_finite()
}

impl Sde {
    /// The VE SDE between `sigma_min` and `sigma_max` (`0 < σ_min < σ_max`).
    pub fn ve(sigma_min: f64, sigma_max: f64) -> Result<Sde> {
        let sde = Sde::Ve {
            sigma_min,
            sigma_max,
        };
        sde.validate()?;
        Ok(sde)
    }

    /// The VP SDE with `β(t) = β_min + t(β_max − β_min)` (`0 < β_min ≤ β_max`).
    pub fn vp(beta_min: f64, beta_max: f64) -> Result<Sde> {
        let sde = Sde::Vp { beta_min, beta_max };
        sde.validate()?;
        Ok(sde)
    }

    /// The sub-VP SDE with `β(t) = β_min + t(β_max − β_min)` (`0 < β_min ≤ β_max`).
    pub fn sub_vp(beta_min: f64, beta_max: f64) -> Result<Sde> {
        let sde = Sde::SubVp { beta_min, beta_max };
        sde.validate()?;
        Ok(sde)
    }

    /// The VP SDE of a discrete schedule: at least two steps with `1 > ᾱ_0 > ᾱ_1 > … > ᾱ_{T−1} > 0` (a
    /// zero-terminal-SNR schedule, whose last `ᾱ` is 0, has no finite `B(1)`).
    pub fn vp_discrete(schedule: &NoiseSchedule) -> Result<Sde> {
        let alpha_bars = &schedule.alphas_cumprod;
        if alpha_bars.len() < 2 {
            return Err(Error::sampler(
                "schedule",
                format!(
                    "a VP SDE needs a schedule of at least 2 steps, got {}",
                    alpha_bars.len()
                ),
            ));
        }
        if let Some(i) = alpha_bars.iter().position(|&a| !(a > 0.0 && a < 1.0)) {
            return Err(Error::sampler(
                "schedule",
                format!(
                    "ᾱ_{i} = {} must lie strictly between 0 and 1 for a VP SDE (a zero-terminal-SNR schedule \
                     has no finite ln ᾱ at its last step)",
                    alpha_bars[i]
                ),
            ));
        }
        if let Some(i) = alpha_bars.windows(2).position(|w| w[1] >= w[0]) {
            return Err(Error::sampler(
                "schedule",
                format!("ᾱ must decrease, but ᾱ_{} ≥ ᾱ_{i}", i + 1),
            ));
        }
        Ok(Sde::VpDiscrete(DiscreteVp {
            log_alpha_bars: alpha_bars.iter().map(|a| a.ln()).collect(),
        }))
    }

    /// Refuses parameters that do not define the SDE (the constructors call this; the samplers call it again for a
    /// value built by hand).
    pub fn validate(&self) -> Result<()> {
        match *self {
            Sde::Ve {
                sigma_min,
                sigma_max,
            } => {
                if !positive_finite(sigma_min) || !positive_finite(sigma_max) {
                    return Err(Error::sampler(
                        "sigma_min",
                        format!(
                            "σ_min = {sigma_min} and σ_max = {sigma_max} must be positive and finite"
                        ),
                    ));
                }
                if sigma_min >= sigma_max {
                    return Err(Error::sampler(
                        "sigma_min",
                        format!(
                            "σ_min = {sigma_min} must be below σ_max = {sigma_max} (the noise grows from σ_min at \
                             t = 0 to σ_max at t = 1); swap them"
                        ),
                    ));
                }
                Ok(())
            }
            Sde::Vp { beta_min, beta_max } | Sde::SubVp { beta_min, beta_max } => {
                if !positive_finite(beta_min) || !positive_finite(beta_max) || beta_min > beta_max {
                    return Err(Error::sampler(
                        "beta_min",
                        format!(
                            "β_min = {beta_min} and β_max = {beta_max} must be positive and finite with \
                             β_min ≤ β_max"
                        ),
                    ));
                }
                Ok(())
            }
            Sde::VpDiscrete(ref d) if d.len() < 2 => Err(Error::sampler(
                "schedule",
                "a discrete VP SDE needs at least 2 steps",
            )),
            Sde::VpDiscrete(_) => Ok(()),
        }
    }

    /// A short name: `ve`, `vp`, `subvp` or `vp-discrete`.
    pub fn name(&self) -> &'static str {
        match self {
            Sde::Ve { .. } => "ve",
            Sde::Vp { .. } => "vp",
            Sde::SubVp { .. } => "subvp",
            Sde::VpDiscrete(_) => "vp-discrete",
        }
    }

    /// `β(t)` of the VP-type SDEs (0 for VE).
    pub fn beta(&self, t: f64) -> f64 {
        match *self {
            Sde::Ve { .. } => 0.0,
            Sde::Vp { beta_min, beta_max } | Sde::SubVp { beta_min, beta_max } => {
                beta_min + t * (beta_max - beta_min)
            }
            Sde::VpDiscrete(ref d) => d.beta(t),
        }
    }

    /// `B(t) = ∫₀ᵗ β` of the VP-type SDEs (0 for VE).
    fn beta_integral(&self, t: f64) -> f64 {
        match *self {
            Sde::Ve { .. } => 0.0,
            Sde::Vp { beta_min, beta_max } | Sde::SubVp { beta_min, beta_max } => {
                beta_min * t + 0.5 * t * t * (beta_max - beta_min)
            }
            Sde::VpDiscrete(ref d) => d.integral(t),
        }
    }

    /// The VE noise level `σ(t) = σ_min (σ_max/σ_min)^t`.
    fn ve_sigma(sigma_min: f64, sigma_max: f64, t: f64) -> f64 {
        sigma_min * (sigma_max / sigma_min).powf(t)
    }

    /// `f(t)`: the drift is `f(t)·x`.
    pub fn drift(&self, t: f64) -> f64 {
        -0.5 * self.beta(t)
    }

    /// `g(t)`, the diffusion coefficient.
    pub fn diffusion(&self, t: f64) -> f64 {
        match *self {
            Sde::Ve {
                sigma_min,
                sigma_max,
            } => {
                Self::ve_sigma(sigma_min, sigma_max, t)
                    * (2.0 * (sigma_max / sigma_min).ln()).sqrt()
            }
            Sde::Vp { .. } | Sde::VpDiscrete(_) => self.beta(t).sqrt(),
            Sde::SubVp { .. } => {
                let b = self.beta_integral(t);
                (self.beta(t) * -(-2.0 * b).exp_m1()).sqrt()
            }
        }
    }

    /// `m(t)`: the mean of `x_t` given `x_0` is `m(t)·x_0`.
    pub fn mean_scale(&self, t: f64) -> f64 {
        (-0.5 * self.beta_integral(t)).exp()
    }

    /// `s(t)`: the standard deviation of `x_t` given `x_0`.
    pub fn std(&self, t: f64) -> f64 {
        match *self {
            Sde::Ve {
                sigma_min,
                sigma_max,
            } => Self::ve_sigma(sigma_min, sigma_max, t),
            Sde::Vp { .. } | Sde::VpDiscrete(_) => (-(-self.beta_integral(t)).exp_m1()).sqrt(),
            Sde::SubVp { .. } => -(-self.beta_integral(t)).exp_m1(),
        }
    }

    /// The standard deviation of the prior `p_1 ≈ N(0, σ_p² I)`: `σ_max` for VE, 1 otherwise.
    pub fn prior_std(&self) -> f64 {
        match *self {
            Sde::Ve { sigma_max, .. } => sigma_max,
            _ => 1.0,
        }
    }

    /// A draw from the prior: `σ_p` times the next standard normal tensor of `noise`.
    pub fn prior_sample(
        &self,
        shape: &[usize],
        noise: &mut dyn NoiseSource,
        device: Device,
    ) -> Result<Tensor> {
        Ok(noise
            .next(shape, device)?
            .mul_scalar(self.prior_std() as f32)?)
    }

    /// `ln N(x; 0, σ_p² I)` of each sample of `x` (dimension 0 = samples), summed in `f64`:
    /// `−(D/2)·ln(2π σ_p²) − ‖x‖²/(2σ_p²)`.
    pub fn prior_log_density(&self, x: &Tensor) -> Result<Vec<f64>> {
        let batch = x.shape().first().copied().unwrap_or(0);
        if batch == 0 {
            return Err(Error::sampler(
                "x",
                format!("must hold at least one sample, got shape {:?}", x.shape()),
            ));
        }
        let dim = x.numel() / batch;
        let var = self.prior_std() * self.prior_std();
        let constant = -0.5 * dim as f64 * (2.0 * PI * var).ln();
        Ok(x.to_vec()?
            .chunks_exact(dim)
            .map(|v| constant - v.iter().map(|&a| f64::from(a).powi(2)).sum::<f64>() / (2.0 * var))
            .collect())
    }

    /// The `N`-level discretisation the reverse-diffusion predictor steps with at level `k` (`0 ≤ k < N`, time
    /// `k/(N − 1)`), as in the paper's code: a forward step `x_k = keep·x_{k−1} + √g2·z`.
    ///
    /// - VE: the geometric levels `σ_k = σ(k/(N − 1))`, `keep = 1`, `g2 = σ_k² − σ_{k−1}²` (`σ_{−1} = 0`);
    /// - VP (linear or discrete): DDPM's `β_k = β(k/(N − 1))/N`, `keep = √(1 − β_k)`, `g2 = β_k`;
    /// - sub-VP: Euler–Maruyama over `dt = 1/N` at the sampler's time `t`: `keep = 1 + f(t)·dt`, `g2 = g(t)²·dt`.
    pub fn discretize(&self, k: usize, n: usize, t: f64) -> Result<(f64, f64)> {
        let level = |k: usize| {
            if n > 1 {
                k as f64 / (n - 1) as f64
            } else {
                1.0
            }
        };
        match *self {
            Sde::Ve {
                sigma_min,
                sigma_max,
            } => {
                let sigma = Self::ve_sigma(sigma_min, sigma_max, level(k));
                let below = match k {
                    0 => 0.0,
                    _ => Self::ve_sigma(sigma_min, sigma_max, level(k - 1)),
                };
                Ok((1.0, sigma * sigma - below * below))
            }
            Sde::Vp { .. } | Sde::VpDiscrete(_) => {
                let beta = self.beta(level(k)) / n as f64;
                if beta >= 1.0 {
                    return Err(Error::sampler(
                        "steps",
                        format!(
                            "the VP reverse-diffusion step has β = β(t)/N = {beta:.3} ≥ 1 at N = {n} steps; \
                             use more steps (at least {}) or the Euler–Maruyama predictor",
                            self.beta(level(k)).floor() as usize + 1
                        ),
                    ));
                }
                Ok(((1.0 - beta).sqrt(), beta))
            }
            Sde::SubVp { .. } => {
                let dt = 1.0 / n as f64;
                let g = self.diffusion(t);
                Ok((1.0 + self.drift(t) * dt, g * g * dt))
            }
        }
    }

    /// The `α` of the paper's Langevin corrector at level `k` of `N`: `1 − β_k` for VP (as in
    /// [`Sde::discretize`]), 1 for VE and sub-VP.
    pub fn langevin_alpha(&self, k: usize, n: usize) -> f64 {
        match self {
            Sde::Vp { .. } | Sde::VpDiscrete(_) => {
                let level = if n > 1 {
                    k as f64 / (n - 1) as f64
                } else {
                    1.0
                };
                1.0 - self.beta(level) / n as f64
            }
            Sde::Ve { .. } | Sde::SubVp { .. } => 1.0,
        }
    }
}

/// The sampler times `t_i = 1 − i(1 − ε)/(N − 1)`, `i = 0 … N−1`, from 1 down to `ε` (just `[1]` for `N = 1`).
pub fn time_grid(steps: usize, eps: f64) -> Vec<f64> {
    if steps == 1 {
        return vec![1.0];
    }
    (0..steps)
        .map(|i| 1.0 - i as f64 * (1.0 - eps) / (steps - 1) as f64)
        .collect()
}
