//! Score models: `s_θ(x, t) ≈ ∇ₓ ln p_t(x)`, and how a denoising network's output is read as one.
//!
//! A network is trained on some function of the noise, not necessarily on the score. With
//! `x_t = m(t)·x_0 + s(t)·ε` ([`super::Sde`]) the score of the Gaussian kernel is `−ε/s`, and every parameterisation
//! diffuse trains or loads is affine in the network output `o`, `score = a·x_t + b·o`:
//!
//! | network ([`ScoreNetwork`]) | its time input | `a` | `b` |
//! |---|---|---|---|
//! | `NoiseConditional` (o ≈ score) | `s(t)` | 0 | 1 |
//! | `Epsilon` (o ≈ ε) | `(T − 1)·t` | 0 | `−1/s` |
//! | `Sample` (o ≈ x_0) | `(T − 1)·t` | `−1/s²` | `m/s²` |
//! | `VPrediction` (o ≈ v = m·ε − s·x_0) | `(T − 1)·t` | `−1/(m² + s²)` | `−m/(s(m² + s²))` |
//!
//! `NoiseConditional` is NCSN's noise-conditional score network as diffusers ships it: a `UNet2DModel` with
//! `time_embedding_type = "fourier"` takes the noise level σ as its "timestep", embeds `ln σ` with random Fourier
//! features and divides its output by σ itself, so that `o = f(x, σ)/σ` is the score and the raw `f ≈ −ε` has unit
//! scale at every σ (Song & Ermon 2020's output scaling). The other three are the DDPM parameterisations: the network
//! is conditioned on the fractional training timestep `(T − 1)·t` (the paper's code uses `999·t` for its VP models),
//! so a model trained on a discrete schedule of `T` steps is a score model of [`super::Sde::vp_discrete`] unchanged.
//!
//! Why a trait of its own and not [`Denoiser`]: a denoiser is defined on the training timesteps of one discrete
//! schedule and says which of ε, x_0, v it predicts; a score model is defined on continuous time and returns the
//! score itself, whatever the network computes. [`DenoiserScore`] turns any denoiser — a plain network or one guided
//! by [`crate::sampler::ClassifierFreeGuidance`] — into a score model, so guidance, conditioning and devices come
//! for free; [`NetworkScore`] does the same for a [`TrainableModel`] and also gives the score as an autograd
//! variable, which the likelihood needs for its vector–Jacobian products ([`DifferentiableScore`]).

use super::process::Sde;
use crate::error::{Error, Result};
use crate::sampler::{Condition, Denoiser};
use crate::train::TrainableModel;
use diffuse_autograd::{no_grad, Var};
use diffuse_tensor::Tensor;
use serde::{Deserialize, Serialize};

/// A model of the score of an SDE's marginals, as the samplers see it.
pub trait ScoreModel {
    /// `∇ₓ ln p_t(x)` for each sample of the batch `x` (dimension 0 = samples) at its time `t` (one per sample),
    /// under the conditioning `cond`.
    fn score(&self, x: &Tensor, t: &[f64], cond: Condition<'_>) -> Result<Tensor>;

    /// The SDE whose marginals it models.
    fn sde(&self) -> &Sde;
}

/// A score model whose score can be differentiated with respect to `x` (for divergences).
pub trait DifferentiableScore: ScoreModel {
    /// [`ScoreModel::score`] recorded on the autograd tape.
    fn score_var(&self, x: &Var, t: &[f64], cond: Condition<'_>) -> Result<Var>;
}

/// What a network's output is (see the module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScoreNetwork {
    /// Takes the noise level `s(t)`, returns the score (NCSN; diffusers' Fourier-embedded `UNet2DModel`).
    NoiseConditional,
    /// Takes the fractional training timestep, predicts ε.
    Epsilon,
    /// Takes the fractional training timestep, predicts x_0.
    Sample,
    /// Takes the fractional training timestep, predicts v.
    VPrediction,
}

/// A network's output read as a score: which network, and for the timestep-conditioned ones the number of
/// training timesteps `T` (their time input is `(T − 1)·t`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScoreParameterization {
    pub network: ScoreNetwork,
    pub num_train_timesteps: usize,
}

impl ScoreParameterization {
    /// The value the network takes as its timestep at time `t`.
    pub fn network_time(&self, sde: &Sde, t: f64) -> f64 {
        match self.network {
            ScoreNetwork::NoiseConditional => sde.std(t),
            _ => self.num_train_timesteps.saturating_sub(1) as f64 * t,
        }
    }

    /// `(a, b)` with `score = a·x_t + b·output` at time `t`.
    pub fn score_coefficients(&self, sde: &Sde, t: f64) -> (f64, f64) {
        let (m, s) = (sde.mean_scale(t), sde.std(t));
        match self.network {
            ScoreNetwork::NoiseConditional => (0.0, 1.0),
            ScoreNetwork::Epsilon => (0.0, -1.0 / s),
            ScoreNetwork::Sample => (-1.0 / (s * s), m / (s * s)),
            ScoreNetwork::VPrediction => {
                let norm = m * m + s * s;
                (-1.0 / norm, -m / (s * norm))
            }
        }
    }

    /// The network times and the per-sample coefficients `(a, b)` for the times `t`, refusing a bad time.
    fn prepare(&self, sde: &Sde, t: &[f64]) -> Result<(Vec<f64>, Vec<f32>, Vec<f32>)> {
        if let Some(bad) = t.iter().find(|&&t| !(t > 0.0 && t <= 1.0)) {
            return Err(Error::sampler(
                "t",
                format!("score time {bad} is outside (0, 1] (the score at t = 0 is the data's, unknown)"),
            ));
        }
        let times = t.iter().map(|&t| self.network_time(sde, t)).collect();
        let (a, b) = t
            .iter()
            .map(|&t| {
                let (a, b) = self.score_coefficients(sde, t);
                (a as f32, b as f32)
            })
            .unzip();
        Ok((times, a, b))
    }
}

/// `(N, 1, …, 1)` holding `values`, to scale each sample of a rank-`rank` batch.
fn per_sample(values: &[f32], rank: usize, device: diffuse_tensor::Device) -> Result<Tensor> {
    let mut shape = vec![1; rank.max(1)];
    shape[0] = values.len();
    Ok(Tensor::from_slice(values, &shape, device)?)
}

/// `a·x + b·o` per sample; one scalar multiply when every sample shares its coefficients.
fn combine(x: &Tensor, out: &Tensor, a: &[f32], b: &[f32]) -> Result<Tensor> {
    if out.shape() != x.shape() {
        return Err(Error::sampler(
            "model",
            format!(
                "returned shape {:?} for an input of shape {:?}",
                out.shape(),
                x.shape()
            ),
        ));
    }
    let uniform = |v: &[f32]| v.iter().all(|&c| c == v[0]);
    let scaled = if uniform(b) {
        out.mul_scalar(b[0])?
    } else {
        out.mul(&per_sample(b, out.rank(), out.device())?)?
    };
    if a.iter().all(|&c| c == 0.0) {
        return Ok(scaled);
    }
    let x_part = if uniform(a) {
        x.mul_scalar(a[0])?
    } else {
        x.mul(&per_sample(a, x.rank(), x.device())?)?
    };
    Ok(scaled.add(&x_part)?)
}

fn check_times(x_batch: usize, t: &[f64]) -> Result<()> {
    if t.len() != x_batch {
        return Err(Error::sampler(
            "t",
            format!("{} times for a batch of {x_batch} samples", t.len()),
        ));
    }
    Ok(())
}

/// A [`Denoiser`] (a network, or a guided one) read as a score model of `sde`. The denoiser's own
/// [`Denoiser::prediction`] is not consulted: `parameterization` says what its output is.
pub struct DenoiserScore<'a> {
    pub denoiser: &'a dyn Denoiser,
    pub sde: Sde,
    pub parameterization: ScoreParameterization,
}

impl ScoreModel for DenoiserScore<'_> {
    fn score(&self, x: &Tensor, t: &[f64], cond: Condition<'_>) -> Result<Tensor> {
        check_times(x.shape().first().copied().unwrap_or(0), t)?;
        let (times, a, b) = self.parameterization.prepare(&self.sde, t)?;
        let out = self.denoiser.predict(x, &times, cond)?;
        combine(x, &out, &a, &b)
    }

    fn sde(&self) -> &Sde {
        &self.sde
    }
}

/// A [`TrainableModel`] read as a differentiable score model of `sde` (of a network that also predicts its variance,
/// the prediction half of its channels, as [`crate::train::ModelDenoiser`] gives the samplers).
pub struct NetworkScore<'a, M: TrainableModel + ?Sized> {
    pub model: &'a M,
    pub sde: Sde,
    pub parameterization: ScoreParameterization,
}

impl<M: TrainableModel + ?Sized> ScoreModel for NetworkScore<'_, M> {
    fn score(&self, x: &Tensor, t: &[f64], cond: Condition<'_>) -> Result<Tensor> {
        no_grad(|| {
            Ok(self
                .score_var(&Var::constant(x.clone()), t, cond)?
                .tensor()
                .clone())
        })
    }

    fn sde(&self) -> &Sde {
        &self.sde
    }
}

impl<M: TrainableModel + ?Sized> DifferentiableScore for NetworkScore<'_, M> {
    fn score_var(&self, x: &Var, t: &[f64], cond: Condition<'_>) -> Result<Var> {
        check_times(x.shape().first().copied().unwrap_or(0), t)?;
        let (times, a, b) = self.parameterization.prepare(&self.sde, t)?;
        let out = self.model.forward(x, &times, cond)?;
        // A network that also predicts its variance: its prediction is the first half of the channels.
        let channels = x.shape().get(1).copied().unwrap_or(0);
        let out = if x.shape().len() >= 2 && out.shape().get(1) == Some(&(2 * channels)) {
            out.narrow(1, 0, channels)?
        } else {
            out
        };
        if out.shape() != x.shape() {
            return Err(Error::sampler(
                "model",
                format!(
                    "returned shape {:?} for an input of shape {:?}",
                    out.shape(),
                    x.shape()
                ),
            ));
        }
        let device = x.tensor().device();
        let rank = x.shape().len();
        let scaled = out.mul(&Var::constant(per_sample(&b, rank, device)?))?;
        if a.iter().all(|&c| c == 0.0) {
            return Ok(scaled);
        }
        Ok(scaled.add(&x.mul(&Var::constant(per_sample(&a, rank, device)?))?)?)
    }
}
