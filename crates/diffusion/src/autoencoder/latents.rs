//! The autoencoder as latent diffusion uses it: each training image's posterior, cached once per run, a fresh
//! scaled latent drawn from it at every step, and the scaling factor that gives those latents about unit variance.
//!
//! ```text
//! cache:    (μ, log σ²) = encode(x) for every training image         one encoder pass over the dataset
//! step s:   z = μ + σ·ε,  ε ~ N(0, I) from Philox(seed ⊕ LATENT_KEY) at offset s·B·L·h·w
//!           x0 = (z − shift_factor)·scaling_factor                     what the denoiser learns to generate
//! scaling:  scaling_factor = 1 / std(z) over posterior samples of the first training images
//! ```
//!
//! Drawing z per step rather than caching one sample keeps LDM's recipe (the denoiser sees the posterior's spread,
//! not one point of it) at the cost of one fused element-wise pass; the encoder runs once per process.

use crate::data::Dataset;
use crate::error::{Error, Result};
use diffuse_models::vae::AutoencoderKL;
use diffuse_tensor::{Device, Tensor};

/// "latent" in ASCII, xor-ed into the run's seed to give the posterior samples their own Philox key.
pub const LATENT_KEY: u64 = 0x6C61_7465_6E74;
/// Images per encoder batch when caching posteriors or measuring the scaling.
pub const ENCODE_BATCH: usize = 250;

/// How a denoiser's data relate to an autoencoder's latents: `x0 = (z − shift)·scale`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LatentSpace {
    pub latent_channels: usize,
    pub scaling_factor: f64,
    pub shift_factor: Option<f64>,
}

impl LatentSpace {
    /// The space of `vae`'s config.
    pub fn of(vae: &AutoencoderKL) -> LatentSpace {
        let c = vae.config();
        LatentSpace {
            latent_channels: c.latent_channels,
            scaling_factor: c.scaling_factor,
            shift_factor: c.shift_factor,
        }
    }

    /// Scaled latents `(μ + σ·ε − shift)·scale` from a batch of cached moments (B, 2L, h, w) (μ, then log σ²),
    /// with ε from Philox stream `key` at `offset`.
    pub fn sample(&self, moments: &Tensor, key: u64, offset: u64) -> Result<Tensor> {
        let l = self.latent_channels;
        let shape = moments.shape();
        if shape.len() != 4 || shape[1] != 2 * l {
            return Err(Error::train(
                "latents",
                format!(
                    "cached posterior moments must be (B, {}, h, w), got {shape:?}",
                    2 * l
                ),
            ));
        }
        let mean = moments.narrow(1, 0, l)?;
        let std = moments.narrow(1, l, l)?.mul_scalar(0.5)?.exp()?;
        let latent_shape = [shape[0], l, shape[2], shape[3]];
        let eps = Tensor::randn(&latent_shape, key, offset, moments.device())?;
        let z = mean.add(&std.mul(&eps)?)?;
        let scale = self.scaling_factor as f32;
        let shift = self.shift_factor.unwrap_or(0.0) as f32;
        Ok(z.affine(scale, -shift * scale)?)
    }
}

/// `(key, offset)` of step `step`'s posterior noise for batches of `numel` latent elements.
pub fn latent_stream(seed: u64, step: u64, numel: usize) -> Result<(u64, u64)> {
    let offset = step.checked_mul(numel as u64).ok_or_else(|| {
        Error::train(
            "step",
            format!("latent noise offset of step {step} × {numel} elements overflows u64"),
        )
    })?;
    Ok((seed ^ LATENT_KEY, offset))
}

/// Checks that `vae` reads `data`'s images: channels and size equal to its `in_channels` and `sample_size`.
pub fn check_images(vae: &AutoencoderKL, data: &Dataset) -> Result<()> {
    let c = vae.config();
    let (h, w) = c.sample_size.height_width();
    if (data.channels, data.height, data.width) != (c.in_channels, h, w) {
        return Err(Error::train(
            "data",
            format!(
                "the images are {}×{}×{} but the autoencoder was made for {}×{h}×{w} images (its in_channels and \
                 sample_size)",
                data.channels, data.height, data.width, c.in_channels
            ),
        ));
    }
    Ok(())
}

/// The posterior moments of images `start .. start + count` of `data`: (count, 2L, h, w).
fn moments_of(
    vae: &AutoencoderKL,
    data: &Dataset,
    start: usize,
    count: usize,
    device: Device,
) -> Result<Tensor> {
    let n = data.image_len();
    let pixels = &data.images[start * n..(start + count) * n];
    let images = Tensor::from_slice(
        pixels,
        &[count, data.channels, data.height, data.width],
        device,
    )?;
    let (mean, logvar) = vae.encode_tensor(&images)?;
    Ok(Tensor::concat(&[&mean, &logvar], 1)?)
}

/// Every image's posterior moments under `vae` as a dataset of (2L, h, w) "images" (μ then log σ²) with the same
/// labels, for a diffusion trainer in [`LatentSpace`]; `progress` hears the images done so far.
pub fn encode_posteriors(
    vae: &AutoencoderKL,
    data: &Dataset,
    mut progress: impl FnMut(usize),
) -> Result<Dataset> {
    check_images(vae, data)?;
    let device = vae.device();
    let mut values = Vec::new();
    let mut latent_shape = [0; 3];
    for start in (0..data.len()).step_by(ENCODE_BATCH) {
        let count = ENCODE_BATCH.min(data.len() - start);
        let moments = moments_of(vae, data, start, count, device)?;
        latent_shape = [moments.shape()[1], moments.shape()[2], moments.shape()[3]];
        values.extend(moments.to_vec()?);
        progress(start + count);
    }
    let [channels, height, width] = latent_shape;
    Ok(Dataset {
        images: values,
        labels: data.labels.clone(),
        num_classes: data.num_classes,
        channels,
        height,
        width,
        summary: format!("{} latents of {channels}×{height}×{width}", data.len()),
    })
}

/// 1 / the standard deviation of posterior samples `μ + σ·ε` of the first `count` images of `data` (all of them if
/// fewer), every latent element pooled, ε from Philox stream `seed ⊕ LATENT_KEY` at offset 0: LDM's choice of
/// `scaling_factor`, which makes the latents a diffusion model sees have about unit variance.
pub fn measure_scaling_factor(
    vae: &AutoencoderKL,
    data: &Dataset,
    count: usize,
    seed: u64,
) -> Result<f64> {
    check_images(vae, data)?;
    let count = count.min(data.len());
    let device = vae.device();
    let unit = LatentSpace {
        scaling_factor: 1.0,
        shift_factor: None,
        ..LatentSpace::of(vae)
    };
    let (mut n, mut sum, mut sum_sq) = (0usize, 0f64, 0f64);
    for start in (0..count).step_by(ENCODE_BATCH) {
        let batch = ENCODE_BATCH.min(count - start);
        let moments = moments_of(vae, data, start, batch, device)?;
        let z = unit.sample(&moments, seed ^ LATENT_KEY, n as u64)?;
        for v in z.to_vec()? {
            sum += f64::from(v);
            sum_sq += f64::from(v) * f64::from(v);
            n += 1;
        }
    }
    let mean = sum / n as f64;
    let variance = (sum_sq - n as f64 * mean * mean) / (n as f64 - 1.0).max(1.0);
    if !(variance > 0.0 && variance.is_finite()) {
        return Err(Error::train(
            "scaling_factor",
            format!("the latents of {count} images have variance {variance}; cannot scale them"),
        ));
    }
    Ok(1.0 / variance.sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_is_the_scaled_reparameterised_draw() {
        // μ = 1, log σ² = ln 4 (σ = 2) for one latent element; scale 0.5, shift 0.25.
        let moments = Tensor::from_slice(&[1.0, 4f32.ln()], &[1, 2, 1, 1], Device::Cpu).unwrap();
        let space = LatentSpace {
            latent_channels: 1,
            scaling_factor: 0.5,
            shift_factor: Some(0.25),
        };
        let got = space.sample(&moments, 9, 3).unwrap().to_vec().unwrap()[0];
        let eps = Tensor::randn(&[1, 1, 1, 1], 9, 3, Device::Cpu)
            .unwrap()
            .to_vec()
            .unwrap()[0];
        let want = ((1.0 + 2.0 * eps) - 0.25) * 0.5;
        assert!((got - want).abs() < 1e-6, "{got} vs {want}");
        let err = space
            .sample(
                &Tensor::zeros(&[1, 3, 1, 1], diffuse_tensor::DType::F32, Device::Cpu).unwrap(),
                0,
                0,
            )
            .unwrap_err()
            .to_string();
        assert!(err.contains("(B, 2, h, w)"), "{err}");
    }
}
