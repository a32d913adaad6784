//! Training the cross-attention U-Net on captions: the trainer gathers each image's encoded caption, and caption
//! dropout replaces it by the empty prompt's states, drawn from the same per-step coins as label dropout.

use diffuse_diffusion::data::Dataset;
use diffuse_diffusion::schedule::SchedulerConfig;
use diffuse_diffusion::train::{CaptionContexts, LossWeighting, TrainConfig, Trainer};
use diffuse_models::unet_condition::UNet2DConditionConfig;
use diffuse_models::{Backbone, BackboneConfig};
use diffuse_nn::{EmaWarmup, LrSchedule, ParamStore};
use diffuse_tensor::{Device, Tensor};
use std::path::Path;

/// 8 images of 4×6 with two channels, each with its own grey ramp.
fn tiny_dataset() -> Dataset {
    let pixels: Vec<u8> = (0..8 * 2 * 4 * 6).map(|i| ((i * 37) % 251) as u8).collect();
    Dataset::from_u8(&pixels, None, 2, 4, 6).unwrap()
}

/// The fixture U-Net that attends to 5-wide contexts (2 channels, 4×6 samples).
fn build(store: &ParamStore) -> diffuse_models::Result<Backbone> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../models/tests/fixtures/unet_condition/conv_proj_uneven_heads/config.json");
    let config = UNet2DConditionConfig::from_json_str(&std::fs::read_to_string(path).unwrap())?;
    Backbone::new(BackboneConfig::UNet2DCondition(config), store)
}

fn config(caption_dropout: f64) -> TrainConfig {
    TrainConfig {
        seed: 3,
        steps: 4,
        batch_size: 4,
        lr: LrSchedule::Constant { lr: 1e-2 },
        adam_beta1: 0.9,
        adam_beta2: 0.999,
        adam_eps: 1e-8,
        weight_decay: 0.0,
        grad_clip: Some(1.0),
        ema_decay: 0.9,
        ema_warmup: EmaWarmup::Fraction,
        scheduler: SchedulerConfig {
            num_train_timesteps: 20,
            ..SchedulerConfig::default()
        },
        loss_weighting: LossWeighting::Uniform,
        importance_sampling: false,
        null_class: None,
        label_dropout: 0.0,
        caption_dropout,
        hflip: false,
        crop_pad: 0,
        max_nonfinite: 2,
        score_matching: None,
        vlb_weight: 0.001,
        image_condition: None,
    }
}

/// Three captions (rows 0..3) given to the 8 images, then the empty prompt (row 3) shared by every table.
fn captions(seed: u64) -> CaptionContexts {
    let captions = Tensor::randn(&[3, 3, 5], seed, 0, Device::Cpu).unwrap();
    let empty = Tensor::full(&[1, 3, 5], 0.25, diffuse_tensor::DType::F32, Device::Cpu).unwrap();
    let states = Tensor::concat(&[&captions, &empty], 0).unwrap();
    CaptionContexts::new(states, vec![0, 1, 2, 0, 1, 2, 0, 1]).unwrap()
}

fn train(caption_dropout: f64, table: CaptionContexts) -> Vec<f32> {
    let data = tiny_dataset();
    let mut trainer = Trainer::new(config(caption_dropout), build).unwrap();
    trainer.set_captions(table);
    for _ in 0..4 {
        let report = trainer.step(&data).unwrap();
        assert!(report.loss.is_finite() && !report.skipped);
    }
    trainer
        .store
        .get("conv_out.weight")
        .unwrap()
        .tensor()
        .to_vec()
        .unwrap()
}

#[test]
fn the_captions_reach_the_network() {
    assert_ne!(train(0.0, captions(1)), train(0.0, captions(2)));
}

#[test]
fn full_caption_dropout_trains_on_the_empty_prompt_only() {
    // Every caption dropped: the tables differ only in rows no step reads.
    assert_eq!(train(1.0, captions(1)), train(1.0, captions(2)));
}

#[test]
fn a_table_that_does_not_fit_the_data_is_refused() {
    let bad = CaptionContexts::new(
        Tensor::randn(&[2, 3, 5], 1, 0, Device::Cpu).unwrap(),
        vec![0, 1],
    );
    let err = bad.unwrap_err().to_string();
    assert!(err.contains("image 1 has caption row 1"), "{err}");
    let mut trainer = Trainer::new(config(0.0), build).unwrap();
    trainer.set_captions(
        CaptionContexts::new(
            Tensor::randn(&[2, 3, 5], 1, 0, Device::Cpu).unwrap(),
            vec![0; 5],
        )
        .unwrap(),
    );
    let err = trainer.step(&tiny_dataset()).unwrap_err().to_string();
    assert!(
        err.contains("5 captions for a dataset of 8 images"),
        "{err}"
    );
}
