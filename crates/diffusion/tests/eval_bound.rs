//! The variational bound against independent computations, with the exact denoiser of Gaussian data.
//!
//! Data x₀ ~ N(m, s²I) has noisy marginals x_t ~ N(√ᾱ m, ᾱs² + 1 − ᾱ) and the exact posterior mean
//! `E[x₀ | x_t] = m + g·(x_t − √ᾱ m)`, `g = √ᾱ s²/(ᾱ s² + 1 − ᾱ)`, so `x₀ − x̂₀ = (1 − g√ᾱ)(x₀ − m) − g√(1 − ᾱ) ε`
//! and each KL term of the bound has a closed-form expectation over ε (it depends on x̂₀ only through
//! `E[(x₀ − x̂₀)²] = (1 − g√ᾱ)²(x₀ − m)² + g²(1 − ᾱ)`). The schedule is tiny (T = 4) so every term matters.

use diffuse_diffusion::eval::normal::discretised_gaussian_log_likelihood;
use diffuse_diffusion::eval::{variational_bound, BoundOptions};
use diffuse_diffusion::rng::SplitMix64;
use diffuse_diffusion::sampler::{Condition, DdpmVariance, Denoiser, Prediction};
use diffuse_diffusion::schedule::NoiseSchedule;
use diffuse_diffusion::Result;
use diffuse_tensor::{Device, Tensor};
use std::f64::consts::LN_2;

const BETAS: [f64; 4] = [0.1, 0.2, 0.3, 0.4];

fn schedule() -> NoiseSchedule {
    NoiseSchedule::from_betas(BETAS.to_vec()).unwrap()
}

/// The exact denoiser of N(mean, std²) data (per-dimension means), answering in any parameterisation.
struct GaussianDenoiser {
    mean: Vec<f64>,
    std: f64,
    alpha_bars: Vec<f64>,
    prediction: Prediction,
}

impl Denoiser for GaussianDenoiser {
    fn predict(&self, x_t: &Tensor, t: &[f64], _cond: Condition<'_>) -> Result<Tensor> {
        let d = self.mean.len();
        let x = x_t.to_vec()?;
        let mut out = Vec::with_capacity(x.len());
        for (row, &tk) in x.chunks_exact(d).zip(t) {
            let a = self.alpha_bars[tk as usize];
            let (ra, rs) = (a.sqrt(), (1.0 - a).sqrt());
            let g = ra * self.std * self.std / (a * self.std * self.std + 1.0 - a);
            for (&xt, &m) in row.iter().zip(&self.mean) {
                let xt = f64::from(xt);
                let x0 = m + g * (xt - ra * m);
                let eps = (xt - ra * x0) / rs;
                out.push(match self.prediction {
                    Prediction::Epsilon => eps,
                    Prediction::Sample => x0,
                    Prediction::VPrediction => ra * eps - rs * x0,
                } as f32);
            }
        }
        Ok(Tensor::from_vec(out, x_t.shape(), x_t.device())?)
    }

    fn prediction(&self) -> Prediction {
        self.prediction
    }
}

fn options(variance: DdpmVariance) -> BoundOptions {
    BoundOptions {
        variance,
        clip_denoised: false,
        seed: 11,
        batch: 64,
    }
}

/// Pixel level k of 256 as a value in [−1, 1].
fn level(k: u32) -> f64 {
    f64::from(k) / 127.5 - 1.0
}

/// Records every timestep it is asked about and answers ε̂ = 0.
struct CountingDenoiser(std::cell::RefCell<Vec<f64>>);

impl Denoiser for CountingDenoiser {
    fn predict(&self, x_t: &Tensor, t: &[f64], _cond: Condition<'_>) -> Result<Tensor> {
        self.0.borrow_mut().extend_from_slice(t);
        Ok(x_t.zeros_like()?)
    }

    fn prediction(&self) -> Prediction {
        Prediction::Epsilon
    }
}

/// A schedule of T steps gives T + 1 terms: the prior L_T (no network call), L_{t−1} for t = 2..T and the decoder
/// L₀, i.e. T network calls per image, one per code index 0..T−1 (`docs/evaluation.md` counts 51 terms for T = 50).
#[test]
fn a_bound_of_t_steps_has_t_plus_one_terms_t_of_them_from_the_network() {
    let betas: Vec<f64> = (0..50).map(|i| 0.01 + 0.004 * i as f64).collect();
    let schedule = NoiseSchedule::from_betas(betas).unwrap();
    let model = CountingDenoiser(std::cell::RefCell::new(Vec::new()));
    let image = Tensor::from_vec(vec![0.0; 4], &[1, 1, 2, 2], Device::Cpu).unwrap();
    let bound = variational_bound(
        &model,
        &schedule,
        &image,
        None,
        &options(DdpmVariance::FixedLarge),
    )
    .unwrap();
    let mut asked = model.0.borrow().clone();
    asked.sort_by(f64::total_cmp);
    assert_eq!(asked, (0..50).map(f64::from).collect::<Vec<_>>());
    let terms = bound.per_image[0];
    assert!(
        terms.prior > 0.0 && terms.diffusion > 0.0 && terms.decoder > 0.0,
        "{terms:?}"
    );
}

#[test]
fn prior_and_decoder_terms_match_hand_computations_for_a_point_mass() {
    // Data = one fixed image (s = 0): the exact denoiser always answers x̂₀ = x₀. With ᾱ = (0.9, 0.72, 0.504, 0.3024)
    // and β̃₂ = 0.2·0.1/0.28 (Python, math.erf/erfc in f64, h = 1/255, σ = √β̃₂, D = 4):
    //   prior   = Σ_d ½(ᾱ₄x² − ᾱ₄ − ln(1 − ᾱ₄)) / (D ln 2)                           = 0.16422386959471869
    //   decoder = −(2 ln Φ(h/σ) + 2 ln erf(h/(σ√2))) / (D ln 2)   (two end pixels, two inside) = 3.6998420865150456
    //   diffusion, fixed large = Σ_{t=2}^{4} ½(ln(β_t/β̃_t) + β̃_t/β_t − 1) / ln 2      = 0.4148785879999554
    let pixels = [0, 64, 128, 255].map(level);
    let image = Tensor::from_vec(
        pixels.iter().map(|&x| x as f32).collect(),
        &[1, 1, 2, 2],
        Device::Cpu,
    )
    .unwrap();
    let schedule = schedule();
    for prediction in [
        Prediction::Epsilon,
        Prediction::Sample,
        Prediction::VPrediction,
    ] {
        let model = GaussianDenoiser {
            mean: pixels.to_vec(),
            std: 0.0,
            alpha_bars: schedule.alphas_cumprod.clone(),
            prediction,
        };
        let small = variational_bound(
            &model,
            &schedule,
            &image,
            None,
            &options(DdpmVariance::FixedSmall),
        )
        .unwrap();
        let terms = small.per_image[0];
        // f32 model outputs carry ~1e-7 relative error into x̂₀.
        assert!(
            (terms.prior - 0.16422386959471869).abs() < 1e-12,
            "{prediction:?} {terms:?}"
        );
        assert!(
            (terms.decoder - 3.6998420865150456).abs() < 1e-6,
            "{prediction:?} {terms:?}"
        );
        assert!(terms.diffusion.abs() < 1e-9, "{prediction:?} {terms:?}");
        assert!((small.mean - terms.total()).abs() < 1e-15 && small.std_error.is_nan());
        let large = variational_bound(
            &model,
            &schedule,
            &image,
            None,
            &options(DdpmVariance::FixedLarge),
        )
        .unwrap();
        assert!(
            (large.per_image[0].diffusion - 0.4148785879999554).abs() < 1e-9,
            "{prediction:?} {large:?}"
        );
    }
}

/// `count` images of `dim` pixels drawn from N(mean, std²) (Box–Muller) and snapped to the 256 levels.
fn gaussian_images(count: usize, dim: usize, mean: f64, std: f64, seed: u64) -> Vec<f64> {
    let mut rng = SplitMix64::new(seed);
    (0..count * dim)
        .map(|_| {
            let (u, v) = (1.0 - rng.next_f64(), rng.next_f64());
            let z = (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos();
            let k = ((mean + std * z + 1.0) * 127.5).round().clamp(0.0, 255.0);
            level(k as u32)
        })
        .collect()
}

/// E_ε[−ln P(x₀ | x̂₀(x₁), σ)] by the trapezoid rule over ε ∈ [−8, 8] (the tails beyond weigh < 1e-15).
fn expected_decoder_nats(x0: f64, m: f64, g: f64, a: f64, sigma: f64) -> f64 {
    let (points, half_width) = (1601, 8.0);
    let h = 2.0 * half_width / (points - 1) as f64;
    (0..points)
        .map(|i| {
            let e = -half_width + i as f64 * h;
            let weight = if i == 0 || i == points - 1 { 0.5 } else { 1.0 };
            let x0_hat = m + g * (a.sqrt() * x0 + (1.0 - a).sqrt() * e - a.sqrt() * m);
            let density = (-0.5 * e * e).exp() / (2.0 * std::f64::consts::PI).sqrt();
            -weight * h * density * discretised_gaussian_log_likelihood(x0, x0_hat, sigma)
        })
        .sum()
}

#[test]
fn the_bound_of_gaussian_data_matches_its_expectation_in_closed_form() {
    let (count, dim, m, s) = (400, 16, 0.1, 0.3);
    let x0 = gaussian_images(count, dim, m, s, 5);
    let images = Tensor::from_vec(
        x0.iter().map(|&x| x as f32).collect(),
        &[count, 1, 4, 4],
        Device::Cpu,
    )
    .unwrap();
    let schedule = schedule();
    let ab = &schedule.alphas_cumprod;
    let model = GaussianDenoiser {
        mean: vec![m; dim],
        std: s,
        alpha_bars: ab.clone(),
        prediction: Prediction::Epsilon,
    };
    let g = |a: f64| a.sqrt() * s * s / (a * s * s + 1.0 - a);
    let posterior_variance = |t: usize| BETAS[t] * (1.0 - ab[t - 1]) / (1.0 - ab[t]);
    let bits = dim as f64 * LN_2;
    // The decoder's expectation depends on the pixel value only: one quadrature per level that occurs.
    let mut decoder_nats = std::collections::HashMap::new();
    for &v in &x0 {
        decoder_nats.entry(v.to_bits()).or_insert_with(|| {
            expected_decoder_nats(v, m, g(ab[0]), ab[0], posterior_variance(1).sqrt())
        });
    }
    for variance in [DdpmVariance::FixedSmall, DdpmVariance::FixedLarge] {
        let bound =
            variational_bound(&model, &schedule, &images, None, &options(variance)).unwrap();
        // Per image: the estimate minus its expectation, for the diffusion and decoder parts separately.
        let (mut diffusion_gap, mut decoder_gap) = (Vec::new(), Vec::new());
        for (terms, x) in bound.per_image.iter().zip(x0.chunks_exact(dim)) {
            let mut diffusion = 0.0;
            for t in 1..BETAS.len() {
                let (a, q_var) = (ab[t], posterior_variance(t));
                let p_var = if variance == DdpmVariance::FixedSmall {
                    q_var
                } else {
                    BETAS[t]
                };
                let coef = ab[t - 1].sqrt() * BETAS[t] / (1.0 - ab[t]);
                let gt = g(a);
                for &v in x {
                    let err2 =
                        (1.0 - gt * a.sqrt()).powi(2) * (v - m).powi(2) + gt * gt * (1.0 - a);
                    diffusion +=
                        0.5 * ((p_var / q_var).ln() + (q_var + coef * coef * err2) / p_var - 1.0);
                }
            }
            let decoder: f64 = x.iter().map(|&v| decoder_nats[&v.to_bits()]).sum();
            diffusion_gap.push(terms.diffusion - diffusion / bits);
            decoder_gap.push(terms.decoder - decoder / bits);
        }
        for (what, gap) in [("diffusion", &diffusion_gap), ("decoder", &decoder_gap)] {
            let n = gap.len() as f64;
            let mean = gap.iter().sum::<f64>() / n;
            let se = (gap.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / (n - 1.0) / n).sqrt();
            // An unbiased estimate: its mean gap lies within 4 standard errors of 0 (fails by chance < 1e-4).
            assert!(
                mean.abs() < 4.0 * se,
                "{variance:?} {what}: mean gap {mean} with standard error {se}"
            );
        }
        assert!(
            bound.std_error > 0.0 && bound.std_error < 0.1 * bound.mean,
            "{bound:?}"
        );
    }
}

#[test]
fn every_parameterisation_and_batch_size_gives_the_same_bound() {
    let (count, dim) = (6, 16);
    let x0 = gaussian_images(count, dim, -0.2, 0.4, 9);
    let images = Tensor::from_vec(
        x0.iter().map(|&x| x as f32).collect(),
        &[count, 1, 4, 4],
        Device::Cpu,
    )
    .unwrap();
    let schedule = schedule();
    let model = |prediction| GaussianDenoiser {
        mean: vec![-0.2; dim],
        std: 0.4,
        alpha_bars: schedule.alphas_cumprod.clone(),
        prediction,
    };
    let reference = variational_bound(
        &model(Prediction::Epsilon),
        &schedule,
        &images,
        None,
        &BoundOptions::default(),
    )
    .unwrap();
    for batch in [1, 5, 24, 1000] {
        let opts = BoundOptions {
            batch,
            ..BoundOptions::default()
        };
        let same = variational_bound(&model(Prediction::Epsilon), &schedule, &images, None, &opts)
            .unwrap();
        assert_eq!(same, reference, "batch {batch}");
    }
    for prediction in [Prediction::Sample, Prediction::VPrediction] {
        let other = variational_bound(
            &model(prediction),
            &schedule,
            &images,
            None,
            &BoundOptions::default(),
        )
        .unwrap();
        // x̂₀ differs only by the f32 rounding of each parameterisation's output.
        assert!(
            (other.mean - reference.mean).abs() < 1e-4 * reference.mean,
            "{prediction:?}: {} vs {}",
            other.mean,
            reference.mean
        );
    }
}

#[test]
fn bad_arguments_are_refused_with_a_reason() {
    let schedule = schedule();
    let model = GaussianDenoiser {
        mean: vec![0.0; 4],
        std: 0.5,
        alpha_bars: schedule.alphas_cumprod.clone(),
        prediction: Prediction::Epsilon,
    };
    let images = Tensor::zeros(&[2, 1, 2, 2], diffuse_tensor::DType::F32, Device::Cpu).unwrap();
    let opts = BoundOptions::default();
    let labels = variational_bound(&model, &schedule, &images, Some(&[0]), &opts).unwrap_err();
    assert!(
        labels.to_string().contains("1 class labels for 2 images"),
        "{labels}"
    );
    let one_step = NoiseSchedule::from_betas(vec![0.5]).unwrap();
    let short = variational_bound(&model, &one_step, &images, None, &opts).unwrap_err();
    assert!(short.to_string().contains("at least 2 steps"), "{short}");
    let zero_batch = BoundOptions { batch: 0, ..opts };
    assert!(variational_bound(&model, &schedule, &images, None, &zero_batch).is_err());
}
