//! A trained network as the samplers see it: [`ModelDenoiser`] runs the model without recording a graph and returns
//! its output unchanged (checked on a diffusers golden fixture of `diffuse-models`).

use diffuse_diffusion::sampler::{Condition, Denoiser, Prediction};
use diffuse_diffusion::train::ModelDenoiser;
use diffuse_models::unet::UNet2DModel;
use diffuse_tensor::{Device, Tensor};
use safetensors::tensor::Dtype;
use safetensors::SafeTensors;
use std::path::Path;

fn fixture_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/tests/fixtures/unet/attn_heads_classes")
}

fn tensor(file: &SafeTensors, name: &str) -> (Dtype, Vec<usize>, Vec<u8>) {
    let view = file.tensor(name).unwrap();
    (view.dtype(), view.shape().to_vec(), view.data().to_vec())
}

#[test]
fn denoiser_predicts_the_diffusers_output_and_leaves_recording_on() {
    let dir = fixture_dir();
    let (model, _store) = UNet2DModel::load_diffusers(&dir, Device::Cpu).unwrap();
    let bytes = std::fs::read(dir.join("io.safetensors")).unwrap();
    let file = SafeTensors::deserialize(&bytes).unwrap();
    let f32s = |data: &[u8]| -> Vec<f32> {
        data.chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect()
    };
    let (_, shape, data) = tensor(&file, "sample");
    let sample = Tensor::from_vec(f32s(&data), &shape, Device::Cpu).unwrap();
    let (_, _, data) = tensor(&file, "timesteps");
    let timesteps: Vec<f64> = data
        .chunks_exact(8)
        .map(|b| f64::from_le_bytes(b.try_into().unwrap()))
        .collect();
    let (_, _, data) = tensor(&file, "class_labels");
    let labels: Vec<u32> = data
        .chunks_exact(8)
        .map(|b| i64::from_le_bytes(b.try_into().unwrap()) as u32)
        .collect();
    let (_, _, data) = tensor(&file, "output");
    let expected = f32s(&data);

    let denoiser = ModelDenoiser {
        model: &model,
        prediction: Prediction::VPrediction,
    };
    assert_eq!(denoiser.prediction(), Prediction::VPrediction);
    let out = denoiser
        .predict(&sample, &timesteps, Condition::class(&labels))
        .unwrap()
        .to_vec()
        .unwrap();
    // Scaled by the output's largest magnitude, as the U-Net's own golden test does (1e-4: f32 sums over a few
    // hundred terms per output).
    let scale = expected.iter().fold(0f32, |m, x| m.max(x.abs()));
    let error = out
        .iter()
        .zip(&expected)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()))
        / scale;
    assert!(error < 1e-4, "scaled error {error}");
    assert!(diffuse_autograd::is_grad_enabled());
}
