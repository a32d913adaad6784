//! Training the autoencoder: the step computes LDM's objective from the documented streams, the adversarial term
//! switches on at its start step, the perceptual term trains through the classifier, a resumed run equals an
//! uninterrupted one bit for bit, and the saved folders carry the measured scaling factor.

use diffuse_autograd::{no_grad, Var};
use diffuse_diffusion::autoencoder::latents::{encode_posteriors, latent_stream, LatentSpace};
use diffuse_diffusion::autoencoder::loss::reconstruction_error;
use diffuse_diffusion::autoencoder::{
    measure_scaling_factor, AdversarialConfig, AutoencoderTrainConfig, AutoencoderTrainer,
    Reconstruction, EMA_DIR, LIVE_DIR,
};
use diffuse_diffusion::data::Dataset;
use diffuse_diffusion::eval::{ClassifierConfig, ImageClassifier};
use diffuse_models::vae::{AutoencoderKL, AutoencoderKLConfig, PatchDiscriminatorConfig};
use diffuse_nn::{EmaWarmup, LrSchedule, ParamStore};
use diffuse_tensor::{Device, Tensor};
use std::path::PathBuf;

/// A two-level autoencoder of grey `side`×`side` images to latents of 2 channels at half the side (~8k
/// parameters).
fn tiny_vae(side: usize) -> AutoencoderKLConfig {
    AutoencoderKLConfig::from_json_str(&format!(
        r#"{{"in_channels": 1, "out_channels": 1, "latent_channels": 2, "block_out_channels": [8, 8],
            "down_block_types": ["DownEncoderBlock2D", "DownEncoderBlock2D"],
            "up_block_types": ["UpDecoderBlock2D", "UpDecoderBlock2D"],
            "norm_num_groups": 4, "sample_size": {side}}}"#
    ))
    .unwrap()
}

/// `count` pseudo-random grey `side`×`side` images with labels 0..9.
fn dataset(count: usize, side: usize) -> Dataset {
    let pixels: Vec<u8> = (0..count * side * side)
        .map(|i| ((i * 2_654_435_761) >> 7) as u8)
        .collect();
    let labels = (0..count as u32).map(|i| i % 10).collect();
    Dataset::from_u8(&pixels, Some(labels), 1, side, side).unwrap()
}

fn config() -> AutoencoderTrainConfig {
    AutoencoderTrainConfig {
        seed: 5,
        steps: 100,
        batch_size: 4,
        lr: LrSchedule::Constant { lr: 1e-3 },
        adam_beta1: 0.5,
        adam_beta2: 0.9,
        adam_eps: 1e-8,
        weight_decay: 0.0,
        grad_clip: Some(1.0),
        ema_decay: 0.999,
        ema_warmup: EmaWarmup::Fraction,
        reconstruction: Reconstruction::L1,
        kl_weight: 1e-3,
        perceptual_weight: 0.0,
        adversarial: None,
        hflip: true,
        max_nonfinite: 3,
        scale_images: 16,
    }
}

fn with_discriminator(start_step: u64) -> AutoencoderTrainConfig {
    AutoencoderTrainConfig {
        adversarial: Some(AdversarialConfig {
            discriminator: PatchDiscriminatorConfig {
                in_channels: 1,
                channels: 4,
                layers: 1,
                groups: 2,
            },
            start_step,
            weight: 0.5,
            lr: 1e-3,
        }),
        ..config()
    }
}

fn temp_dir(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("diffuse-autoencoder-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn values(store: &ParamStore) -> Vec<(String, Vec<u32>)> {
    store
        .params()
        .into_iter()
        .map(|(n, v)| {
            (
                n,
                v.tensor()
                    .to_vec()
                    .unwrap()
                    .iter()
                    .map(|x| x.to_bits())
                    .collect(),
            )
        })
        .collect()
}

#[test]
fn the_first_step_loss_is_the_objective_recomputed_from_the_documented_streams() {
    let data = dataset(12, 8);
    let config = AutoencoderTrainConfig {
        hflip: false,
        ..config()
    };
    let mut trainer =
        AutoencoderTrainer::new_on(config.clone(), tiny_vae(8), Device::Cpu, None).unwrap();
    // The same initial weights, and the batch of step 0 from the same epoch order.
    let store = ParamStore::new(config.seed, Device::Cpu);
    let model = AutoencoderKL::new(tiny_vae(8), &store).unwrap();
    let order = data.epoch(4, config.seed, 0, true).unwrap();
    let (pixels, _) = data.batch(&order.order()[..4], None).unwrap();
    let x = Var::constant(Tensor::from_vec(pixels, &[4, 1, 8, 8], Device::Cpu).unwrap());
    let (reconstruction, kl) = no_grad(|| {
        let posterior = model.encode(&x).unwrap();
        let (key, offset) = latent_stream(config.seed, 0, 4 * 2 * 4 * 4).unwrap();
        let x_hat = model
            .decode(&posterior.sample(key, offset).unwrap())
            .unwrap();
        let rec = reconstruction_error(Reconstruction::L1, &x, &x_hat).unwrap();
        let kl = posterior.kl().unwrap().mean_all().unwrap();
        (
            f64::from(rec.mean_all().unwrap().tensor().to_scalar().unwrap()),
            f64::from(kl.tensor().to_scalar().unwrap()),
        )
    });
    let report = trainer.step(&data).unwrap();
    assert!(!report.skipped);
    let tolerance = |want: f64| 1e-5 * want.abs().max(1.0);
    assert!((report.loss.reconstruction - reconstruction / 64.0).abs() < tolerance(reconstruction));
    assert!((report.loss.kl - kl).abs() < tolerance(kl));
    let total = reconstruction + config.kl_weight * kl;
    assert!(
        (report.loss.total - total).abs() < tolerance(total),
        "{report:?}"
    );
    assert_eq!(report.loss.generator, 0.0);
    // The weights moved.
    assert_ne!(values(&trainer.store), values(&store));
}

#[test]
fn training_lowers_the_reconstruction_error() {
    let data = dataset(8, 8);
    let config = AutoencoderTrainConfig {
        lr: LrSchedule::Constant { lr: 3e-3 },
        hflip: false,
        ..config()
    };
    let mut trainer = AutoencoderTrainer::new_on(config, tiny_vae(8), Device::Cpu, None).unwrap();
    let first = trainer.step(&data).unwrap().loss.reconstruction;
    let mut last = first;
    for _ in 0..40 {
        last = trainer.step(&data).unwrap().loss.reconstruction;
    }
    assert!(
        last < 0.8 * first,
        "per-pixel L1 went from {first} to {last}"
    );
}

#[test]
fn the_discriminator_switches_on_at_its_start_step() {
    let data = dataset(12, 8);
    let mut trainer =
        AutoencoderTrainer::new_on(with_discriminator(2), tiny_vae(8), Device::Cpu, None).unwrap();
    assert!(trainer.discriminator_numel() > 0);
    for step in 0..4 {
        let report = trainer.step(&data).unwrap();
        if step < 2 {
            assert_eq!(
                (report.loss.generator, report.loss.adaptive_weight),
                (0.0, 0.0)
            );
            assert_eq!(report.loss.discriminator, 0.0);
        } else {
            assert!(report.loss.adaptive_weight > 0.0, "{report:?}");
            // The hinge loss of an untrained critic is near 1 (logits near 0).
            assert!(
                report.loss.discriminator > 0.2 && report.loss.discriminator < 3.0,
                "{report:?}"
            );
            let want = report.loss.total - report.loss.adaptive_weight * report.loss.generator;
            assert!(want.is_finite());
        }
    }
}

#[test]
fn the_perceptual_term_trains_through_the_frozen_classifier() {
    let data = dataset(4, 28);
    let config = AutoencoderTrainConfig {
        perceptual_weight: 0.1,
        batch_size: 2,
        ..config()
    };
    let classifier =
        ImageClassifier::new(ClassifierConfig::fashion_mnist(), 3, Device::Cpu).unwrap();
    let before = values(&classifier.store);
    let classifier_store = classifier.store.clone();
    let mut trainer =
        AutoencoderTrainer::new_on(config.clone(), tiny_vae(28), Device::Cpu, Some(classifier))
            .unwrap();
    let report = trainer.step(&data).unwrap();
    assert!(
        report.loss.perceptual > 0.0 && !report.skipped,
        "{report:?}"
    );
    assert_eq!(
        values(&classifier_store),
        before,
        "the classifier must not train"
    );
    // Without a classifier (or with one and a zero weight) the run refuses to start.
    let err = AutoencoderTrainer::new_on(config, tiny_vae(28), Device::Cpu, None)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("perceptual_weight") && err.contains("no classifier"),
        "{err}"
    );
}

#[test]
fn six_steps_equal_three_then_a_checkpoint_then_three_bit_for_bit() {
    let data = dataset(12, 8);
    // The discriminator starts at step 2, so the resumed half runs it from restored state.
    let config = with_discriminator(2);
    let dir = temp_dir("resume");
    let mut straight =
        AutoencoderTrainer::new_on(config.clone(), tiny_vae(8), Device::Cpu, None).unwrap();
    let mut first = AutoencoderTrainer::new_on(config, tiny_vae(8), Device::Cpu, None).unwrap();
    for _ in 0..3 {
        straight.step(&data).unwrap();
        first.step(&data).unwrap();
    }
    let step_dir = first.save_checkpoint(&dir, 2, &data).unwrap();
    for file in [
        "vae/config.json",
        "vae/diffusion_pytorch_model.safetensors",
        "ema/diffusion_pytorch_model.safetensors",
        "optimizer.safetensors",
        "discriminator.safetensors",
        "discriminator_optimizer.safetensors",
        "trainer_state.json",
    ] {
        assert!(step_dir.join(file).is_file(), "{file} missing");
    }
    drop(first);
    let mut resumed = AutoencoderTrainer::resume_on(&dir, Device::Cpu, None).unwrap();
    assert_eq!(resumed.step_index(), 3);
    for _ in 0..3 {
        let a = resumed.step(&data).unwrap();
        let b = straight.step(&data).unwrap();
        assert_eq!(a.loss, b.loss);
    }
    assert_eq!(values(&resumed.store), values(&straight.store));
    assert_eq!(values(resumed.ema_store()), values(straight.ema_store()));
    assert_eq!(resumed.state(), straight.state());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn saved_folders_carry_the_scaling_factor_measured_for_their_weights() {
    let data = dataset(12, 8);
    let dir = temp_dir("scaling");
    let mut trainer = AutoencoderTrainer::new_on(config(), tiny_vae(8), Device::Cpu, None).unwrap();
    for _ in 0..2 {
        trainer.step(&data).unwrap();
    }
    let step_dir = trainer.save_checkpoint(&dir, 1, &data).unwrap();
    for (folder, model) in [(LIVE_DIR, &trainer.model), (EMA_DIR, &trainer.ema_model)] {
        let (loaded, _) =
            AutoencoderKL::load_diffusers(&step_dir.join(folder), Device::Cpu).unwrap();
        let measured = measure_scaling_factor(model, &data, 16, 5).unwrap();
        assert_eq!(loaded.config().scaling_factor, measured, "{folder}");
        // The latents scaled by it have unit standard deviation (over the same draws).
        let moments = encode_posteriors(&loaded, &data, |_| {}).unwrap();
        let space = LatentSpace::of(&loaded);
        let z = space
            .sample(
                &Tensor::from_slice(&moments.images, &[12, 4, 4, 4], Device::Cpu).unwrap(),
                5 ^ diffuse_diffusion::autoencoder::latents::LATENT_KEY,
                0,
            )
            .unwrap()
            .to_vec()
            .unwrap();
        let n = z.len() as f64;
        let mean = z.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
        let var = z
            .iter()
            .map(|&v| (f64::from(v) - mean).powi(2))
            .sum::<f64>()
            / (n - 1.0);
        assert!(
            (var.sqrt() - 1.0).abs() < 1e-4,
            "{folder}: std {}",
            var.sqrt()
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn images_of_another_size_than_the_autoencoders_are_refused_naming_both() {
    let store = ParamStore::new(0, Device::Cpu);
    let vae = AutoencoderKL::new(tiny_vae(8), &store).unwrap();
    let err = encode_posteriors(&vae, &dataset(4, 28), |_| {})
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("1×28×28") && err.contains("1×8×8"), "{err}");
}
