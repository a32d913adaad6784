//! Data whose every noisy marginal is known in closed form, so a sampler can be run with the exact denoiser: a 2-D
//! Gaussian mixture `Σ_k π_k N(μ_k, s_k² I)`. Under the variance-preserving forward process the marginal at ᾱ is
//! `Σ_k π_k N(√ᾱ μ_k, v_k I)`, `v_k = ᾱ s_k² + 1 − ᾱ`, and the optimal noise prediction is
//! `ε*(x) = −√(1 − ᾱ)·∇log p_t(x) = √(1 − ᾱ)·Σ_k w_k(x)(x − √ᾱ μ_k)/v_k` with posterior weights
//! `w_k ∝ π_k N(x; √ᾱ μ_k, v_k)`. A timestep maps to ᾱ through the samplers' own σ(t) (log-σ interpolation between
//! training timesteps), so the denoiser is exact at fractional timesteps too. The same construction drives the
//! sampler tests (`crates/diffusion/tests/samplers.rs`).

use diffuse_diffusion::sampler::sigmas::{timestep_to_sigma, training_sigmas};
use diffuse_diffusion::sampler::{Condition, Denoiser, Prediction};
use diffuse_diffusion::schedule::NoiseSchedule;
use diffuse_diffusion::Result;
use diffuse_tensor::Tensor;
use std::cell::RefCell;

pub struct Mixture {
    pub weights: Vec<f64>,
    pub means: Vec<[f64; 2]>,
    pub stds: Vec<f64>,
    sigmas: Vec<f64>,
    /// Every batch the samplers asked about, in order (the points where the network is evaluated).
    pub calls: RefCell<Vec<Vec<f32>>>,
}

impl Mixture {
    /// The mixture of the convergence test (`ode_samplers_converge_at_their_order`).
    pub fn of_the_tests(schedule: &NoiseSchedule) -> Result<Mixture> {
        Mixture::new(
            schedule,
            vec![0.3, 0.7],
            vec![[-1.0, 0.5], [0.8, -0.4]],
            vec![0.3, 0.5],
        )
    }

    /// Three well separated blobs, for pictures of paths.
    pub fn three_blobs(schedule: &NoiseSchedule) -> Result<Mixture> {
        Mixture::new(
            schedule,
            vec![1.0 / 3.0; 3],
            vec![[-1.4, 0.9], [1.3, 1.0], [0.1, -1.3]],
            vec![0.18; 3],
        )
    }

    fn new(
        schedule: &NoiseSchedule,
        weights: Vec<f64>,
        means: Vec<[f64; 2]>,
        stds: Vec<f64>,
    ) -> Result<Mixture> {
        Ok(Mixture {
            weights,
            means,
            stds,
            sigmas: training_sigmas(schedule)?,
            calls: RefCell::new(Vec::new()),
        })
    }

    /// The exact ε for one point at ᾱ.
    fn epsilon(&self, x: &[f64], ab: f64) -> [f64; 2] {
        let log_w: Vec<f64> = self
            .weights
            .iter()
            .zip(&self.means)
            .zip(&self.stds)
            .map(|((pi, mu), s)| {
                let v = ab * s * s + 1.0 - ab;
                let r2: f64 = (0..2).map(|d| (x[d] - ab.sqrt() * mu[d]).powi(2)).sum();
                pi.ln() - v.ln() - 0.5 * r2 / v
            })
            .collect();
        let top = log_w.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let total: f64 = log_w.iter().map(|l| (l - top).exp()).sum();
        let mut eps = [0.0; 2];
        for ((lw, mu), s) in log_w.iter().zip(&self.means).zip(&self.stds) {
            let w = (lw - top).exp() / total;
            let v = ab * s * s + 1.0 - ab;
            for d in 0..2 {
                eps[d] += (1.0 - ab).sqrt() * w * (x[d] - ab.sqrt() * mu[d]) / v;
            }
        }
        eps
    }

    /// `count` draws from the data distribution itself (Box–Muller on a fixed LCG), to show where samples belong.
    pub fn data(&self, count: usize) -> Vec<(f64, f64)> {
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let mut uniform = || {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((state >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        };
        (0..count)
            .map(|_| {
                let (u, mut pick) = (uniform(), 0);
                let mut acc = self.weights[0];
                while u > acc && pick + 1 < self.weights.len() {
                    pick += 1;
                    acc += self.weights[pick];
                }
                let r = (-2.0 * uniform().ln()).sqrt();
                let theta = 2.0 * std::f64::consts::PI * uniform();
                let s = self.stds[pick];
                let mu = self.means[pick];
                (mu[0] + s * r * theta.cos(), mu[1] + s * r * theta.sin())
            })
            .collect()
    }
}

impl Denoiser for Mixture {
    fn predict(&self, x_t: &Tensor, t: &[f64], _cond: Condition<'_>) -> Result<Tensor> {
        let x = x_t.to_vec()?;
        self.calls.borrow_mut().push(x.clone());
        let out: Vec<f32> = x
            .chunks_exact(2)
            .zip(t)
            .flat_map(|(p, &t)| {
                let sigma = timestep_to_sigma(&self.sigmas, t);
                let p = [f64::from(p[0]), f64::from(p[1])];
                self.epsilon(&p, 1.0 / (1.0 + sigma * sigma))
            })
            .map(|v| v as f32)
            .collect();
        Ok(Tensor::from_vec(out, x_t.shape(), x_t.device())?)
    }

    fn prediction(&self) -> Prediction {
        Prediction::Epsilon
    }
}
