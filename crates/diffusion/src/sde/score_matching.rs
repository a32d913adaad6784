//! Denoising score matching (Vincent 2011) for any of the SDEs: the training objective of NCSN (Song & Ermon 2019)
//! and of the score-SDE models (Song et al. 2021, eq. 7).
//!
//! The score of the data density is unknown, but that of the Gaussian kernel is not: for
//! `x_t = m(t)·x_0 + s(t)·z`, `∇ ln p_{0t}(x_t | x_0) = −z/s(t)`, and minimising
//! `E_{x_0, z}‖s_θ(x_t, t) + z/s(t)‖²` over functions of `(x_t, t)` gives the marginal score `∇ ln p_t`, because the
//! two objectives differ by a constant. Over `t ~ U(ε, 1)` (or NCSN's `L` noise levels) with weight `λ(t)`:
//!
//! ```text
//! L(θ) = E_t λ(t)·E‖s_θ(x_t, t) + z/s(t)‖²  =  E_t (λ(t)/s(t)²)·E‖s(t)·s_θ(x_t, t) + z‖²
//! ```
//!
//! The second form is what is computed, per pixel mean, with the two weightings of the papers:
//!
//! - `Variance`: `λ(t) = s(t)²`, so every noise level's residual has unit scale (NCSN's `λ(σ) = σ²`, the score-SDE
//!   default); for an ε-network `s·s_θ = −ε̂` and this is DDPM's simple loss;
//! - `Likelihood`: `λ(t) = g(t)²`, the weighting under which the objective bounds the negative log-likelihood
//!   (Song, Durkan, Murray & Ermon 2021), so the residual is weighted by `g(t)²/s(t)²`.

use super::config::ScoreSdeConfig;
use super::process::{time_grid, Sde};
use super::score::{ScoreNetwork, ScoreParameterization};
use crate::error::{Error, Result};
use crate::rng::SplitMix64;
use crate::sampler::Condition;
use crate::train::target::scale_samples;
use crate::train::TrainableModel;
use diffuse_autograd::Var;
use diffuse_tensor::Tensor;
use serde::{Deserialize, Serialize};

/// The weighting `λ(t)` of the score-matching loss.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScoreWeighting {
    /// `λ(t) = s(t)²`.
    Variance,
    /// `λ(t) = g(t)²` (likelihood weighting).
    Likelihood,
}

/// A score-matching objective: the SDE, how the network's output is read, the weighting and the times trained on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScoreMatching {
    pub sde: Sde,
    pub parameterization: ScoreParameterization,
    pub weighting: ScoreWeighting,
    /// The smallest training time `ε`: `t ~ U(ε, 1)`.
    pub eps: f64,
    /// Train only at `L` levels `t_j = ε + j(1 − ε)/(L − 1)` (NCSN's discrete noise levels: for VE, geometric from
    /// σ_min to σ_max) instead of continuous `t`; annealed Langevin with `L` levels visits exactly these.
    pub noise_levels: Option<usize>,
}

/// The loss of one batch.
pub struct ScoreLoss {
    /// `mean_b w_b·L_b`.
    pub loss: Var,
    /// `L_b`, the per-pixel mean of `(s·s_θ + z)²` of each sample.
    pub per_sample: Var,
    /// `w_b = λ(t_b)/s(t_b)²`.
    pub weights: Vec<f64>,
}

impl ScoreMatching {
    /// Refuses an objective that cannot train.
    pub fn validate(&self) -> Result<()> {
        self.sde.validate()?;
        if matches!(self.sde, Sde::VpDiscrete(_)) {
            return Err(Error::train(
                "sde",
                "a discrete schedule is trained with the DDPM objective (no --sde); score matching takes the \
                 continuous VE, VP or sub-VP SDE",
            ));
        }
        if !(self.eps > 0.0 && self.eps < 1.0) {
            return Err(Error::train(
                "sde_eps",
                format!("the smallest time ε = {} must lie in (0, 1)", self.eps),
            ));
        }
        if self.parameterization.network != ScoreNetwork::NoiseConditional
            && self.parameterization.num_train_timesteps < 2
        {
            return Err(Error::train(
                "num_train_timesteps",
                "a timestep-conditioned score network needs at least 2 training timesteps (its input is (T − 1)·t)",
            ));
        }
        if self.noise_levels.is_some_and(|l| l < 2) {
            return Err(Error::train(
                "noise_levels",
                "NCSN training needs at least 2 noise levels",
            ));
        }
        Ok(())
    }

    /// The scheduler config a model trained with this objective is saved with (diffusers' `ScoreSdeVeScheduler` or
    /// `ScoreSdeVpScheduler`, or diffuse's sub-VP one), carrying `T` for a timestep-conditioned network.
    pub fn scheduler_config(&self) -> Result<ScoreSdeConfig> {
        let mut config = match self.sde {
            Sde::Ve {
                sigma_min,
                sigma_max,
            } => ScoreSdeConfig::ve(sigma_min, sigma_max)?,
            _ => ScoreSdeConfig::vp_like(self.sde.clone())?,
        };
        config.num_train_timesteps = self.parameterization.num_train_timesteps;
        Ok(config)
    }

    /// `batch` training times drawn from `rng`.
    pub fn draw_times(&self, rng: &mut SplitMix64, batch: usize) -> Vec<f64> {
        match self.noise_levels {
            Some(levels) => {
                let grid = time_grid(levels, self.eps);
                (0..batch)
                    .map(|_| grid[rng.below(levels as u64) as usize])
                    .collect()
            }
            None => (0..batch)
                .map(|_| self.eps + (1.0 - self.eps) * rng.next_f64())
                .collect(),
        }
    }

    /// The weight `λ(t)/s(t)²` of the residual `s·s_θ + z` at time `t`.
    pub fn weight(&self, t: f64) -> f64 {
        match self.weighting {
            ScoreWeighting::Variance => 1.0,
            ScoreWeighting::Likelihood => {
                let (g, s) = (self.sde.diffusion(t), self.sde.std(t));
                g * g / (s * s)
            }
        }
    }

    /// The loss of `model` on the clean batch `x0` noised with the standard normal `z` (same shape) at `times`
    /// (one per sample).
    pub fn loss<M: TrainableModel + ?Sized>(
        &self,
        model: &M,
        x0: &Tensor,
        z: &Tensor,
        times: &[f64],
        cond: Condition<'_>,
    ) -> Result<ScoreLoss> {
        let batch = x0.shape().first().copied().unwrap_or(0);
        if times.len() != batch || z.shape() != x0.shape() {
            return Err(Error::train(
                "batch",
                format!(
                    "{} times and noise of shape {:?} for a batch of shape {:?}",
                    times.len(),
                    z.shape(),
                    x0.shape()
                ),
            ));
        }
        let sde = &self.sde;
        let p = &self.parameterization;
        let f32s = |f: &dyn Fn(f64) -> f64| times.iter().map(|&t| f(t) as f32).collect::<Vec<_>>();
        let means = f32s(&|t| sde.mean_scale(t));
        let stds = f32s(&|t| sde.std(t));
        let x_t = scale_samples(x0, &means)?.add(&scale_samples(z, &stds)?)?;
        let network_times: Vec<f64> = times.iter().map(|&t| p.network_time(sde, t)).collect();
        let out = model.forward(&Var::constant(x_t.clone()), &network_times, cond)?;
        if out.shape() != x0.shape() {
            return Err(Error::train(
                "model",
                format!(
                    "returned shape {:?} for images of shape {:?}; score matching needs one output per pixel \
                     (a network that also predicts its variance is trained with the discrete objective)",
                    out.shape(),
                    x0.shape()
                ),
            ));
        }
        // s·score = s·a·x_t + s·b·out; the residual is s·score + z.
        let out_scale = f32s(&|t| sde.std(t) * p.score_coefficients(sde, t).1);
        let x_scale = f32s(&|t| sde.std(t) * p.score_coefficients(sde, t).0);
        let constant = scale_samples(&x_t, &x_scale)?.add(z)?;
        let out_scale = {
            let mut shape = vec![1; x0.rank()];
            shape[0] = batch;
            Var::constant(Tensor::from_slice(&out_scale, &shape, x0.device())?)
        };
        let residual = out.mul(&out_scale)?.add(&Var::constant(constant))?;
        let pixel_dims: Vec<usize> = (1..x0.rank()).collect();
        let per_sample = residual.square()?.mean(&pixel_dims, false)?;
        let weights: Vec<f64> = times.iter().map(|&t| self.weight(t)).collect();
        let w: Vec<f32> = weights.iter().map(|&w| w as f32).collect();
        let w = Var::constant(Tensor::from_vec(w, &[batch], x0.device())?);
        let loss = per_sample.mul(&w)?.mean_all()?;
        Ok(ScoreLoss {
            loss,
            per_sample,
            weights,
        })
    }
}
