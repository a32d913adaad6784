//! The cross-attention U-Net (diffusers' `UNet2DConditionModel`) behind the samplers: [`ModelDenoiser`] passes the
//! condition's context to it, every sampler runs on it, and classifier-free guidance with the empty prompt's
//! context (`null_context`) is `ε_u + w·(ε_c − ε_u)` of two direct calls.

use diffuse_autograd::Var;
use diffuse_diffusion::sampler::{
    named, ClassifierFreeGuidance, Condition, Denoiser, Prediction, Scheduler,
};
use diffuse_diffusion::schedule::{BetaSchedule, NoiseSchedule};
use diffuse_diffusion::train::ModelDenoiser;
use diffuse_models::Backbone;
use diffuse_tensor::{Device, Tensor};
use std::path::Path;

/// The tiny fixture without class embedding: 2 input channels, a 5-wide context.
fn conditional_unet() -> Backbone {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../models/tests/fixtures/unet_condition/conv_proj_uneven_heads");
    Backbone::load_diffusers(&dir, Device::Cpu).unwrap().0
}

fn context(n: usize, seed: u64) -> Tensor {
    Tensor::randn(&[n, 3, 5], seed, 0, Device::Cpu).unwrap()
}

#[test]
fn the_denoiser_passes_the_context_and_refuses_its_absence() {
    let model = conditional_unet();
    let x = Tensor::randn(&[2, 2, 4, 6], 1, 0, Device::Cpu).unwrap();
    let (t, c) = ([10.0, 700.0], context(2, 2));
    let direct = model
        .forward(&Var::constant(x.clone()), &t, None, Some(&c))
        .unwrap();
    let denoiser = ModelDenoiser {
        model: &model,
        prediction: Prediction::Epsilon,
    };
    let cond = Condition {
        class: None,
        context: Some(&c),
    };
    let out = denoiser.predict(&x, &t, cond).unwrap();
    assert_eq!(out.to_vec().unwrap(), direct.tensor().to_vec().unwrap());
    let err = denoiser
        .predict(&x, &t, Condition::NONE)
        .unwrap_err()
        .to_string();
    assert!(err.contains("context"), "{err}");
}

/// Both sides compute the same f32 network on the same inputs, but guidance runs the two halves as one batch of
/// 2N, so only the final combination `u + w·(c − u)` may round differently: a few ulps of the output's scale.
#[test]
fn guidance_with_the_empty_prompts_context_combines_two_calls() {
    let model = conditional_unet();
    let denoiser = ModelDenoiser {
        model: &model,
        prediction: Prediction::Epsilon,
    };
    let x = Tensor::randn(&[2, 2, 4, 6], 3, 0, Device::Cpu).unwrap();
    let t = [250.0, 250.0];
    let (prompt, empty) = (context(2, 4), context(1, 5));
    let guided = ClassifierFreeGuidance {
        model: &denoiser,
        scale: 4.0,
        null_class: None,
        null_context: Some(empty.clone()),
    };
    let cond = Condition {
        class: None,
        context: Some(&prompt),
    };
    let out = guided.predict(&x, &t, cond).unwrap().to_vec().unwrap();
    let empty2 = Tensor::concat(&[&empty, &empty], 0).unwrap();
    let call = |c: &Tensor| {
        let cond = Condition {
            class: None,
            context: Some(c),
        };
        denoiser.predict(&x, &t, cond).unwrap().to_vec().unwrap()
    };
    let (c, u) = (call(&prompt), call(&empty2));
    let scale = c.iter().fold(0f32, |m, v| m.max(v.abs()));
    for ((o, c), u) in out.iter().zip(&c).zip(&u) {
        let expected = u + 4.0 * (c - u);
        assert!((o - expected).abs() <= 1e-5 * scale, "{o} vs {expected}");
    }
}

#[test]
fn every_sampler_runs_with_a_prompt_and_guidance() {
    let model = conditional_unet();
    let denoiser = ModelDenoiser {
        model: &model,
        prediction: Prediction::Epsilon,
    };
    let guided = ClassifierFreeGuidance {
        model: &denoiser,
        scale: 3.0,
        null_class: None,
        null_context: Some(context(1, 6)),
    };
    let schedule = NoiseSchedule::new(BetaSchedule::Linear, 1000, 1e-4, 0.02, false).unwrap();
    let prompt = context(2, 7);
    for name in named::ALL {
        let scheduler = Scheduler::named(name).unwrap();
        let (sampler, mut options) = (scheduler.sampler, scheduler.options);
        options.steps = 4;
        let cond = Condition {
            class: None,
            context: Some(&prompt),
        };
        let x = sampler
            .sample(
                &guided,
                &schedule,
                &options,
                &[2, 2, 4, 6],
                Device::Cpu,
                cond,
            )
            .unwrap();
        assert_eq!(x.shape(), &[2, 2, 4, 6], "{name}");
        assert!(x.to_vec().unwrap().iter().all(|v| v.is_finite()), "{name}");
    }
}
