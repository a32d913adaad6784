//! Classifier accuracy of class-conditional samples: how often the classifier names the class a sample was asked for.
//!
//! ```text
//! accuracy   = #{i : ŷᵢ = yᵢ} / N
//! accuracy_c = #{i : yᵢ = c, ŷᵢ = c} / #{i : yᵢ = c}      (None when no sample asked for c)
//! ```

use super::invalid;
use crate::error::Result;
use serde::{Deserialize, Serialize};

/// Overall and per-class accuracy.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClassAccuracy {
    pub overall: f64,
    /// Index c: the accuracy over the samples labelled c, or `None` if there were none.
    pub per_class: Vec<Option<f64>>,
}

/// Compares `predicted` with the requested `labels` over `num_classes` classes.
pub fn class_accuracy(
    predicted: &[u32],
    labels: &[u32],
    num_classes: usize,
) -> Result<ClassAccuracy> {
    const OP: &str = "class_accuracy";
    if predicted.len() != labels.len() || labels.is_empty() {
        return Err(invalid(
            OP,
            format!(
                "{} predictions for {} labels (need the same positive number)",
                predicted.len(),
                labels.len()
            ),
        ));
    }
    if let Some(&bad) = labels.iter().find(|&&y| y as usize >= num_classes) {
        return Err(invalid(
            OP,
            format!("label {bad} is out of range for {num_classes} classes"),
        ));
    }
    let mut total = vec![0usize; num_classes];
    let mut correct = vec![0usize; num_classes];
    for (&p, &y) in predicted.iter().zip(labels) {
        total[y as usize] += 1;
        correct[y as usize] += usize::from(p == y);
    }
    Ok(ClassAccuracy {
        overall: correct.iter().sum::<usize>() as f64 / labels.len() as f64,
        per_class: total
            .iter()
            .zip(&correct)
            .map(|(&t, &c)| (t > 0).then(|| c as f64 / t as f64))
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accuracy_counts_matches_overall_and_per_class() {
        // class 0: 2 of 3 right; class 1: 1 of 1; class 2: none asked for.
        let acc = class_accuracy(&[0, 0, 2, 1], &[0, 0, 0, 1], 3).unwrap();
        assert_eq!(acc.overall, 0.75);
        assert_eq!(acc.per_class, vec![Some(2.0 / 3.0), Some(1.0), None]);
    }

    #[test]
    fn bad_labels_are_refused() {
        assert!(class_accuracy(&[0], &[0, 1], 2)
            .unwrap_err()
            .to_string()
            .contains("1 predictions for 2 labels"));
        assert!(class_accuracy(&[0], &[5], 2)
            .unwrap_err()
            .to_string()
            .contains("label 5"));
        assert!(class_accuracy(&[], &[], 2).is_err());
    }
}
