//! The Inception-style score (Salimans et al. 2016) in the classifier's label space:
//!
//! ```text
//! IS = exp( E_x[ KL(p(y|x) ‖ p(y)) ] ),   p(y) = E_x[p(y|x)],   KL(p ‖ q) = Σ_y p_y·ln(p_y / q_y)
//! ```
//!
//! It is 1 when every sample gets the same label distribution and at most K (the number of classes) when each sample
//! is confidently one class and the classes are equally frequent. Sums are in f64; a term with p_y = 0 is 0.

use super::invalid;
use crate::error::Result;

/// The score of `probs`, row-major `N × num_classes` probabilities p(y|x) (rows summing to 1).
pub fn inception_score(probs: &[f32], num_classes: usize) -> Result<f64> {
    if num_classes == 0 || probs.is_empty() || !probs.len().is_multiple_of(num_classes) {
        return Err(invalid(
            "inception_score",
            format!(
                "{} probabilities do not make a positive number of rows of {num_classes} classes",
                probs.len()
            ),
        ));
    }
    let n = probs.len() / num_classes;
    let mut marginal = vec![0.0f64; num_classes];
    for row in probs.chunks_exact(num_classes) {
        for (m, &p) in marginal.iter_mut().zip(row) {
            *m += f64::from(p) / n as f64;
        }
    }
    let mean_kl: f64 = probs
        .chunks_exact(num_classes)
        .map(|row| {
            row.iter()
                .zip(&marginal)
                .filter(|(&p, _)| p > 0.0)
                .map(|(&p, &q)| f64::from(p) * (f64::from(p) / q).ln())
                .sum::<f64>()
        })
        .sum::<f64>()
        / n as f64;
    Ok(mean_kl.exp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confident_balanced_predictions_score_the_number_of_classes() {
        // One-hot rows, each of 4 classes twice: KL = ln 4 for every row.
        let probs: Vec<f32> = (0..8)
            .flat_map(|i| (0..4).map(move |c| f32::from(c == i % 4)))
            .collect();
        assert!((inception_score(&probs, 4).unwrap() - 4.0).abs() < 1e-12);
    }

    #[test]
    fn identical_predictions_score_one() {
        let probs = [0.2, 0.3, 0.5].repeat(5);
        assert!((inception_score(&probs, 3).unwrap() - 1.0).abs() < 1e-12);
    }

    #[test]
    fn a_hand_made_pair_matches_its_kl() {
        // p₁ = (0.9, 0.1), p₂ = (0.1, 0.9): marginal (½, ½), KL = 0.9 ln 1.8 + 0.1 ln 0.2 for both.
        let got = inception_score(&[0.9, 0.1, 0.1, 0.9], 2).unwrap();
        let kl = 0.9f64 * (0.9f64 / 0.5).ln() + 0.1 * (0.1f64 / 0.5).ln();
        // The inputs are f32: 0.9f32 and 0.1f32 differ from 0.9 and 0.1 by ~1e-8.
        assert!((got - kl.exp()).abs() < 1e-7, "{got} vs {}", kl.exp());
    }

    #[test]
    fn ragged_probabilities_are_refused() {
        assert!(inception_score(&[0.5, 0.5, 1.0], 2).is_err());
        assert!(inception_score(&[], 2).is_err());
    }
}
