//! The terms of LDM's autoencoder objective (Rombach et al. 2022, appendix G; Esser et al. 2021), per image:
//!
//! ```text
//! L_rec(x, x̂) = Σ_pixels ℓ(x − x̂) + w_p·D·P(x, x̂)       ℓ = |·| or (·)², D pixels per image
//! L_KL        = β·KL(q(z|x) ‖ N(0, I))                    summed over the latent
//! L_G         = −mean over patches of D_ψ(x̂)              the generator's hinge loss
//! L           = mean_b (L_rec + L_KL) + λ·L_G
//! λ           = w_adv·‖∇_W L_rec‖ / (‖∇_W L_G‖ + 10⁻⁴), clamped to [0, 10⁴]     W: the decoder's last weight
//! L_D         = ½·(mean relu(1 − D_ψ(x)) + mean relu(1 + D_ψ(x̂)))              the discriminator's hinge loss
//! ```
//!
//! `P` is a perceptual distance in the spirit of LPIPS (Zhang et al. 2018) with the shipped Fashion-MNIST
//! classifier in place of a pretrained ImageNet network and no learned per-channel weights: at every hidden layer
//! `l`, each position's activation vector is scaled to unit length, and `P` sums over layers the mean over positions
//! of the squared distance between the two images' unit vectors. LDM adds `w_p·P` to every pixel's error before
//! summing, hence the factor D.
//!
//! The adaptive weight λ balances the two gradients the decoder's last layer receives, so that the adversarial
//! term neither vanishes nor swamps the reconstruction whatever their scales.

use super::config::Reconstruction;
use crate::error::Result;
use crate::eval::ImageClassifier;
use diffuse_autograd::Var;

/// The largest adaptive weight (LDM's clamp).
pub const MAX_ADAPTIVE_WEIGHT: f64 = 1e4;

/// Σ over each image's pixels of ℓ(x − x̂), for images (N, C, H, W): (N,).
pub fn reconstruction_error(kind: Reconstruction, x: &Var, x_hat: &Var) -> Result<Var> {
    let diff = x_hat.sub(x)?;
    let per_pixel = match kind {
        Reconstruction::L1 => diff.abs()?,
        Reconstruction::Mse => diff.square()?,
    };
    Ok(per_pixel.sum(&[1, 2, 3], false)?)
}

/// Each position's activation vector of `a` (N, C, ...) scaled to unit length over C. The length is
/// `√(Σ_c a² + 10⁻¹⁰)`, which is smooth where every channel is zero (ReLU activations often are).
fn unit_channels(a: &Var) -> Result<Var> {
    let norm = a.square()?.sum(&[1], true)?.add_scalar(1e-10)?.sqrt()?;
    Ok(a.div(&norm)?)
}

/// The perceptual distance P(x, x̂) of each pair of images (N, 1, 28, 28): (N,).
pub fn perceptual_distance(classifier: &ImageClassifier, x: &Var, x_hat: &Var) -> Result<Var> {
    let ours = classifier.activations(x)?;
    let theirs = classifier.activations(x_hat)?;
    let mut total: Option<Var> = None;
    for (a, b) in ours.iter().zip(&theirs) {
        // (N, C, H, W) → (N, H, W), or (N, C) → (N,) for the fully connected layer.
        let per_position = unit_channels(a)?
            .sub(&unit_channels(b)?)?
            .square()?
            .sum(&[1], false)?;
        let positions: Vec<usize> = (1..per_position.shape().len()).collect();
        let per_image = if positions.is_empty() {
            per_position
        } else {
            per_position.mean(&positions, false)?
        };
        total = Some(match total {
            Some(t) => t.add(&per_image)?,
            None => per_image,
        });
    }
    Ok(total.expect("the classifier has four hidden layers"))
}

/// The generator's hinge loss: −mean of the discriminator's logits on reconstructions.
pub fn generator_loss(fake_logits: &Var) -> Result<Var> {
    Ok(fake_logits.mean_all()?.neg()?)
}

/// The discriminator's hinge loss: ½·(mean relu(1 − real) + mean relu(1 + fake)).
pub fn discriminator_loss(real_logits: &Var, fake_logits: &Var) -> Result<Var> {
    let real = real_logits.neg()?.add_scalar(1.0)?.relu()?.mean_all()?;
    let fake = fake_logits.add_scalar(1.0)?.relu()?.mean_all()?;
    Ok(real.add(&fake)?.mul_scalar(0.5)?)
}

/// λ before `w_adv`: `‖∇_W L_rec‖ / (‖∇_W L_G‖ + 10⁻⁴)`, clamped to [0, 10⁴].
pub fn adaptive_weight(reconstruction_grad_norm: f64, generator_grad_norm: f64) -> f64 {
    (reconstruction_grad_norm / (generator_grad_norm + 1e-4)).clamp(0.0, MAX_ADAPTIVE_WEIGHT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use diffuse_tensor::{Device, Tensor};

    fn var(values: &[f32], shape: &[usize]) -> Var {
        Var::leaf(Tensor::from_slice(values, shape, Device::Cpu).unwrap())
    }

    #[test]
    fn reconstruction_sums_each_images_error() {
        let x = var(&[0.0, 1.0, -1.0, 0.5], &[2, 1, 1, 2]);
        let x_hat = var(&[0.5, 1.0, 0.0, -0.5], &[2, 1, 1, 2]);
        let l1 = reconstruction_error(Reconstruction::L1, &x, &x_hat).unwrap();
        assert_eq!(l1.tensor().to_vec().unwrap(), [0.5, 2.0]);
        let mse = reconstruction_error(Reconstruction::Mse, &x, &x_hat).unwrap();
        assert_eq!(mse.tensor().to_vec().unwrap(), [0.25, 2.0]);
    }

    #[test]
    fn hinge_losses_match_their_definitions() {
        // real logits 2 (beyond the margin: no loss) and 0 (loss 1); fake −3 (none) and 1 (loss 2).
        let real = var(&[2.0, 0.0], &[2, 1, 1, 1]);
        let fake = var(&[-3.0, 1.0], &[2, 1, 1, 1]);
        let d = discriminator_loss(&real, &fake).unwrap();
        assert_eq!(d.tensor().to_scalar().unwrap(), 0.5 * (0.5 + 1.0));
        assert_eq!(
            generator_loss(&fake).unwrap().tensor().to_scalar().unwrap(),
            1.0
        );
    }

    #[test]
    fn the_adaptive_weight_is_the_gradient_ratio_clamped() {
        assert!((adaptive_weight(2.0, 1.0) - 2.0 / 1.0001).abs() < 1e-12);
        assert_eq!(adaptive_weight(1.0, 0.0), MAX_ADAPTIVE_WEIGHT);
        assert_eq!(adaptive_weight(0.0, 3.0), 0.0);
    }

    #[test]
    fn the_perceptual_distance_is_zero_for_equal_images_and_positive_otherwise() {
        let classifier = ImageClassifier::new(
            crate::eval::ClassifierConfig::fashion_mnist(),
            1,
            Device::Cpu,
        )
        .unwrap();
        let x = Var::constant(Tensor::randn(&[2, 1, 28, 28], 2, 0, Device::Cpu).unwrap());
        let y = Var::leaf(Tensor::randn(&[2, 1, 28, 28], 3, 0, Device::Cpu).unwrap());
        let same = perceptual_distance(&classifier, &x, &x).unwrap();
        assert_eq!(same.tensor().to_vec().unwrap(), [0.0, 0.0]);
        let d = perceptual_distance(&classifier, &x, &y).unwrap();
        let values = d.tensor().to_vec().unwrap();
        // Four layers, each at most the squared distance of two unit vectors, 4.
        assert!(values.iter().all(|&v| v > 0.0 && v <= 16.0), "{values:?}");
        let grads = d.sum_all().unwrap().backward().unwrap();
        let g = grads.get(&y).unwrap().to_vec().unwrap();
        assert!(g.iter().all(|v| v.is_finite()) && g.iter().any(|&v| v != 0.0));
    }
}
