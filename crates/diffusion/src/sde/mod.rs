//! Score-based generative modelling with stochastic differential equations (Song & Ermon 2019; Song et al. 2021).
//! `docs/score-sde.md` derives everything here.
//!
//! A forward SDE `dx = f(t)·x dt + g(t) dw` carries data at `t = 0` to a simple prior at `t = 1`; its marginals `p_t`
//! are reached in one Gaussian jump from the data, `x_t = m(t)·x_0 + s(t)·z`. Knowing the score `∇ₓ ln p_t`, the
//! process runs backwards (Anderson 1982): `dx = [f(t)·x − g(t)²·∇ₓ ln p_t(x)] dt + g(t) dw̄`, and the ODE
//! `dx/dt = f(t)·x − ½g(t)²·∇ₓ ln p_t(x)` has the same marginals. A network trained by denoising score matching
//! stands in for the score.
//!
//! - [`process`]: [`Sde`], the VE, VP (linear β or a discrete schedule) and sub-VP SDEs: drift, diffusion, marginal
//!   mean and standard deviation, prior sampling and density, the discretisation the samplers step with.
//! - [`config`]: [`ScoreSdeConfig`], diffusers' `ScoreSdeVeScheduler` / `ScoreSdeVpScheduler` configs.
//! - [`score`]: [`ScoreModel`] and how a network's output is read as a score ([`ScoreParameterization`]), through a
//!   [`crate::sampler::Denoiser`] (for guidance) or a [`crate::train::TrainableModel`] (differentiable).
//! - [`score_matching`]: the denoising score-matching loss with the papers' weightings.
//! - [`noise`]: where the samplers' noise comes from ([`PhiloxNoise`]).
//! - [`langevin`]: annealed Langevin dynamics and the Tweedie denoising step.
//! - [`pc`]: predictor–corrector sampling (reverse-diffusion and Euler–Maruyama predictors, Langevin corrector).
//! - [`rk45`]: the adaptive Dormand–Prince solver; [`ode`]: sampling with the probability-flow ODE.
//! - [`likelihood`]: exact likelihood in bits/dim with the Hutchinson–Skilling divergence estimator.

pub mod config;
pub mod langevin;
pub mod likelihood;
pub mod noise;
pub mod ode;
pub mod pc;
pub mod process;
pub mod rk45;
pub mod score;
pub mod score_matching;

pub use config::ScoreSdeConfig;
pub use langevin::{annealed_langevin, langevin_at, tweedie_denoise, LangevinOptions};
pub use likelihood::{
    divergence_estimate, ode_likelihood, LikelihoodOptions, OdeLikelihood, Probe,
};
pub use noise::{NoiseSource, PhiloxNoise};
pub use ode::{probability_flow, probability_flow_drift, OdeOptions};
pub use pc::{predictor_corrector, Corrector, PcOptions, Predictor};
pub use process::{time_grid, DiscreteVp, Sde};
pub use rk45::{OdeStats, Tolerances};
pub use score::{
    DenoiserScore, DifferentiableScore, NetworkScore, ScoreModel, ScoreNetwork,
    ScoreParameterization,
};
pub use score_matching::{ScoreLoss, ScoreMatching, ScoreWeighting};
