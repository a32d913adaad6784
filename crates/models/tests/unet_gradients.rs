//! Back-propagation through the whole U-Net. Every rule it uses is checked against finite differences per
//! operation in diffuse-autograd; here the claims are about the composition: every parameter receives a finite
//! gradient, and the gradient predicts how the loss changes along a direction.

use diffuse_autograd::Var;
use diffuse_models::unet::{UNet2DModel, UNetConfig, CONFIG_FILE};
use diffuse_nn::ParamStore;
use diffuse_tensor::{Device, Tensor};
use std::path::Path;

fn tiny(fixture: &str, seed: u64) -> (UNet2DModel, ParamStore) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/unet")
        .join(fixture)
        .join(CONFIG_FILE);
    let config = UNetConfig::from_json_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let store = ParamStore::new(seed, Device::Cpu);
    (UNet2DModel::new(config, &store).unwrap(), store)
}

/// mean((unet(x) − target)²), as training computes it.
fn loss(model: &UNet2DModel, x: &Tensor, target: &Tensor, labels: Option<&[u32]>) -> Var {
    let t = [3.0, 998.5];
    let out = model
        .forward(&Var::constant(x.clone()), &t, labels)
        .unwrap();
    out.sub(&Var::constant(target.clone()))
        .unwrap()
        .square()
        .unwrap()
        .mean_all()
        .unwrap()
}

fn inputs(model: &UNet2DModel) -> (Tensor, Tensor) {
    let c = model.config();
    let (cin, cout) = (c.in_channels, c.out_channels);
    (
        Tensor::randn(&[2, cin, 12, 12], 7, 0, Device::Cpu).unwrap(),
        Tensor::randn(&[2, cout, 12, 12], 8, 0, Device::Cpu).unwrap(),
    )
}

#[test]
fn backward_gives_every_parameter_a_finite_gradient() {
    for (fixture, labels) in [
        ("attn_heads_classes", Some(&[1u32, 4][..])),
        ("null_head_ddpm_style", None),
    ] {
        let (model, store) = tiny(fixture, 5);
        let (x, target) = inputs(&model);
        let grads = loss(&model, &x, &target, labels).backward().unwrap();
        for (name, param) in store.params() {
            let g = grads
                .get(&param)
                .unwrap_or_else(|| panic!("{fixture}: {name} got no gradient"));
            assert_eq!(g.shape(), param.shape(), "{name}");
            let values = g.to_vec().unwrap();
            assert!(values.iter().all(|v| v.is_finite()), "{fixture}: {name}");
            // Only the rows of the class embedding of labels in the batch may be zero.
            if name != "class_embedding.weight" {
                assert!(
                    values.iter().any(|&v| v != 0.0),
                    "{fixture}: {name} is all zero"
                );
            }
        }
    }
}

/// Central difference of the loss along `d` = the gradient itself (normalised) restricted to a few parameters
/// deep inside the network: (L(θ + εd) − L(θ − εd)) / 2ε must equal ∇L·d = |∇L|. With ε = 1e-2 in f32 the
/// truncation error is O(ε²·L''') and the rounding error about 2⁻²⁴·L/ε; both stay far below the 2% allowed.
#[test]
fn gradient_predicts_the_change_of_the_loss_along_it() {
    let (model, store) = tiny("attn_heads_classes", 11);
    let labels = Some(&[0u32, 3][..]);
    let (x, target) = inputs(&model);
    let grads = loss(&model, &x, &target, labels).backward().unwrap();
    for name in [
        "time_embedding.linear_1.weight",
        "class_embedding.weight",
        "down_blocks.1.attentions.0.to_q.weight",
        "mid_block.attentions.0.to_v.bias",
        "up_blocks.0.resnets.1.conv_shortcut.weight",
        "up_blocks.1.resnets.0.norm1.weight",
        "conv_out.bias",
    ] {
        let param = store.get(name).unwrap();
        let g = grads.get(&param).unwrap().to_vec().unwrap();
        let norm = g.iter().map(|v| (*v as f64).powi(2)).sum::<f64>().sqrt();
        let original = param.tensor().to_vec().unwrap();
        let eps = 1e-2;
        let shifted = |sign: f64| {
            let moved: Vec<f32> = original
                .iter()
                .zip(&g)
                .map(|(&p, &gi)| (p as f64 + sign * eps * gi as f64 / norm) as f32)
                .collect();
            let moved = Tensor::from_vec(moved, param.shape(), Device::Cpu).unwrap();
            param.tensor().assign(&moved).unwrap();
            let l = diffuse_autograd::no_grad(|| loss(&model, &x, &target, labels));
            l.tensor().to_scalar().unwrap() as f64
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

/// The Fourier frequencies are created frozen, as diffusers creates them with `requires_grad=False`: they get no
/// gradient while every other parameter does.
#[test]
fn fourier_frequencies_are_frozen_while_the_rest_trains() {
    let (model, store) = tiny("fourier_score_sde", 3);
    let (x, target) = inputs(&model);
    let sigma = [0.05, 20.0];
    let out = model
        .forward(&Var::constant(x.clone()), &sigma, Some(&[1, 2]))
        .unwrap();
    let grads = out
        .sub(&Var::constant(target))
        .unwrap()
        .square()
        .unwrap()
        .mean_all()
        .unwrap()
        .backward()
        .unwrap();
    for (name, param) in store.params() {
        match (name.as_str(), grads.get(&param)) {
            ("time_proj.weight", Some(_)) => panic!("the Fourier frequencies got a gradient"),
            ("time_proj.weight", None) => assert!(!param.requires_grad()),
            (_, None) => panic!("{name} got no gradient"),
            (_, Some(g)) => assert!(g.to_vec().unwrap().iter().all(|v| v.is_finite()), "{name}"),
        }
    }
}
