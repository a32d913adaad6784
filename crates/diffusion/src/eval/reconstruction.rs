//! How faithfully an autoencoder reconstructs images: peak signal-to-noise ratio and structural similarity, per
//! image, on pixel values mapped from [−1, 1] to [0, 1] (clamped there first, as a saved image would be).
//!
//! ```text
//! PSNR(x, y) = 10·log₁₀(1 / MSE(x, y))                      dB; identical images: +∞ (reported as 100)
//! SSIM(x, y) = mean over windows of
//!     (2μ_x μ_y + C₁)(2σ_xy + C₂) / ((μ_x² + μ_y² + C₁)(σ_x² + σ_y² + C₂))
//!     μ, σ², σ_xy: Gaussian-weighted (11×11, σ = 1.5) local means, variances and covariance
//!     C₁ = (0.01)², C₂ = (0.03)²  (K₁ = 0.01, K₂ = 0.03 of the dynamic range 1)
//! ```
//!
//! SSIM follows Wang et al. 2004 and their reference code: the window slides over the positions where it fits
//! entirely ("valid", 18×18 positions on a 28×28 image), variances are the biased weighted ones, and a colour image
//! averages its channels. Both are computed in f64.

use crate::error::{Error, Result};

/// The PSNR reported for a perfect reconstruction (whose MSE is 0).
pub const PERFECT_PSNR: f64 = 100.0;
/// Side of the SSIM window, and the standard deviation of its Gaussian weights.
pub const SSIM_WINDOW: usize = 11;
pub const SSIM_SIGMA: f64 = 1.5;
const C1: f64 = 0.01 * 0.01;
const C2: f64 = 0.03 * 0.03;

/// [−1, 1] → [0, 1], clamped.
fn unit(v: f32) -> f64 {
    ((f64::from(v) + 1.0) / 2.0).clamp(0.0, 1.0)
}

/// PSNR in dB of one reconstruction `y` of the image `x` (same length, values in [−1, 1]).
pub fn psnr(x: &[f32], y: &[f32]) -> f64 {
    let mse = x
        .iter()
        .zip(y)
        .map(|(&a, &b)| (unit(a) - unit(b)).powi(2))
        .sum::<f64>()
        / x.len().max(1) as f64;
    if mse == 0.0 {
        PERFECT_PSNR
    } else {
        (10.0 * (1.0 / mse).log10()).min(PERFECT_PSNR)
    }
}

/// The normalised 1-D Gaussian weights of the SSIM window (the 2-D window is their outer product).
fn gaussian_weights() -> [f64; SSIM_WINDOW] {
    let centre = (SSIM_WINDOW / 2) as f64;
    let mut w = [0.0; SSIM_WINDOW];
    for (i, v) in w.iter_mut().enumerate() {
        *v = (-((i as f64 - centre).powi(2)) / (2.0 * SSIM_SIGMA * SSIM_SIGMA)).exp();
    }
    let total: f64 = w.iter().sum();
    w.map(|v| v / total)
}

/// SSIM of one reconstruction `y` of the image `x`, both (channels, height, width) in [−1, 1]. Images smaller than
/// the window in either side are an error.
pub fn ssim(x: &[f32], y: &[f32], channels: usize, height: usize, width: usize) -> Result<f64> {
    if height < SSIM_WINDOW || width < SSIM_WINDOW {
        return Err(Error::train(
            "ssim",
            format!(
                "{height}×{width} images are smaller than the {SSIM_WINDOW}×{SSIM_WINDOW} window"
            ),
        ));
    }
    if x.len() != channels * height * width || y.len() != x.len() {
        return Err(Error::train(
            "ssim",
            format!(
                "{} and {} values for images of {channels}×{height}×{width}",
                x.len(),
                y.len()
            ),
        ));
    }
    let w = gaussian_weights();
    let (rows, cols) = (height - SSIM_WINDOW + 1, width - SSIM_WINDOW + 1);
    let mut total = 0.0;
    for c in 0..channels {
        let plane = c * height * width;
        let at = |img: &[f32], i: usize, j: usize| unit(img[plane + i * width + j]);
        for r in 0..rows {
            for q in 0..cols {
                let (mut mx, mut my, mut xx, mut yy, mut xy) = (0.0, 0.0, 0.0, 0.0, 0.0);
                for (a, wa) in w.iter().enumerate() {
                    for (b, wb) in w.iter().enumerate() {
                        let weight = wa * wb;
                        let (u, v) = (at(x, r + a, q + b), at(y, r + a, q + b));
                        mx += weight * u;
                        my += weight * v;
                        xx += weight * u * u;
                        yy += weight * v * v;
                        xy += weight * u * v;
                    }
                }
                let (vx, vy, cov) = (xx - mx * mx, yy - my * my, xy - mx * my);
                total += (2.0 * mx * my + C1) * (2.0 * cov + C2)
                    / ((mx * mx + my * my + C1) * (vx + vy + C2));
            }
        }
    }
    Ok(total / (channels * rows * cols) as f64)
}

/// Mean PSNR and mean SSIM of `reconstructions` of `originals`, both `n` images of (channels, height, width) laid
/// out one after another.
pub fn reconstruction_quality(
    originals: &[f32],
    reconstructions: &[f32],
    (channels, height, width): (usize, usize, usize),
) -> Result<(f64, f64)> {
    let len = channels * height * width;
    if len == 0 || originals.len() != reconstructions.len() || !originals.len().is_multiple_of(len)
    {
        return Err(Error::train(
            "reconstruction_quality",
            format!(
                "{} originals and {} reconstructed values do not make whole {channels}×{height}×{width} images",
                originals.len(),
                reconstructions.len()
            ),
        ));
    }
    let n = originals.len() / len;
    let (mut p, mut s) = (0.0, 0.0);
    for (x, y) in originals
        .chunks_exact(len)
        .zip(reconstructions.chunks_exact(len))
    {
        p += psnr(x, y);
        s += ssim(x, y, channels, height, width)?;
    }
    Ok((p / n as f64, s / n as f64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn psnr_of_a_uniform_error_is_its_closed_form() {
        // Every pixel off by 0.25 in [−1, 1] = 1/8 in [0, 1] (exact in f32): MSE 1/64, PSNR 10·log₁₀ 64 dB.
        let x = vec![0.0f32; 16];
        let y = vec![0.25f32; 16];
        assert!((psnr(&x, &y) - 10.0 * 64f64.log10()).abs() < 1e-12);
        assert_eq!(psnr(&x, &x), PERFECT_PSNR);
    }

    #[test]
    fn ssim_of_constant_images_is_the_luminance_term() {
        // σ = 0 everywhere: SSIM = (2ab + C₁)/(a² + b² + C₁) with a, b the [0, 1] values.
        let (a, b) = (0.25f64, 0.75f64);
        let x = vec![(2.0 * a - 1.0) as f32; 12 * 13];
        let y = vec![(2.0 * b - 1.0) as f32; 12 * 13];
        let want = (2.0 * a * b + C1) / (a * a + b * b + C1);
        assert!((ssim(&x, &y, 1, 12, 13).unwrap() - want).abs() < 1e-12);
    }

    #[test]
    fn ssim_is_one_for_identical_images_symmetric_and_below_one_otherwise() {
        let x: Vec<f32> = (0..2 * 14 * 12)
            .map(|i| ((i * 37 % 29) as f32 / 14.0) - 1.0)
            .collect();
        let y: Vec<f32> = x
            .iter()
            .enumerate()
            .map(|(i, v)| v * 0.8 + (i % 5) as f32 * 0.05)
            .collect();
        assert!((ssim(&x, &x, 2, 14, 12).unwrap() - 1.0).abs() < 1e-12);
        let (xy, yx) = (
            ssim(&x, &y, 2, 14, 12).unwrap(),
            ssim(&y, &x, 2, 14, 12).unwrap(),
        );
        assert!((xy - yx).abs() < 1e-12 && xy < 0.99, "{xy}");
        let err = ssim(&x[..100], &y[..100], 1, 10, 10)
            .unwrap_err()
            .to_string();
        assert!(err.contains("smaller than the 11×11 window"), "{err}");
    }

    #[test]
    fn the_window_weights_sum_to_one_and_peak_at_the_centre() {
        let w = gaussian_weights();
        assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-15);
        assert!(w[5] > w[4] && w[4] == w[6]);
    }
}
