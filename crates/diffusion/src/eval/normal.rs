//! The Gaussian pieces of the variational bound, in f64: the complementary error function and the normal CDF in log
//! space, the discretised Gaussian likelihood of a pixel, and the KL divergence of two Gaussians.
//!
//! ```text
//! erfc(x) = 1 − erf(x),                 erf(x) = (2/√π)·e^{−x²}·Σₙ 2ⁿ x^{2n+1} / (1·3·5···(2n+1))      (x < 2)
//! erfc(x) = e^{−x²}/√π · 1/(x + ½/(x + 1/(x + (3/2)/(x + 2/(x + …)))))                             (x ≥ 2)
//! Φ(z)    = ½·erfc(−z/√2)
//! P(x | μ, σ) = Φ((x + 1/255 − μ)/σ) − Φ((x − 1/255 − μ)/σ)   (bin of width 2/255; the end bins reach ±∞)
//! KL(N(μ₁, v₁) ‖ N(μ₂, v₂)) = ½·(ln(v₂/v₁) + (v₁ + (μ₁ − μ₂)²)/v₂ − 1)
//! ```
//!
//! The series has positive terms only (no cancellation); the continued fraction (Laplace's, evaluated bottom-up)
//! converges fast for x ≥ 2. Its logarithm is taken analytically, `ln erfc x = −x² − ln(√π·f)`, so ln Φ stays finite
//! far into the tail where Φ itself underflows.

use std::f64::consts::{LN_2, PI, SQRT_2};

/// Terms of the continued fraction: at x = 2 the 60th convergent agrees with erfc to 2⁻⁵² relative.
const FRACTION_TERMS: usize = 60;

/// Half the width of one of the 256 pixel bins over [−1, 1].
pub const HALF_BIN: f64 = 1.0 / 255.0;

/// The continued fraction denominator f(x), x ≥ 2, with erfc(x) = e^{−x²}/(√π·f(x)).
fn erfc_fraction(x: f64) -> f64 {
    (1..=FRACTION_TERMS)
        .rev()
        .fold(x, |f, k| x + (k as f64 / 2.0) / f)
}

/// erf(x) for 0 ≤ x < 2 by its series of positive terms.
fn erf_series(x: f64) -> f64 {
    let x2 = x * x;
    let (mut term, mut sum, mut n) = (x, x, 0.0);
    while term > sum * 1e-17 {
        term *= 2.0 * x2 / (2.0 * n + 3.0);
        sum += term;
        n += 1.0;
    }
    2.0 / PI.sqrt() * (-x2).exp() * sum
}

/// The complementary error function.
pub fn erfc(x: f64) -> f64 {
    if x.is_nan() {
        f64::NAN
    } else if x < 0.0 {
        2.0 - erfc(-x)
    } else if x < 2.0 {
        1.0 - erf_series(x)
    } else {
        (-x * x).exp() / (PI.sqrt() * erfc_fraction(x))
    }
}

/// ln erfc(x), finite for every finite x.
pub fn log_erfc(x: f64) -> f64 {
    if x < 2.0 {
        erfc(x).ln()
    } else if x.is_infinite() {
        f64::NEG_INFINITY
    } else {
        -x * x - (PI.sqrt() * erfc_fraction(x)).ln()
    }
}

/// ln Φ(z), the log of the standard normal CDF.
pub fn log_normal_cdf(z: f64) -> f64 {
    -LN_2 + log_erfc(-z / SQRT_2)
}

/// ln P(x | μ, σ): the log-probability that a Gaussian N(μ, σ²) lands in the bin of the pixel value `x` (one of
/// the 256 levels over [−1, 1]). The difference of CDFs is taken on the side of the mean away from the bin (by the
/// symmetry Φ(b) − Φ(a) = Φ(−a) − Φ(−b)) and in log space, `ln Φ(b) + ln(1 − e^{ln Φ(a) − ln Φ(b)})`, so it keeps
/// its relative precision in both tails.
pub fn discretised_gaussian_log_likelihood(x: f64, mean: f64, std: f64) -> f64 {
    // The end bins are open: below −1 + 1/255 and above 1 − 1/255.
    let upper = if x > 1.0 - HALF_BIN {
        f64::INFINITY
    } else {
        (x + HALF_BIN - mean) / std
    };
    let lower = if x < -1.0 + HALF_BIN {
        f64::NEG_INFINITY
    } else {
        (x - HALF_BIN - mean) / std
    };
    let (a, b) = if lower > 0.0 {
        (-upper, -lower)
    } else {
        (lower, upper)
    };
    let (log_a, log_b) = (log_normal_cdf(a), log_normal_cdf(b));
    log_b + (-(log_a - log_b).exp()).ln_1p()
}

/// KL(N(μ₁, v₁) ‖ N(μ₂, v₂)) in nats, for variances v₁, v₂ > 0.
pub fn gaussian_kl(mean1: f64, var1: f64, mean2: f64, var2: f64) -> f64 {
    let d = mean1 - mean2;
    0.5 * ((var2 / var1).ln() + (var1 + d * d) / var2 - 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `assert` that `got` is within `rel` of `want`, relatively.
    fn close(got: f64, want: f64, rel: f64) {
        assert!((got - want).abs() <= rel * want.abs(), "{got} vs {want}");
    }

    #[test]
    fn erfc_matches_tabulated_values_across_both_branches() {
        // Values of torch.special.erfc in f64 (Cephes). 1 − erf loses up to 2⁻⁵³/erfc(2) ≈ 2e-14 relative below x = 2.
        let table = [
            (0.0, 1.0),
            (0.3, 0.6713732405408726),
            (1.0, 0.15729920705028513),
            (2.5, 0.0004069520174449589),
            (2.99, 2.3525603080640195e-05),
            (3.0, 2.209049699858544e-05),
            (3.01, 2.0738963637132634e-05),
            (5.0, 1.537459794428035e-12),
            (10.0, 2.088487583762545e-45),
            (26.0, 5.663192408856143e-296),
            (-1.0, 1.8427007929497148),
            (-4.0, 1.999999984582742),
        ];
        for (x, want) in table {
            close(erfc(x), want, 1e-13);
        }
    }

    #[test]
    fn log_normal_cdf_stays_finite_deep_in_the_tail() {
        // torch.special.log_ndtr in f64.
        let table = [
            (-40.0, -804.6084420137539),
            (-5.0, -15.064998393988727),
            (-1.0, -1.841021645009264),
            (0.0, -std::f64::consts::LN_2),
            (2.0, -0.02301290932896348),
        ];
        for (z, want) in table {
            close(log_normal_cdf(z), want, 1e-12);
        }
    }

    #[test]
    fn discretised_gaussian_matches_hand_computations() {
        // (x, μ, σ, ln P) from torch's log_ndtr in f64 with the same bins.
        let table = [
            (0.0, 0.0, 0.01, -1.1872543892353478),
            (0.0, 0.02, 0.01, -3.0887267195893955),
            (1.0, 0.9, 0.05, -3.599769193599238),
            (-1.0, -0.5, 0.1, -14.862349765825423),
            (-1.0, 0.5, 0.01, -11197.180364788252),
            (0.5, 0.2, 0.01, -442.6203029548796),
            (3.0 / 255.0, 0.0, 0.5, -5.074194780601087),
            (1.0, 1.0, 0.01, -0.4268999377263294),
        ];
        for (x, mean, std, want) in table {
            close(
                discretised_gaussian_log_likelihood(x, mean, std),
                want,
                1e-10,
            );
        }
    }

    #[test]
    fn discretised_gaussian_sums_to_one_over_the_levels() {
        for (mean, std) in [(0.0, 0.01), (0.7, 0.3), (-1.2, 0.05)] {
            let total: f64 = (0..256)
                .map(|k| {
                    discretised_gaussian_log_likelihood(k as f64 / 127.5 - 1.0, mean, std).exp()
                })
                .sum();
            assert!((total - 1.0).abs() < 1e-12, "{total}");
        }
    }

    #[test]
    fn gaussian_kl_matches_its_closed_form_cases() {
        assert_eq!(gaussian_kl(0.3, 2.0, 0.3, 2.0), 0.0);
        // Equal variances: (μ₁ − μ₂)²/(2v).
        close(gaussian_kl(1.0, 0.5, 0.0, 0.5), 1.0, 1e-15);
        // KL(N(0, 1) ‖ N(0, 4)) = ½(ln 4 + 1/4 − 1).
        close(
            gaussian_kl(0.0, 1.0, 0.0, 4.0),
            0.5 * (4f64.ln() - 0.75),
            1e-15,
        );
    }
}
