//! Where a sampling run begins, and the noise level of each of its steps.
//!
//! A run normally starts from unit normal latents and visits every step of its grid ([`Start::Noise`]). Image editing
//! (SDEdit, `crate::edit`) starts part-way instead: from the sampler's own state at its `k`-th visited step
//! ([`Start::State`], diffusers' `set_begin_index`), with an empty history, so that a multistep method builds its
//! order up again from the first step it takes, as diffusers' image-to-image pipelines do.
//!
//! The state is written in the sampler's own space ([`StateSpace`]): DDPM, DDIM, PNDM, DPM-Solver and UniPC carry the
//! variance-preserving `x_t = √ᾱ·x0 + √(1−ᾱ)·ε`; the k-diffusion-style Euler, Euler ancestral, Heun and LMS carry
//! `x = x0 + σ·ε` with `σ = √((1−ᾱ)/ᾱ)`. [`NoiseLevel::noised`] is diffusers' `add_noise` of the scheduler class.

use super::prediction::lin;
use crate::error::{Error, Result};
use diffuse_tensor::Tensor;

/// Where a sampling run begins.
#[derive(Clone, Copy, Debug)]
pub enum Start<'a> {
    /// Unit normal latents; the run visits every step (the σ-samplers scale them by `init_noise_sigma`).
    Noise(&'a Tensor),
    /// The sampler's state at its visited step `step` (counting from 0); the run takes the steps from there on.
    State { step: usize, x: &'a Tensor },
}

impl<'a> Start<'a> {
    /// The tensor the run starts from.
    pub fn tensor(&self) -> &'a Tensor {
        match self {
            Start::Noise(x) | Start::State { x, .. } => x,
        }
    }

    /// The first step the run takes.
    pub fn first_step(&self) -> usize {
        match self {
            Start::Noise(_) => 0,
            Start::State { step, .. } => *step,
        }
    }

    /// The initial state of a run of `steps` steps whose noise starts at scale `init_noise_sigma` (1 for the
    /// variance-preserving samplers); a state at a step the run does not have is refused.
    pub fn initial(&self, init_noise_sigma: f32, steps: usize) -> Result<Tensor> {
        match self {
            Start::Noise(noise) => {
                if init_noise_sigma == 1.0 {
                    Ok((*noise).clone())
                } else {
                    Ok(noise.mul_scalar(init_noise_sigma)?)
                }
            }
            Start::State { step, x } if *step < steps => Ok((*x).clone()),
            Start::State { step, .. } => Err(Error::sampler(
                "start",
                format!("step {step} is past the run's last step ({steps} steps, counting from 0)"),
            )),
        }
    }
}

/// How a sampler writes its state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StateSpace {
    /// `x_t = √ᾱ·x0 + √(1−ᾱ)·ε`.
    VariancePreserving,
    /// `x = x0 + σ·ε`.
    Sigma,
}

/// The noise level at which one step of a run calls the network.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NoiseLevel {
    /// The model timestep (fractional for the σ-samplers between training timesteps).
    pub timestep: f64,
    /// `ᾱ`, the signal fraction of the variance-preserving view.
    pub alpha_bar: f64,
    /// `σ = √((1−ᾱ)/ᾱ)`, the noise-to-signal ratio.
    pub sigma: f64,
    pub space: StateSpace,
}

impl NoiseLevel {
    /// The level of a variance-preserving sampler at timestep `t` with `ᾱ_t = alpha_bar`.
    pub fn of_alpha_bar(timestep: f64, alpha_bar: f64, space: StateSpace) -> Self {
        Self {
            timestep,
            alpha_bar,
            sigma: ((1.0 - alpha_bar) / alpha_bar).sqrt(),
            space,
        }
    }

    /// The level of noise-to-signal ratio `sigma`.
    pub fn of_sigma(timestep: f64, sigma: f64, space: StateSpace) -> Self {
        Self {
            timestep,
            alpha_bar: 1.0 / (1.0 + sigma * sigma),
            sigma,
            space,
        }
    }

    /// The sampler's state at this level for clean data `x0` and unit normal `noise`: `√ᾱ·x0 + √(1−ᾱ)·ε` or
    /// `x0 + σ·ε` (float32 coefficients).
    pub fn noised(&self, x0: &Tensor, noise: &Tensor) -> Result<Tensor> {
        if x0.shape() != noise.shape() {
            return Err(Error::sampler(
                "noise",
                format!(
                    "shape {:?} differs from the image's {:?}",
                    noise.shape(),
                    x0.shape()
                ),
            ));
        }
        let noise = noise.to_device(x0.device())?;
        Ok(match self.space {
            StateSpace::VariancePreserving => lin(
                self.alpha_bar.sqrt() as f32,
                x0,
                (1.0 - self.alpha_bar).sqrt() as f32,
                &noise,
            )?,
            StateSpace::Sigma => lin(1.0, x0, self.sigma as f32, &noise)?,
        })
    }
}
