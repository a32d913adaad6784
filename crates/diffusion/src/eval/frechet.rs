//! The Fréchet distance between two feature distributions, each summarised by its mean and covariance (Heusel et al.
//! 2017, "FID" when the features are Inception-v3's):
//!
//! ```text
//! FD = ‖μ₁ − μ₂‖² + tr Σ₁ + tr Σ₂ − 2·tr (Σ₁^½ Σ₂ Σ₁^½)^½
//! ```
//!
//! the squared 2-Wasserstein distance between N(μ₁, Σ₁) and N(μ₂, Σ₂). Means and covariances are accumulated in f64
//! (covariance with the unbiased 1/(N − 1), as `numpy.cov`). The trace term uses two symmetric eigendecompositions
//! ([`super::jacobi`]) instead of a general matrix square root: `Σ₁ = VΛVᵀ` gives `Σ₁^½ = V Λ^½ Vᵀ`, and
//! `M = Σ₁^½ Σ₂ Σ₁^½` is symmetric positive semi-definite, so `tr M^½ = Σᵢ √μᵢ` over its eigenvalues μᵢ. Eigenvalues
//! that rounding pushed below zero (a covariance from fewer samples than dimensions is singular) are clamped to 0 in
//! both steps, which keeps the result finite; the final value is clamped at 0, since a distance cannot be negative.

use super::invalid;
use super::jacobi::symmetric_eigen;
use crate::error::Result;
use serde::{Deserialize, Serialize};

/// Mean and covariance of a set of feature vectors: what the Fréchet distance needs of it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FeatureStatistics {
    pub dim: usize,
    /// The number of vectors summarised.
    pub count: usize,
    pub mean: Vec<f64>,
    /// Row-major `dim × dim` unbiased covariance.
    pub covariance: Vec<f64>,
}

impl FeatureStatistics {
    /// The statistics of `features.len() / dim` row-major vectors of length `dim` (at least two of them).
    pub fn from_features(features: &[f32], dim: usize) -> Result<FeatureStatistics> {
        const OP: &str = "FeatureStatistics";
        if dim == 0 || !features.len().is_multiple_of(dim) {
            return Err(invalid(
                OP,
                format!(
                    "{} values do not make whole vectors of dimension {dim}",
                    features.len()
                ),
            ));
        }
        let count = features.len() / dim;
        if count < 2 {
            return Err(invalid(
                OP,
                format!("a covariance needs at least 2 vectors, got {count}"),
            ));
        }
        let mut mean = vec![0.0; dim];
        for row in features.chunks_exact(dim) {
            for (m, &x) in mean.iter_mut().zip(row) {
                *m += f64::from(x);
            }
        }
        mean.iter_mut().for_each(|m| *m /= count as f64);
        // Σ = (1/(N−1)) Σₙ (xₙ − μ)(xₙ − μ)ᵀ, upper triangle accumulated then mirrored.
        let mut covariance = vec![0.0; dim * dim];
        let mut centred = vec![0.0; dim];
        for row in features.chunks_exact(dim) {
            for ((c, &x), m) in centred.iter_mut().zip(row).zip(&mean) {
                *c = f64::from(x) - m;
            }
            for i in 0..dim {
                let ci = centred[i];
                let out = &mut covariance[i * dim + i..(i + 1) * dim];
                for (o, &cj) in out.iter_mut().zip(&centred[i..]) {
                    *o += ci * cj;
                }
            }
        }
        for i in 0..dim {
            for j in i..dim {
                let c = covariance[i * dim + j] / (count - 1) as f64;
                covariance[i * dim + j] = c;
                covariance[j * dim + i] = c;
            }
        }
        Ok(FeatureStatistics {
            dim,
            count,
            mean,
            covariance,
        })
    }
}

/// The Fréchet distance between the Gaussians of two feature sets' statistics.
pub fn frechet_distance(a: &FeatureStatistics, b: &FeatureStatistics) -> Result<f64> {
    let n = a.dim;
    let well_formed =
        |s: &FeatureStatistics| s.mean.len() == s.dim && s.covariance.len() == s.dim * s.dim;
    if b.dim != n || !well_formed(a) || !well_formed(b) {
        return Err(invalid(
            "frechet_distance",
            format!(
                "statistics disagree: dimension {} (mean {}, covariance {}) against {} (mean {}, covariance {})",
                a.dim,
                a.mean.len(),
                a.covariance.len(),
                b.dim,
                b.mean.len(),
                b.covariance.len()
            ),
        ));
    }
    let mean_term: f64 = a
        .mean
        .iter()
        .zip(&b.mean)
        .map(|(x, y)| (x - y) * (x - y))
        .sum();
    let trace = |s: &FeatureStatistics| (0..n).map(|i| s.covariance[i * n + i]).sum::<f64>();

    // Σ₁^½ = V·diag(√max(λ, 0))·Vᵀ.
    let e = symmetric_eigen(&a.covariance, n);
    let root: Vec<f64> = e.values.iter().map(|&l| l.max(0.0).sqrt()).collect();
    let mut sqrt_a = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..n {
            sqrt_a[i * n + j] = (0..n)
                .map(|k| e.vectors[i * n + k] * root[k] * e.vectors[j * n + k])
                .sum();
        }
    }
    // M = Σ₁^½ Σ₂ Σ₁^½, symmetrised against rounding.
    let product = matmul(&matmul(&sqrt_a, &b.covariance, n), &sqrt_a, n);
    let mut m = product.clone();
    for i in 0..n {
        for j in 0..n {
            m[i * n + j] = 0.5 * (product[i * n + j] + product[j * n + i]);
        }
    }
    let trace_sqrt: f64 = symmetric_eigen(&m, n)
        .values
        .iter()
        .map(|&mu| mu.max(0.0).sqrt())
        .sum();
    Ok((mean_term + trace(a) + trace(b) - 2.0 * trace_sqrt).max(0.0))
}

/// The product of two row-major n×n matrices.
fn matmul(x: &[f64], y: &[f64], n: usize) -> Vec<f64> {
    let mut out = vec![0.0; n * n];
    for i in 0..n {
        for k in 0..n {
            let xik = x[i * n + k];
            for (o, &ykj) in out[i * n..(i + 1) * n]
                .iter_mut()
                .zip(&y[k * n..(k + 1) * n])
            {
                *o += xik * ykj;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SplitMix64;

    fn stats(mean: Vec<f64>, covariance: Vec<f64>) -> FeatureStatistics {
        FeatureStatistics {
            dim: mean.len(),
            count: 100,
            mean,
            covariance,
        }
    }

    fn diag(values: &[f64]) -> Vec<f64> {
        let n = values.len();
        let mut m = vec![0.0; n * n];
        for (i, &v) in values.iter().enumerate() {
            m[i * n + i] = v;
        }
        m
    }

    /// ‖μ₁ − μ₂‖² + Σᵢ (√aᵢ − √bᵢ)²: the distance when both covariances are diagonal in one basis.
    fn commuting_closed_form(m1: &[f64], m2: &[f64], a: &[f64], b: &[f64]) -> f64 {
        let means: f64 = m1.iter().zip(m2).map(|(x, y)| (x - y).powi(2)).sum();
        means
            + a.iter()
                .zip(b)
                .map(|(x, y)| (x.sqrt() - y.sqrt()).powi(2))
                .sum::<f64>()
    }

    /// A random orthogonal matrix: the eigenvectors of a random symmetric one.
    fn random_rotation(n: usize, seed: u64) -> Vec<f64> {
        let mut rng = SplitMix64::new(seed);
        let mut s = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..=i {
                let x = rng.next_f64() - 0.5;
                s[i * n + j] = x;
                s[j * n + i] = x;
            }
        }
        symmetric_eigen(&s, n).vectors
    }

    fn random_features(count: usize, dim: usize, seed: u64) -> Vec<f32> {
        let mut rng = SplitMix64::new(seed);
        (0..count * dim)
            .map(|_| rng.next_f64() as f32 * 2.0 - 1.0)
            .collect()
    }

    #[test]
    fn diagonal_covariances_give_the_closed_form() {
        let (m1, m2) = (vec![0.0, 1.0, -2.0], vec![0.5, 1.0, 2.0]);
        let (a, b) = ([1.0, 4.0, 0.25], [9.0, 1.0, 0.0]);
        let fd =
            frechet_distance(&stats(m1.clone(), diag(&a)), &stats(m2.clone(), diag(&b))).unwrap();
        let want = commuting_closed_form(&m1, &m2, &a, &b); // 16.25 + 4 + 1 + 0.25
        assert!((fd - want).abs() < 1e-12, "{fd} vs {want}");
    }

    #[test]
    fn commuting_covariances_give_the_closed_form() {
        let n = 12;
        let q = random_rotation(n, 7);
        let a: Vec<f64> = (0..n).map(|i| 0.1 + i as f64).collect();
        let b: Vec<f64> = (0..n).map(|i| 2.0 / (1.0 + i as f64)).collect();
        // QDQᵀ for each spectrum: the two commute since they share eigenvectors.
        let conj = |d: &[f64]| matmul(&matmul(&q, &diag(d), n), &transpose(&q, n), n);
        let mean = vec![0.0; n];
        let fd = frechet_distance(
            &stats(mean.clone(), conj(&a)),
            &stats(mean.clone(), conj(&b)),
        )
        .unwrap();
        let want = commuting_closed_form(&mean, &mean, &a, &b);
        assert!((fd - want).abs() < 1e-10 * want, "{fd} vs {want}");
    }

    fn transpose(m: &[f64], n: usize) -> Vec<f64> {
        (0..n * n).map(|k| m[(k % n) * n + k / n]).collect()
    }

    #[test]
    fn covariance_matches_a_hand_computation() {
        // Points (0, 0), (2, 0), (1, 3): mean (1, 1); deviations (−1,−1), (1,−1), (0, 2); Σ = [[2, 0], [0, 6]]/2.
        let s = FeatureStatistics::from_features(&[0.0, 0.0, 2.0, 0.0, 1.0, 3.0], 2).unwrap();
        assert_eq!(s.count, 3);
        assert_eq!(s.mean, vec![1.0, 1.0]);
        assert_eq!(s.covariance, vec![1.0, 0.0, 0.0, 3.0]);
    }

    #[test]
    fn identical_sets_are_at_distance_zero() {
        let s = FeatureStatistics::from_features(&random_features(300, 16, 1), 16).unwrap();
        let fd = frechet_distance(&s, &s).unwrap();
        assert!((0.0..1e-9).contains(&fd), "{fd}");
    }

    #[test]
    fn rank_deficient_covariances_give_finite_non_negative_distances() {
        // 5 samples in 24 dimensions: both covariances have rank 4.
        let a = FeatureStatistics::from_features(&random_features(5, 24, 2), 24).unwrap();
        let b = FeatureStatistics::from_features(&random_features(5, 24, 3), 24).unwrap();
        for (x, y) in [(&a, &b), (&b, &a), (&a, &a)] {
            let fd = frechet_distance(x, y).unwrap();
            assert!(fd.is_finite() && fd >= 0.0, "{fd}");
        }
        assert!(frechet_distance(&a, &a).unwrap() < 1e-6);
        // Equal means: FD between a rank-deficient and a zero covariance is tr Σ.
        let zero = stats(a.mean.clone(), vec![0.0; 24 * 24]);
        let trace: f64 = (0..24).map(|i| a.covariance[i * 24 + i]).sum();
        assert!((frechet_distance(&a, &zero).unwrap() - trace).abs() < 1e-12);
    }

    #[test]
    fn mismatched_statistics_are_refused() {
        let a = stats(vec![0.0; 2], diag(&[1.0, 1.0]));
        let b = stats(vec![0.0; 3], diag(&[1.0, 1.0, 1.0]));
        assert!(frechet_distance(&a, &b)
            .unwrap_err()
            .to_string()
            .contains("dimension 2"));
        assert!(FeatureStatistics::from_features(&[1.0, 2.0], 2).is_err());
        assert!(FeatureStatistics::from_features(&[1.0, 2.0, 3.0], 2).is_err());
    }
}
