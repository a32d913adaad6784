//! A network that predicts its variance, as the samplers see it: [`ModelDenoiser`] hands them the prediction (the
//! first half of the output channels), so every sampler runs on a DiT with a learned variance.

use diffuse_autograd::Var;
use diffuse_diffusion::sampler::{Condition, Denoiser, Prediction, Sampler, SamplerOptions};
use diffuse_diffusion::schedule::{BetaSchedule, NoiseSchedule};
use diffuse_diffusion::train::ModelDenoiser;
use diffuse_models::Backbone;
use diffuse_tensor::{Device, Tensor};
use std::path::Path;

fn learned_sigma_dit() -> Backbone {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../models/tests/fixtures/dit/learned_sigma_rescaled_positions");
    Backbone::load_diffusers(&dir, Device::Cpu).unwrap().0
}

#[test]
fn the_denoiser_of_a_variance_predicting_network_returns_its_first_half() {
    let model = learned_sigma_dit();
    let x = Tensor::randn(&[2, 2, 8, 8], 1, 0, Device::Cpu).unwrap();
    let (t, labels) = ([10.0, 700.0], [1u32, 5]);
    let full = model
        .forward(&Var::constant(x.clone()), &t, Some(&labels), None)
        .unwrap();
    assert_eq!(full.shape(), &[2, 4, 8, 8]);
    let denoiser = ModelDenoiser {
        model: &model,
        prediction: Prediction::Epsilon,
    };
    let out = denoiser.predict(&x, &t, Condition::class(&labels)).unwrap();
    assert_eq!(out.shape(), &[2, 2, 8, 8]);
    let first_half = full.tensor().narrow(1, 0, 2).unwrap().contiguous().unwrap();
    assert_eq!(out.to_vec().unwrap(), first_half.to_vec().unwrap());
}

#[test]
fn every_sampler_runs_on_a_variance_predicting_dit() {
    let model = learned_sigma_dit();
    let denoiser = ModelDenoiser {
        model: &model,
        prediction: Prediction::Epsilon,
    };
    let schedule = NoiseSchedule::new(BetaSchedule::Linear, 1000, 1e-4, 0.02, false).unwrap();
    let options = SamplerOptions {
        steps: 3,
        ..SamplerOptions::default()
    };
    for sampler in [
        Sampler::Ddim { eta: 0.0 },
        Sampler::Euler,
        Sampler::DpmSolverPp2m,
    ] {
        let x = sampler
            .sample(
                &denoiser,
                &schedule,
                &options,
                &[2, 2, 8, 8],
                Device::Cpu,
                Condition::class(&[0, 4]),
            )
            .unwrap();
        assert_eq!(x.shape(), &[2, 2, 8, 8], "{sampler:?}");
        assert!(
            x.to_vec().unwrap().iter().all(|v| v.is_finite()),
            "{sampler:?}"
        );
    }
}
