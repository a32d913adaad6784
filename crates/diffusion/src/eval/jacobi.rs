//! Eigendecomposition of a real symmetric matrix, `A = V·diag(λ)·Vᵀ`, by the cyclic Jacobi method, in f64.
//!
//! Each rotation J(p, q, θ) in the (p, q) plane is chosen so that `(JᵀAJ)_pq = 0` (Golub & Van Loan, *Matrix
//! Computations*, §8.5): with `τ = (a_qq − a_pp)/(2a_pq)` take the smaller root `t = sign(τ)/(|τ| + √(1 + τ²))` of
//! `t² + 2τt − 1 = 0`, then `c = 1/√(1 + t²)`, `s = t·c`. A sweep visits every pair p < q in row order; the
//! off-diagonal Frobenius norm falls quadratically once small, so a handful of sweeps reach rounding level. The
//! accumulated product of the rotations is V, whose columns are the eigenvectors; the diagonal holds λ.
//!
//! Jacobi is slower than tridiagonalisation + QR (about 2n³ flops a sweep, against 9n³ once), but short, and it computes
//! small eigenvalues to high relative accuracy, which the Fréchet distance of nearly singular covariances needs.

/// At most this many sweeps (convergence normally takes fewer than 15 for n ≤ 1000).
const MAX_SWEEPS: usize = 60;

/// The eigenvalues and eigenvectors of a symmetric matrix.
#[derive(Clone, Debug, PartialEq)]
pub struct SymmetricEigen {
    pub n: usize,
    /// λ_0, …, λ_{n−1}, in no particular order.
    pub values: Vec<f64>,
    /// Row-major n×n V; column `j` is the unit eigenvector of `values[j]`.
    pub vectors: Vec<f64>,
}

/// Decomposes the symmetric row-major `n×n` matrix `a` (only its symmetric part matters: the rotations read both
/// triangles, which must agree).
pub fn symmetric_eigen(a: &[f64], n: usize) -> SymmetricEigen {
    debug_assert_eq!(a.len(), n * n);
    let mut a = a.to_vec();
    let mut v = vec![0.0; n * n];
    for i in 0..n {
        v[i * n + i] = 1.0;
    }
    let total: f64 = a.iter().map(|x| x * x).sum();
    for _ in 0..MAX_SWEEPS {
        let off: f64 = (0..n)
            .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[i * n + j] * a[i * n + j])
            .sum();
        if off <= total * (f64::EPSILON * f64::EPSILON) || off == 0.0 {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                rotate(&mut a, &mut v, n, p, q);
            }
        }
    }
    SymmetricEigen {
        n,
        values: (0..n).map(|i| a[i * n + i]).collect(),
        vectors: v,
    }
}

/// Zeroes `a[p][q]` and `a[q][p]` by `A ← JᵀAJ`, and accumulates `V ← VJ`.
fn rotate(a: &mut [f64], v: &mut [f64], n: usize, p: usize, q: usize) {
    let apq = a[p * n + q];
    if apq == 0.0 {
        return;
    }
    let tau = (a[q * n + q] - a[p * n + p]) / (2.0 * apq);
    let t = if tau >= 0.0 {
        1.0 / (tau + (1.0 + tau * tau).sqrt())
    } else {
        -1.0 / (-tau + (1.0 + tau * tau).sqrt())
    };
    let c = 1.0 / (1.0 + t * t).sqrt();
    let s = t * c;
    // Columns p and q of A and of V: [col_p, col_q] ← [c·col_p − s·col_q, s·col_p + c·col_q].
    for m in [&mut *a, &mut *v] {
        for k in 0..n {
            let (xp, xq) = (m[k * n + p], m[k * n + q]);
            m[k * n + p] = c * xp - s * xq;
            m[k * n + q] = s * xp + c * xq;
        }
    }
    // Rows p and q of A likewise.
    for k in 0..n {
        let (xp, xq) = (a[p * n + k], a[q * n + k]);
        a[p * n + k] = c * xp - s * xq;
        a[q * n + k] = s * xp + c * xq;
    }
    a[p * n + q] = 0.0;
    a[q * n + p] = 0.0;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SplitMix64;

    fn random_symmetric(n: usize, seed: u64) -> Vec<f64> {
        let mut rng = SplitMix64::new(seed);
        let mut a = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..=i {
                let x = rng.next_f64() * 2.0 - 1.0;
                a[i * n + j] = x;
                a[j * n + i] = x;
            }
        }
        a
    }

    #[test]
    fn eigendecomposition_reconstructs_the_matrix_with_orthonormal_vectors() {
        for (n, seed) in [(1, 1), (2, 2), (5, 3), (17, 4), (40, 5)] {
            let a = random_symmetric(n, seed);
            let e = symmetric_eigen(&a, n);
            let v = &e.vectors;
            for i in 0..n {
                for j in 0..n {
                    let vdv: f64 = (0..n)
                        .map(|k| v[i * n + k] * e.values[k] * v[j * n + k])
                        .sum();
                    let vtv: f64 = (0..n).map(|k| v[k * n + i] * v[k * n + j]).sum();
                    assert!((vdv - a[i * n + j]).abs() < 1e-12, "n={n} A[{i}][{j}]");
                    let delta = if i == j { 1.0 } else { 0.0 };
                    assert!((vtv - delta).abs() < 1e-12, "n={n} VᵀV[{i}][{j}]");
                }
            }
        }
    }

    #[test]
    fn eigenvalues_of_a_known_matrix_are_exact() {
        // [[2, 1], [1, 2]] has eigenvalues 1 and 3; diag(3, −1, 0) its own diagonal.
        let mut e = symmetric_eigen(&[2.0, 1.0, 1.0, 2.0], 2).values;
        e.sort_by(f64::total_cmp);
        assert!((e[0] - 1.0).abs() < 1e-15 && (e[1] - 3.0).abs() < 1e-15);
        let d = symmetric_eigen(&[3.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0], 3);
        assert_eq!(d.values, vec![3.0, -1.0, 0.0]);
        assert!(symmetric_eigen(&[], 0).values.is_empty());
    }
}
