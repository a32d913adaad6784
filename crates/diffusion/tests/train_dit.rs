//! Training a DiT that predicts its variance: the hybrid objective reaches the variance outputs only through λ, and
//! a run resumes from its checkpoint bit for bit.

use diffuse_diffusion::data::Dataset;
use diffuse_diffusion::schedule::{PredictionType, SchedulerConfig, VarianceType};
use diffuse_diffusion::train::{LossWeighting, TrainConfig, Trainer};
use diffuse_models::dit::DiTConfig;
use diffuse_models::{Backbone, BackboneConfig};
use diffuse_nn::{EmaWarmup, LrSchedule, ParamStore};
use std::path::PathBuf;

/// 16 images of 4×4 with labels 0..2: a bright quarter whose place depends on the class.
fn tiny_dataset() -> Dataset {
    let mut pixels = Vec::new();
    let mut labels = Vec::new();
    for i in 0..16u32 {
        let class = i % 2;
        for y in 0..4u32 {
            for x in 0..4u32 {
                let inside = x / 2 == class && y < 2;
                pixels.push(if inside {
                    240
                } else {
                    ((i * 5 + x + 3 * y) % 50) as u8
                });
            }
        }
        labels.push(class);
    }
    Dataset::from_u8(&pixels, Some(labels), 1, 4, 4).unwrap()
}

fn dit() -> BackboneConfig {
    // 4×4 pixels in 2×2 patches: 4 tokens of width 8 (2 heads of 4), two blocks, 2 classes and the null class 2.
    BackboneConfig::DiT(DiTConfig::sized(8, 2, 2, 2, (1, 4), 2, true).unwrap())
}

fn build(store: &ParamStore) -> diffuse_models::Result<Backbone> {
    Backbone::new(dit(), store)
}

fn config(vlb_weight: f64) -> TrainConfig {
    TrainConfig {
        seed: 7,
        steps: 6,
        batch_size: 4,
        lr: LrSchedule::Constant { lr: 1e-2 },
        adam_beta1: 0.9,
        adam_beta2: 0.999,
        adam_eps: 1e-8,
        weight_decay: 0.01,
        grad_clip: Some(1.0),
        ema_decay: 0.99,
        ema_warmup: EmaWarmup::Fraction,
        scheduler: SchedulerConfig {
            num_train_timesteps: 20,
            prediction_type: PredictionType::Epsilon,
            variance_type: VarianceType::LearnedRange,
            ..SchedulerConfig::default()
        },
        loss_weighting: LossWeighting::Uniform,
        importance_sampling: false,
        null_class: Some(2),
        label_dropout: 0.25,
        caption_dropout: 0.0,
        hflip: false,
        crop_pad: 0,
        max_nonfinite: 2,
        vlb_weight,
        image_condition: None,
        score_matching: None,
    }
}

/// The rows of the final projection that produce the variance channels: with patch 2 and 2 output channels, row
/// `(a·2 + b)·2 + c` gives channel c of pixel (a, b) of a patch; c = 1 is the variance.
fn variance_rows(trainer: &Trainer<Backbone>) -> Vec<f32> {
    let weight = trainer.store.get("proj_out_2.weight").unwrap();
    let values = weight.tensor().to_vec().unwrap();
    let width = weight.shape()[1];
    values
        .chunks(width)
        .enumerate()
        .filter(|(row, _)| row % 2 == 1)
        .flat_map(|(_, r)| r.to_vec())
        .collect()
}

#[test]
fn the_variance_outputs_learn_only_through_the_variational_term() {
    let data = tiny_dataset();
    for (lambda, learns) in [(0.0, false), (0.001, true)] {
        let mut trainer = Trainer::new(config(lambda), build).unwrap();
        for _ in 0..6 {
            let report = trainer.step(&data).unwrap();
            assert!(
                !report.skipped && report.loss.is_finite(),
                "λ = {lambda}: {report:?}"
            );
        }
        // adaLN-Zero starts the final projection at 0; without L_vlb the variance rows get no gradient, and AdamW
        // (moments 0, decay of 0) leaves them exactly there.
        let moved = variance_rows(&trainer).iter().any(|&v| v != 0.0);
        assert_eq!(moved, learns, "λ = {lambda}");
    }
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("diffuse-train-dit-{name}-{}", std::process::id()));
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
fn a_dit_run_resumes_from_its_checkpoint_bit_for_bit() {
    let data = tiny_dataset();
    let dir = temp_dir("resume");
    let mut straight = Trainer::new(config(0.001), build).unwrap();
    for _ in 0..6 {
        straight.step(&data).unwrap();
    }
    let mut first = Trainer::new(config(0.001), build).unwrap();
    for _ in 0..3 {
        first.step(&data).unwrap();
    }
    first.save_checkpoint(&dir, 1).unwrap();
    drop(first);
    let mut resumed = Trainer::resume(&dir, build).unwrap();
    for _ in 0..3 {
        resumed.step(&data).unwrap();
    }
    assert_eq!(values(&resumed.store), values(&straight.store));
    assert_eq!(values(resumed.ema_store()), values(straight.ema_store()));
    assert_eq!(resumed.state(), straight.state());
    std::fs::remove_dir_all(&dir).unwrap();
}
