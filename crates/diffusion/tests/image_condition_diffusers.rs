//! The image-conditioned denoisers against diffusers 0.42.1 (`fixtures/image_condition/make_fixtures.py`): a
//! super-resolution stage and a trained inpainting network, tiny random `UNet2DModel`s with extra input channels.
//! For each, the extra channels diffuse builds, one forward pass through [`ImageConditioned`], and a whole sampling
//! loop (the loops of diffusers' `StableDiffusionUpscalePipeline` and `StableDiffusionInpaintPipeline` on a pixel
//! U-Net: the upscaler's noise-level class labels, the inpainting network's `[x_t, mask, masked image]` after
//! `scale_model_input`, classifier-free guidance over the doubled batch) must give diffusers' numbers.

use diffuse_diffusion::image_condition::{
    inpainting_channels, ImageConditioned, NoiseAugmentation, SuperResolution,
};
use diffuse_diffusion::sampler::scheduler::{SamplerOverrides, Scheduler};
use diffuse_diffusion::sampler::{ClassifierFreeGuidance, Condition, Denoiser};
use diffuse_diffusion::train::ModelDenoiser;
use diffuse_models::Backbone;
use diffuse_tensor::{Device, Tensor};
use safetensors::tensor::Dtype;
use safetensors::SafeTensors;
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/image_condition")
        .join(name)
}

/// The tensors of a fixture's `io.safetensors`: f32 values with their shape, f64 values, i64 values as `u32`.
struct Io(Vec<u8>);

impl Io {
    fn read(dir: &Path) -> Self {
        Io(std::fs::read(dir.join("io.safetensors")).unwrap())
    }

    fn view(&self, name: &str, dtype: Dtype) -> (Vec<usize>, Vec<u8>) {
        let file = SafeTensors::deserialize(&self.0).unwrap();
        let view = file.tensor(name).unwrap();
        assert_eq!(view.dtype(), dtype, "{name}");
        (view.shape().to_vec(), view.data().to_vec())
    }

    fn f32s(&self, name: &str) -> Vec<f32> {
        let (_, data) = self.view(name, Dtype::F32);
        data.chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect()
    }

    fn tensor(&self, name: &str) -> Tensor {
        let (shape, _) = self.view(name, Dtype::F32);
        Tensor::from_vec(self.f32s(name), &shape, Device::Cpu).unwrap()
    }

    fn f64s(&self, name: &str) -> Vec<f64> {
        let (_, data) = self.view(name, Dtype::F64);
        data.chunks_exact(8)
            .map(|b| f64::from_le_bytes(b.try_into().unwrap()))
            .collect()
    }

    fn labels(&self, name: &str) -> Vec<u32> {
        let (_, data) = self.view(name, Dtype::I64);
        data.chunks_exact(8)
            .map(|b| i64::from_le_bytes(b.try_into().unwrap()) as u32)
            .collect()
    }
}

/// Largest difference relative to the largest magnitude of `want`.
fn relative_error(got: &[f32], want: &[f32]) -> f32 {
    assert_eq!(got.len(), want.len());
    let scale = want.iter().fold(0f32, |m, x| m.max(x.abs()));
    let worst = got
        .iter()
        .zip(want)
        .map(|(g, w)| (g - w).abs())
        .fold(0f32, f32::max);
    assert!(worst.is_finite());
    worst / scale
}

/// A fixture's network and its sampler, `steps` steps.
fn load(dir: &Path, steps: usize) -> (Backbone, Scheduler) {
    let (model, _store) = Backbone::load_diffusers(&dir.join("unet"), Device::Cpu).unwrap();
    let scheduler = Scheduler::from_file(&dir.join("scheduler/scheduler_config.json"))
        .unwrap()
        .apply(&SamplerOverrides {
            steps: Some(steps),
            ..SamplerOverrides::default()
        })
        .unwrap();
    (model, scheduler)
}

/// The forward pass and the 4-step DDIM loop each run a 2-level U-Net of a few hundred terms per sum in f32, and the
/// loop compounds four of them through DDIM's affine updates (all of magnitude about 1): 1e-4 of the output's
/// magnitude is the compatibility bound, as for the U-Net's own fixtures.
const TOLERANCE: f32 = 1e-4;

#[test]
fn a_super_resolution_stage_conditions_and_samples_as_diffusers_upscale_loop() {
    let dir = fixture("super_resolution");
    let io = Io::read(&dir);
    let (model, scheduler) = load(&dir, 4);
    let stage = SuperResolution {
        low: 4,
        high: 8,
        augmentation: NoiseAugmentation {
            levels: 3,
            max_timestep: 30,
        },
    };
    let (low, noise) = (io.f32s("low"), io.f32s("aug_noise"));
    let condition = |levels: &[u32]| -> Tensor {
        let values = stage
            .condition(&scheduler.schedule, &low, 2, levels, &noise)
            .unwrap();
        Tensor::from_vec(values, &[2, 2, 8, 8], Device::Cpu).unwrap()
    };
    let plain = ModelDenoiser {
        model: &model,
        prediction: scheduler.prediction(),
    };

    // The augmentation: diffusers' float32 add_noise and bilinear interpolation against diffuse's f64 formula
    // rounded once to f32 (a few ulps of values of magnitude 1).
    let levels = io.labels("forward_levels");
    let extra = condition(&levels);
    let want = io.f32s("forward_condition");
    let got = extra.to_vec().unwrap();
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert!((g - w).abs() <= 1e-6, "condition[{i}]: {g} vs {w}");
    }
    let forward = ImageConditioned {
        model: &plain,
        extra,
        class: Some(levels),
    };
    let out = forward
        .predict(
            &io.tensor("forward_x_t"),
            &io.f64s("forward_timesteps"),
            Condition::NONE,
        )
        .unwrap();
    let error = relative_error(&out.to_vec().unwrap(), &io.f32s("forward_output"));
    assert!(error < TOLERANCE, "forward: {error:.2e}");

    let level = io.labels("sample_level")[0];
    let stage_denoiser = ImageConditioned {
        model: &plain,
        extra: condition(&[level; 2]),
        class: Some(vec![level; 2]),
    };
    let sample = scheduler
        .sample_from(&stage_denoiser, &io.tensor("latents"), Condition::NONE)
        .unwrap();
    let error = relative_error(&sample.to_vec().unwrap(), &io.f32s("sample"));
    assert!(error < TOLERANCE, "sampling: {error:.2e}");
}

#[test]
fn a_trained_inpainting_network_samples_with_guidance_as_diffusers_inpaint_loop() {
    let dir = fixture("inpainting");
    let io = Io::read(&dir);
    let (model, scheduler) = load(&dir, 4);
    let (h, w) = (6, 10);
    // diffuse's masks are the fixture's (1 = fill in); the masked image is the image times (1 − mask), diffusers'
    // `image · (mask < 0.5)` for a 0/1 mask.
    let extra = inpainting_channels(&io.f32s("image"), &io.f32s("mask"), 1, h * w);
    let extra = Tensor::from_vec(extra, &[2, 2, h, w], Device::Cpu).unwrap();
    let plain = ModelDenoiser {
        model: &model,
        prediction: scheduler.prediction(),
    };
    let conditioned = ImageConditioned {
        model: &plain,
        extra,
        class: None,
    };
    let labels = io.labels("forward_labels");
    let out = conditioned
        .predict(
            &io.tensor("forward_x_t"),
            &io.f64s("forward_timesteps"),
            Condition::class(&labels),
        )
        .unwrap();
    let error = relative_error(&out.to_vec().unwrap(), &io.f32s("forward_output"));
    assert!(error < TOLERANCE, "forward: {error:.2e}");

    let guided = ClassifierFreeGuidance {
        model: &conditioned,
        scale: io.f64s("guidance")[0],
        null_class: Some(3),
        null_context: None,
    };
    let classes = io.labels("classes");
    let sample = scheduler
        .sample_from(&guided, &io.tensor("latents"), Condition::class(&classes))
        .unwrap();
    let error = relative_error(&sample.to_vec().unwrap(), &io.f32s("sample"));
    assert!(error < TOLERANCE, "sampling: {error:.2e}");
}
