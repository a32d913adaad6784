//! A two-dimensional Gaussian mixture whose score under any of the SDEs is known in closed form: the marginal at
//! time `t` is the mixture with means `m(t)·μ_k` and variances `m(t)²σ_k² + s(t)²`.

use diffuse_diffusion::sampler::Condition;
use diffuse_diffusion::sde::{ScoreModel, Sde};
use diffuse_diffusion::Result;
use diffuse_tensor::Tensor;
use std::cell::Cell;

pub const DIM: usize = 2;

pub struct Mixture {
    pub weights: Vec<f64>,
    pub means: Vec<[f64; DIM]>,
    pub stds: Vec<f64>,
    pub sde: Sde,
    /// Score evaluations of single samples so far.
    pub evaluations: Cell<usize>,
}

impl Mixture {
    pub fn new(sde: Sde) -> Mixture {
        Mixture {
            weights: vec![0.3, 0.7],
            means: vec![[-1.0, 0.5], [0.8, -0.4]],
            stds: vec![0.3, 0.5],
            sde,
            evaluations: Cell::new(0),
        }
    }

    /// Per coordinate: the mean and variance of the mixture smoothed to the marginal of time `t` (`t = 0`: the
    /// data, exactly).
    pub fn moments(&self, t: f64) -> [(f64, f64); DIM] {
        let (m, s) = if t == 0.0 {
            (1.0, 0.0)
        } else {
            (self.sde.mean_scale(t), self.sde.std(t))
        };
        std::array::from_fn(|d| {
            let mean: f64 = self
                .weights
                .iter()
                .zip(&self.means)
                .map(|(w, mu)| w * mu[d])
                .sum();
            let second: f64 = self
                .weights
                .iter()
                .zip(&self.means)
                .zip(&self.stds)
                .map(|((w, mu), sd)| w * (sd * sd + mu[d] * mu[d]))
                .sum();
            (m * mean, m * m * (second - mean * mean) + s * s)
        })
    }

    /// The exact score of one point at time `t`.
    pub fn score_at(&self, x: &[f64], t: f64) -> [f64; DIM] {
        let (m, s) = (self.sde.mean_scale(t), self.sde.std(t));
        let vars: Vec<f64> = self.stds.iter().map(|sd| m * m * sd * sd + s * s).collect();
        let log_w: Vec<f64> = self
            .weights
            .iter()
            .zip(&self.means)
            .zip(&vars)
            .map(|((pi, mu), v)| {
                let r2: f64 = (0..DIM).map(|d| (x[d] - m * mu[d]).powi(2)).sum();
                pi.ln() - 0.5 * DIM as f64 * v.ln() - 0.5 * r2 / v
            })
            .collect();
        let top = log_w.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let total: f64 = log_w.iter().map(|l| (l - top).exp()).sum();
        let mut score = [0.0; DIM];
        for ((lw, mu), v) in log_w.iter().zip(&self.means).zip(&vars) {
            let w = (lw - top).exp() / total;
            for d in 0..DIM {
                score[d] += w * (m * mu[d] - x[d]) / v;
            }
        }
        score
    }
}

impl ScoreModel for Mixture {
    fn score(&self, x: &Tensor, t: &[f64], _cond: Condition<'_>) -> Result<Tensor> {
        let values = x.to_vec()?;
        self.evaluations.set(self.evaluations.get() + t.len());
        let out: Vec<f32> = values
            .chunks(DIM)
            .zip(t)
            .flat_map(|(x, &t)| {
                let x: Vec<f64> = x.iter().map(|&v| f64::from(v)).collect();
                self.score_at(&x, t)
            })
            .map(|v| v as f32)
            .collect();
        Ok(Tensor::from_vec(out, x.shape(), x.device())?)
    }

    fn sde(&self) -> &Sde {
        &self.sde
    }
}

/// Per coordinate: (mean, variance, standard error of the mean, standard error of the variance) of samples
/// `(N, DIM)`.
pub fn sample_moments(x: &Tensor) -> [(f64, f64, f64, f64); DIM] {
    let samples: Vec<f64> = x.to_vec().unwrap().into_iter().map(f64::from).collect();
    let n = (samples.len() / DIM) as f64;
    std::array::from_fn(|d| {
        let xs: Vec<f64> = samples.iter().skip(d).step_by(DIM).copied().collect();
        let mean = xs.iter().sum::<f64>() / n;
        let m2 = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
        let m4 = xs.iter().map(|x| (x - mean).powi(4)).sum::<f64>() / n;
        (mean, m2, (m2 / n).sqrt(), ((m4 - m2 * m2) / n).sqrt())
    })
}

/// Asserts that the samples' per-coordinate mean and variance are within 4 standard errors of `want`.
pub fn assert_moments(label: &str, x: &Tensor, want: [(f64, f64); DIM]) {
    for (d, ((mean, var, se_mean, se_var), (want_mean, want_var))) in
        sample_moments(x).into_iter().zip(want).enumerate()
    {
        let report = format!(
            "{label}, coordinate {d}: mean {mean:.4} (want {want_mean:.4}, se {se_mean:.4}), variance {var:.4} \
             (want {want_var:.4}, se {se_var:.4})"
        );
        eprintln!("{report}");
        assert!((mean - want_mean).abs() < 4.0 * se_mean, "{report}");
        assert!((var - want_var).abs() < 4.0 * se_var, "{report}");
    }
}
