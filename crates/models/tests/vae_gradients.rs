//! Back-propagation through the autoencoder and its patch discriminator. The rules themselves (including the new
//! `clamp` and `abs`) are checked against finite differences in diffuse-autograd; here the claims are about the
//! composition: every parameter gets a finite, non-zero gradient, and the gradient predicts how the loss changes
//! along it (a central finite difference of the whole network, with the loss accumulated in f64).

use diffuse_autograd::{no_grad, Var};
use diffuse_models::vae::{
    AutoencoderKL, AutoencoderKLConfig, PatchDiscriminator, PatchDiscriminatorConfig,
};
use diffuse_nn::ParamStore;
use diffuse_tensor::{Device, Tensor};
use std::path::Path;

fn fixture_config(name: &str) -> AutoencoderKLConfig {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/vae")
        .join(name)
        .join("config.json");
    AutoencoderKLConfig::from_json_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The training objective's shape: the mean reconstruction error over pixels of the decoded posterior sample
/// (|x − x̂|, or (x − x̂)² when `smooth`), plus 1e-2·mean KL.
fn loss(model: &AutoencoderKL, x: &Tensor, noise: &Tensor, smooth: bool) -> Var {
    let posterior = model.encode(&Var::constant(x.clone())).unwrap();
    let z = posterior.sample_with(noise).unwrap();
    let decoded = model.decode(&z).unwrap();
    let error = decoded.sub(&Var::constant(x.clone())).unwrap();
    let error = if smooth { error.square() } else { error.abs() };
    let reconstruction = error.unwrap().mean_all().unwrap();
    let kl = posterior.kl().unwrap().mean_all().unwrap();
    reconstruction.add(&kl.mul_scalar(1e-2).unwrap()).unwrap()
}

fn inputs(config: &AutoencoderKLConfig, size: (usize, usize)) -> (Tensor, Tensor) {
    let (h, w) = config.latent_size(size.0, size.1);
    (
        Tensor::randn(&[2, config.in_channels, size.0, size.1], 5, 0, Device::Cpu).unwrap(),
        Tensor::randn(&[2, config.latent_channels, h, w], 6, 0, Device::Cpu).unwrap(),
    )
}

#[test]
fn backward_gives_every_parameter_a_finite_nonzero_gradient() {
    for (name, size) in [
        ("two_levels_clamped", (8, 8)),
        ("three_levels_plain", (12, 8)),
    ] {
        let config = fixture_config(name);
        let store = ParamStore::new(3, Device::Cpu);
        let model = AutoencoderKL::new(config.clone(), &store).unwrap();
        let (x, noise) = inputs(&config, size);
        let grads = loss(&model, &x, &noise, false).backward().unwrap();
        for (param, var) in store.params() {
            let g = grads
                .get(&var)
                .unwrap_or_else(|| panic!("{name}: {param} got no gradient"));
            let values = g.to_vec().unwrap();
            assert!(values.iter().all(|v| v.is_finite()), "{name}: {param}");
            assert!(
                values.iter().any(|&v| v != 0.0),
                "{name}: {param} is all zero"
            );
        }
    }
}

/// Central difference along the normalised gradient d = ∇L/|∇L| of a few parameters deep inside: (L(θ + εd) −
/// L(θ − εd))/2ε must equal ∇L·d = |∇L|. With ε = 1e-2 in f32 the truncation error is O(ε²·L''') and the rounding
/// about 2⁻²⁴·L/ε; both stay far below the 2 % allowed. The squared error keeps the loss smooth: with |x − x̂| the
/// pixels whose error changes sign within the step put kinks into the difference quotient (2.2 % seen).
#[test]
fn gradient_predicts_the_change_of_the_loss_along_it() {
    let config = fixture_config("two_levels_clamped");
    let store = ParamStore::new(11, Device::Cpu);
    let model = AutoencoderKL::new(config.clone(), &store).unwrap();
    let (x, noise) = inputs(&config, (8, 8));
    let grads = loss(&model, &x, &noise, true).backward().unwrap();
    for name in [
        "encoder.down_blocks.0.resnets.1.conv2.weight",
        "encoder.mid_block.attentions.0.to_k.weight",
        "quant_conv.bias",
        "post_quant_conv.weight",
        "decoder.up_blocks.0.upsamplers.0.conv.weight",
        "decoder.up_blocks.1.resnets.0.conv_shortcut.weight",
        "decoder.conv_norm_out.weight",
    ] {
        let param = store.get(name).unwrap();
        let g = grads.get(&param).unwrap().to_vec().unwrap();
        let norm = g.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>().sqrt();
        let original = param.tensor().to_vec().unwrap();
        let eps = 1e-2;
        let shifted = |sign: f64| {
            let moved: Vec<f32> = original
                .iter()
                .zip(&g)
                .map(|(&p, &gi)| (f64::from(p) + sign * eps * f64::from(gi) / norm) as f32)
                .collect();
            param
                .tensor()
                .assign(&Tensor::from_vec(moved, param.shape(), Device::Cpu).unwrap())
                .unwrap();
            no_grad(|| f64::from(loss(&model, &x, &noise, true).tensor().to_scalar().unwrap()))
        };
        let (up, down) = (shifted(1.0), shifted(-1.0));
        param
            .tensor()
            .assign(&Tensor::from_vec(original, param.shape(), Device::Cpu).unwrap())
            .unwrap();
        let fd = (up - down) / (2.0 * eps);
        assert!(
            (fd - norm).abs() <= 0.02 * norm,
            "{name}: finite difference {fd:e}, gradient norm {norm:e}"
        );
    }
}

#[test]
fn the_patch_discriminator_scores_5x5_patches_of_28x28_images_and_back_propagates() {
    let config = PatchDiscriminatorConfig {
        in_channels: 1,
        channels: 8,
        layers: 2,
        groups: 4,
    };
    let store = ParamStore::new(4, Device::Cpu);
    let d = PatchDiscriminator::new(config, &store).unwrap();
    let x = Var::leaf(Tensor::randn(&[2, 1, 28, 28], 9, 0, Device::Cpu).unwrap());
    let logits = d.forward(&x).unwrap();
    assert_eq!(logits.shape(), [2, 1, 5, 5]);
    // The hinge loss on fakes, as the discriminator step computes it.
    let loss = logits
        .add_scalar(1.0)
        .unwrap()
        .relu()
        .unwrap()
        .mean_all()
        .unwrap();
    let grads = loss.backward().unwrap();
    for (name, var) in store.params() {
        let g = grads.get(&var).unwrap().to_vec().unwrap();
        assert!(
            g.iter().all(|v| v.is_finite()) && g.iter().any(|&v| v != 0.0),
            "{name}"
        );
    }
    assert!(grads.get(&x).is_some());
    let bad = PatchDiscriminatorConfig {
        groups: 3,
        ..config
    };
    let err = PatchDiscriminator::new(bad, &ParamStore::new(0, Device::Cpu))
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("3 groups do not divide the 16 channels of layer 1"),
        "{err}"
    );
}
