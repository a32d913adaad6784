//! An exact denoiser for Gaussian-mixture data under the variance-preserving process, shared by the sampler and
//! editing tests.

use diffuse_diffusion::sampler::sigmas::{timestep_to_sigma, training_sigmas};
use diffuse_diffusion::sampler::{Condition, Denoiser, Prediction};
use diffuse_diffusion::schedule::{BetaSchedule, NoiseSchedule};
use diffuse_diffusion::Result;
use diffuse_tensor::Tensor;

/// The linear schedule (β from 1e-4 to 0.02 over 1000 steps).
pub fn linear_schedule() -> NoiseSchedule {
    NoiseSchedule::new(BetaSchedule::Linear, 1000, 1e-4, 0.02, false).unwrap()
}

pub fn f64s(x: &Tensor) -> Vec<f64> {
    x.to_vec().unwrap().into_iter().map(f64::from).collect()
}

pub const DIM: usize = 2;

/// p_data = Σ_k π_k N(μ_k, s_k² I) in 2-D. Under the VP forward process the marginal at ᾱ is
/// Σ_k π_k N(√ᾱ μ_k, v_k I) with v_k = ᾱ s_k² + 1 − ᾱ, and the optimal ε-prediction is
/// ε*(x) = −√(1−ᾱ) ∇log p_t(x) = √(1−ᾱ) Σ_k w_k(x) (x − √ᾱ μ_k)/v_k with posterior weights w_k ∝ π_k N(x; √ᾱ μ_k, v_k).
/// The timestep maps to ᾱ through the sampler's own σ(t) (log-σ interpolation between training timesteps), so the
/// denoiser is exact at fractional timesteps too. A learned-variance copy also returns a constant second half.
pub struct Mixture {
    pub weights: Vec<f64>,
    pub means: Vec<[f64; DIM]>,
    pub stds: Vec<f64>,
    pub sigmas: Vec<f64>,
    pub target: Prediction,
    pub variance_half: Option<f32>,
}

impl Mixture {
    pub fn new(target: Prediction) -> Self {
        Self::on(&linear_schedule(), target)
    }

    pub fn on(schedule: &NoiseSchedule, target: Prediction) -> Self {
        Self {
            weights: vec![0.3, 0.7],
            means: vec![[-1.0, 0.5], [0.8, -0.4]],
            stds: vec![0.3, 0.5],
            sigmas: training_sigmas(schedule).unwrap(),
            target,
            variance_half: None,
        }
    }

    pub fn mean(&self) -> [f64; DIM] {
        let mut m = [0.0; DIM];
        for (w, mu) in self.weights.iter().zip(&self.means) {
            for d in 0..DIM {
                m[d] += w * mu[d];
            }
        }
        m
    }

    pub fn variance(&self) -> [f64; DIM] {
        let m = self.mean();
        let mut v = [0.0; DIM];
        for ((w, mu), s) in self.weights.iter().zip(&self.means).zip(&self.stds) {
            for d in 0..DIM {
                v[d] += w * (s * s + mu[d] * mu[d]);
            }
        }
        [v[0] - m[0] * m[0], v[1] - m[1] * m[1]]
    }

    /// The optimal output for one sample `x` at `ᾱ`.
    pub fn optimal(&self, x: &[f64], ab: f64) -> [f64; DIM] {
        let log_w: Vec<f64> = self
            .weights
            .iter()
            .zip(&self.means)
            .zip(&self.stds)
            .map(|((pi, mu), s)| {
                let v = ab * s * s + 1.0 - ab;
                let r2: f64 = (0..DIM).map(|d| (x[d] - ab.sqrt() * mu[d]).powi(2)).sum();
                pi.ln() - 0.5 * DIM as f64 * v.ln() - 0.5 * r2 / v
            })
            .collect();
        let top = log_w.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let total: f64 = log_w.iter().map(|l| (l - top).exp()).sum();
        let mut eps = [0.0; DIM];
        for ((lw, mu), s) in log_w.iter().zip(&self.means).zip(&self.stds) {
            let w = (lw - top).exp() / total;
            let v = ab * s * s + 1.0 - ab;
            for d in 0..DIM {
                eps[d] += (1.0 - ab).sqrt() * w * (x[d] - ab.sqrt() * mu[d]) / v;
            }
        }
        let x0: [f64; DIM] =
            std::array::from_fn(|d| (x[d] - (1.0 - ab).sqrt() * eps[d]) / ab.sqrt());
        match self.target {
            Prediction::Epsilon => eps,
            Prediction::Sample => x0,
            Prediction::VPrediction => {
                std::array::from_fn(|d| ab.sqrt() * eps[d] - (1.0 - ab).sqrt() * x0[d])
            }
        }
    }
}

impl Denoiser for Mixture {
    fn predict(&self, x_t: &Tensor, t: &[f64], _cond: Condition<'_>) -> Result<Tensor> {
        let x = f64s(x_t);
        let mut out: Vec<f32> = Vec::with_capacity(2 * x.len());
        for (x, &t) in x.chunks(DIM).zip(t) {
            let sigma = timestep_to_sigma(&self.sigmas, t);
            out.extend(
                self.optimal(x, 1.0 / (1.0 + sigma * sigma))
                    .map(|v| v as f32),
            );
            if let Some(v) = self.variance_half {
                out.extend([v; DIM]);
            }
        }
        // The sample's own shape (any with DIM values per sample), or (N, 2·DIM) with a variance half.
        let shape = match self.variance_half {
            None => x_t.shape().to_vec(),
            Some(_) => vec![x_t.shape()[0], out.len() / x_t.shape()[0]],
        };
        Ok(Tensor::from_vec(out, &shape, x_t.device())?)
    }
    fn prediction(&self) -> Prediction {
        self.target
    }
}
