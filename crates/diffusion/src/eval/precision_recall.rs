//! Improved precision and recall (Kynkäänniemi et al. 2019) in feature space.
//!
//! Each set approximates its manifold by the union of balls around its points, the ball of φ having as radius the
//! distance from φ to its k-th nearest neighbour in the same set (k = 3 by default, itself excluded):
//!
//! ```text
//! manifold(Φ) = ∪_{φ ∈ Φ} B(φ, ‖φ − NN_k(φ, Φ)‖)
//! precision   = (1/|G|) Σ_{g ∈ G} [g ∈ manifold(R)]     (generated samples that look real)
//! recall      = (1/|R|) Σ_{r ∈ R} [r ∈ manifold(G)]     (real samples the generator covers)
//! ```
//!
//! Distances are computed directly as Σ (aᵢ − bᵢ)² in f32 (8 partial sums, so the loop vectorises): a point's distance
//! to itself is exactly 0, and the relative error of a sum of d squares is at most about d·2⁻²⁴ (1e-5 for d = 128),
//! which moves a point across a ball's boundary only when it lies on it. Rows are spread over threads with rayon.

use super::invalid;
use crate::error::Result;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// The k of the k-nearest-neighbour radii, as in the paper.
pub const DEFAULT_K: usize = 3;

/// The two fractions, each in [0, 1].
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct PrecisionRecall {
    pub precision: f64,
    pub recall: f64,
}

/// ‖a − b‖².
fn squared_distance(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let (a8, b8) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (a8.remainder(), b8.remainder());
    for (x, y) in a8.zip(b8) {
        for l in 0..8 {
            let d = x[l] - y[l];
            acc[l] += d * d;
        }
    }
    let tail: f32 = ra.iter().zip(rb).map(|(x, y)| (x - y) * (x - y)).sum();
    acc.iter().sum::<f32>() + tail
}

fn check_rows(op: &'static str, what: &str, features: &[f32], dim: usize) -> Result<usize> {
    if dim == 0 || !features.len().is_multiple_of(dim) {
        return Err(invalid(
            op,
            format!(
                "{what}: {} values do not make whole vectors of dimension {dim}",
                features.len()
            ),
        ));
    }
    Ok(features.len() / dim)
}

/// The squared distance from each of the row-major vectors to its k-th nearest neighbour among the others.
pub fn knn_squared_radii(features: &[f32], dim: usize, k: usize) -> Result<Vec<f32>> {
    let n = check_rows("knn_squared_radii", "features", features, dim)?;
    if k == 0 || n <= k {
        return Err(invalid(
            "knn_squared_radii",
            format!("the {k}-th nearest neighbour needs k ≥ 1 and more than k vectors, got {n}"),
        ));
    }
    let rows: Vec<&[f32]> = features.chunks_exact(dim).collect();
    Ok((0..n)
        .into_par_iter()
        .map_init(
            || Vec::with_capacity(n - 1),
            |others, i| {
                others.clear();
                others.extend(
                    rows.iter()
                        .enumerate()
                        .filter(|&(j, _)| j != i)
                        .map(|(_, r)| squared_distance(rows[i], r)),
                );
                *others.select_nth_unstable_by(k - 1, f32::total_cmp).1
            },
        )
        .collect())
}

/// The fraction of `points` that lie in at least one ball (centre `centres[j]`, squared radius `squared_radii[j]`).
pub fn fraction_inside(
    points: &[f32],
    centres: &[f32],
    squared_radii: &[f32],
    dim: usize,
) -> Result<f64> {
    const OP: &str = "fraction_inside";
    let n = check_rows(OP, "points", points, dim)?;
    let m = check_rows(OP, "centres", centres, dim)?;
    if m != squared_radii.len() || n == 0 {
        return Err(invalid(
            OP,
            format!("{m} centres with {} radii and {n} points (need one radius per centre and some points)", squared_radii.len()),
        ));
    }
    let inside = points
        .par_chunks_exact(dim)
        .filter(|p| {
            centres
                .chunks_exact(dim)
                .zip(squared_radii)
                .any(|(c, &r2)| squared_distance(p, c) <= r2)
        })
        .count();
    Ok(inside as f64 / n as f64)
}

/// Precision and recall of `generated` against `real`, both row-major sets of `dim`-vectors, with k-NN radii.
/// `real_squared_radii` may carry the real set's radii from an earlier call of [`knn_squared_radii`].
pub fn precision_recall(
    real: &[f32],
    real_squared_radii: Option<&[f32]>,
    generated: &[f32],
    dim: usize,
    k: usize,
) -> Result<PrecisionRecall> {
    let real_radii = match real_squared_radii {
        Some(r) => r.to_vec(),
        None => knn_squared_radii(real, dim, k)?,
    };
    let generated_radii = knn_squared_radii(generated, dim, k)?;
    Ok(PrecisionRecall {
        precision: fraction_inside(generated, real, &real_radii, dim)?,
        recall: fraction_inside(real, generated, &generated_radii, dim)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SplitMix64;

    fn cloud(count: usize, dim: usize, centre: f32, seed: u64) -> Vec<f32> {
        let mut rng = SplitMix64::new(seed);
        (0..count * dim)
            .map(|_| centre + rng.next_f64() as f32)
            .collect()
    }

    #[test]
    fn identical_sets_have_precision_and_recall_one() {
        let x = cloud(200, 13, 0.0, 1);
        let pr = precision_recall(&x, None, &x, 13, DEFAULT_K).unwrap();
        assert_eq!((pr.precision, pr.recall), (1.0, 1.0));
    }

    #[test]
    fn disjoint_far_sets_have_precision_and_recall_zero() {
        let (real, far) = (cloud(150, 9, 0.0, 2), cloud(120, 9, 100.0, 3));
        let pr = precision_recall(&real, None, &far, 9, DEFAULT_K).unwrap();
        assert_eq!((pr.precision, pr.recall), (0.0, 0.0));
    }

    #[test]
    fn a_collapsed_generator_has_full_precision_and_low_recall() {
        // Generated points are copies of 10 real points: all of them are real-looking, but their balls (radius 0,
        // each point having ≥ 3 exact duplicates) cover only those 10 of the 400 real points.
        let real = cloud(400, 6, 0.0, 4);
        let generated: Vec<f32> = real[..10 * 6].repeat(4);
        let pr = precision_recall(&real, None, &generated, 6, DEFAULT_K).unwrap();
        assert_eq!(pr.precision, 1.0);
        assert_eq!(pr.recall, 10.0 / 400.0);
    }

    #[test]
    fn radii_match_a_hand_computation() {
        // Points on a line at 0, 1, 3, 7: the 2nd-nearest of 0 is 3 (distances 1, 3, 7), of 1 is 3 (1, 2, 6),
        // of 3 is 0 (2, 3, 4), of 7 is 1 (4, 6, 7).
        let r = knn_squared_radii(&[0.0, 1.0, 3.0, 7.0], 1, 2).unwrap();
        assert_eq!(r, vec![9.0, 4.0, 9.0, 36.0]);
        // And the squared distance of 19-vectors (two chunks of 8 and a tail of 3).
        let a: Vec<f32> = (0..19).map(|i| i as f32).collect();
        assert_eq!(
            squared_distance(&a, &[0.0; 19]),
            (0..19).map(|i| (i * i) as f32).sum::<f32>()
        );
    }

    #[test]
    fn too_few_points_or_ragged_sets_are_refused() {
        assert!(knn_squared_radii(&[0.0, 1.0, 2.0], 1, 3)
            .unwrap_err()
            .to_string()
            .contains("more than k"));
        assert!(precision_recall(&[0.0; 10], None, &[0.0; 7], 2, 1).is_err());
        assert!(fraction_inside(&[0.0; 4], &[0.0; 4], &[1.0], 2).is_err());
    }
}
