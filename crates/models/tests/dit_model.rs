//! The DiT's configuration (named architectures, refused options, bad input), its adaLN-Zero initialisation, and
//! back-propagation through it.

use diffuse_autograd::{no_grad, Var};
use diffuse_models::dit::{DiTConfig, DiTTransformer2DModel, NAMED_CONFIGS};
use diffuse_models::{Backbone, BackboneConfig};
use diffuse_nn::ParamStore;
use diffuse_tensor::{Device, Tensor};
use std::path::Path;

fn tiny() -> DiTConfig {
    DiTConfig {
        num_attention_heads: 2,
        attention_head_dim: 4,
        in_channels: 1,
        out_channels: Some(2),
        num_layers: 2,
        sample_size: 8,
        patch_size: 2,
        num_embeds_ada_norm: Some(3),
        ..DiTConfig::default()
    }
}

#[test]
fn every_named_config_builds_and_reads_back_from_its_json() {
    for name in NAMED_CONFIGS {
        let config = BackboneConfig::named(name).unwrap();
        let BackboneConfig::DiT(dit) = &config else {
            panic!("{name} is not a DiT")
        };
        assert!(dit.learns_variance(), "{name}");
        assert_eq!(
            config.num_class_embeds(),
            Some(11),
            "{name}: 10 classes and the null class"
        );
        let text = config.to_json_string();
        assert_eq!(
            BackboneConfig::from_json_str(&text).unwrap(),
            config,
            "{name}"
        );
        let (h, w) = config.sample_size().unwrap();
        assert!(config.flops_per_sample(h, w).unwrap() > 0.0);
    }
}

#[test]
fn named_configs_have_the_parameter_counts_of_diffusers() {
    // `make_fixtures.py --counts`: diffusers 0.42.1's DiTTransformer2DModel of the same configs.
    for (name, count) in [
        ("dit-s-2", 4_606_280),
        ("dit-s-4", 4_613_216),
        ("dit-m-2", 10_678_024),
        ("dit-b-2", 35_229_320),
        ("dit-b-4", 35_243_168),
        ("dit-latent-s", 4_606_280),
        ("dit-latent-b", 35_229_320),
    ] {
        let store = ParamStore::new(0, Device::Cpu);
        Backbone::new(BackboneConfig::named(name).unwrap(), &store).unwrap();
        assert_eq!(store.numel(), count, "{name}");
    }
}

#[test]
fn flops_of_the_paper_models_match_the_dit_paper() {
    // DiT-XL/2 at 256² (a 32 × 32 × 4 latent): 118.6 Gflops in the paper, which counts multiply-adds; DiT-S/8 0.36.
    let xl = DiTConfig::sized(1152, 16, 28, 2, (4, 32), 1000, true).unwrap();
    let gmacs = diffuse_models::dit::flops::flops_per_image(&xl, 32, 32) / 2e9;
    assert!(
        (gmacs - 118.6).abs() < 0.01 * 118.6,
        "DiT-XL/2: {gmacs} G multiply-adds"
    );
    let s8 = DiTConfig::sized(384, 6, 12, 8, (4, 32), 1000, true).unwrap();
    let gmacs = diffuse_models::dit::flops::flops_per_image(&s8, 32, 32) / 2e9;
    assert!(
        (gmacs - 0.36).abs() < 0.03 * 0.36,
        "DiT-S/8: {gmacs} G multiply-adds"
    );
}

#[test]
fn heads_that_do_not_divide_the_width_are_a_clear_error() {
    let err = DiTConfig::sized(100, 3, 2, 2, (1, 8), 10, true).unwrap_err();
    assert!(
        err.to_string()
            .contains("width of 100 channels does not split into 3 attention heads"),
        "{err}"
    );
}

#[test]
fn a_patch_size_that_does_not_divide_the_image_is_a_clear_error() {
    let config = DiTConfig {
        patch_size: 3,
        ..tiny()
    };
    let err = config.validate().unwrap_err();
    assert!(
        err.to_string()
            .contains("patch_size = 3 does not divide sample_size = 8"),
        "{err}"
    );
    // At run time: a 10 × 10 sample for patches of 4.
    let store = ParamStore::new(0, Device::Cpu);
    let model = DiTTransformer2DModel::new(
        DiTConfig {
            patch_size: 4,
            ..tiny()
        },
        &store,
    )
    .unwrap();
    let x = Var::constant(
        Tensor::zeros(&[1, 1, 10, 10], diffuse_tensor::DType::F32, Device::Cpu).unwrap(),
    );
    let err = model.forward(&x, &[5.0], Some(&[0])).unwrap_err();
    assert!(
        err.to_string()
            .contains("a 10 × 10 sample does not split into 4 × 4 patches"),
        "{err}"
    );
}

#[test]
fn unknown_keys_and_unsupported_options_are_refused_by_name() {
    let base = serde_json::to_value(tiny()).unwrap();
    let with = |key: &str, value: serde_json::Value| {
        let mut v = base.clone();
        v[key] = value;
        DiTConfig::from_json_str(&v.to_string())
            .unwrap_err()
            .to_string()
    };
    assert!(with("caption_channels", 4.into()).contains("\"caption_channels\""));
    assert!(
        with("norm_type", "ada_norm".into()).contains("norm_type = \"ada_norm\" is not supported")
    );
    assert!(with("norm_elementwise_affine", true.into()).contains("norm_elementwise_affine"));
    assert!(with("activation_fn", "geglu".into()).contains("activation_fn = \"geglu\""));
    assert!(with("dropout", 0.1.into()).contains("dropout"));
    assert!(with("num_embeds_ada_norm", serde_json::Value::Null).contains("num_embeds_ada_norm"));
    assert!(with("attention_head_dim", 5.into()).contains("multiple of 4"));
    let err = BackboneConfig::from_json_str(r#"{"_class_name": "PixArtTransformer2DModel"}"#)
        .unwrap_err();
    assert!(
        err.to_string().contains("\"DiTTransformer2DModel\""),
        "{err}"
    );
}

#[test]
fn class_labels_are_required_and_checked() {
    let store = ParamStore::new(0, Device::Cpu);
    let model = DiTTransformer2DModel::new(tiny(), &store).unwrap();
    let x = Var::constant(
        Tensor::zeros(&[2, 1, 8, 8], diffuse_tensor::DType::F32, Device::Cpu).unwrap(),
    );
    let err = model.forward(&x, &[1.0], None).unwrap_err().to_string();
    assert!(
        err.contains("pass class labels, or the null class 3"),
        "{err}"
    );
    let err = model
        .forward(&x, &[1.0], Some(&[0, 4]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("class label 4 is out of range"), "{err}");
    let err = model
        .forward(&x, &[1.0, 2.0, 3.0], Some(&[0, 3]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("3 timesteps for a batch of 2"), "{err}");
    model.forward(&x, &[1.0], Some(&[0, 3])).unwrap();
}

#[test]
fn at_adaln_zero_initialisation_blocks_are_the_identity_and_the_output_is_zero() {
    let store = ParamStore::new(3, Device::Cpu);
    let model = DiTTransformer2DModel::new(tiny(), &store).unwrap();
    let x = Var::constant(Tensor::randn(&[2, 1, 8, 8], 1, 0, Device::Cpu).unwrap());
    let out = model.forward(&x, &[10.0, 500.0], Some(&[1, 3])).unwrap();
    assert!(out.tensor().to_vec().unwrap().iter().all(|&v| v == 0.0));
    // Every gate is zero, so a block hands its input back unchanged, bit for bit.
    let tokens = Var::constant(Tensor::randn(&[2, 16, 8], 2, 0, Device::Cpu).unwrap());
    let c = Var::constant(Tensor::randn(&[2, 8], 3, 0, Device::Cpu).unwrap());
    let y = model.transformer_blocks[0].forward(&tokens, &c).unwrap();
    assert_eq!(
        y.tensor().to_vec().unwrap(),
        tokens.tensor().to_vec().unwrap()
    );
}

/// The DiT of the first golden fixture, with diffusers' (non-zero) weights.
fn fixture_model() -> (Backbone, ParamStore) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/dit/learned_sigma_rescaled_positions");
    Backbone::load_diffusers(&dir, Device::Cpu).unwrap()
}

fn loss(model: &Backbone, x: &Tensor, target: &Tensor, labels: &[u32]) -> Var {
    let out = model
        .forward(&Var::constant(x.clone()), &[3.0, 998.5], Some(labels), None)
        .unwrap();
    out.sub(&Var::constant(target.clone()))
        .unwrap()
        .square()
        .unwrap()
        .mean_all()
        .unwrap()
}

fn inputs() -> (Tensor, Tensor) {
    (
        Tensor::randn(&[2, 2, 8, 8], 7, 0, Device::Cpu).unwrap(),
        Tensor::randn(&[2, 4, 8, 8], 8, 0, Device::Cpu).unwrap(),
    )
}

#[test]
fn backward_gives_every_parameter_a_finite_gradient() {
    let (model, store) = fixture_model();
    let (x, target) = inputs();
    let grads = loss(&model, &x, &target, &[1, 5]).backward().unwrap();
    for (name, param) in store.params() {
        let g = grads
            .get(&param)
            .unwrap_or_else(|| panic!("{name} got no gradient"));
        let values = g.to_vec().unwrap();
        assert!(values.iter().all(|v| v.is_finite()), "{name}");
        // Only the label table's rows of labels outside the batch may be zero.
        if !name.ends_with("embedding_table.weight") {
            assert!(values.iter().any(|&v| v != 0.0), "{name} is all zero");
        }
    }
}

/// Central difference of the loss along `d` = the gradient itself (normalised) restricted to one parameter: the
/// result must equal ∇L·d = |∇L|. ε = 1e-2 in f32: truncation O(ε²·L''') and rounding ~2⁻²⁴·L/ε stay far below 2%.
#[test]
fn gradient_predicts_the_change_of_the_loss_along_it() {
    let (model, store) = fixture_model();
    let (x, target) = inputs();
    let labels = [0u32, 4];
    let grads = loss(&model, &x, &target, &labels).backward().unwrap();
    for name in [
        "pos_embed.proj.weight",
        "transformer_blocks.0.norm1.emb.timestep_embedder.linear_1.weight",
        "transformer_blocks.0.norm1.linear.weight",
        "transformer_blocks.1.attn1.to_k.weight",
        "transformer_blocks.1.ff.net.0.proj.bias",
        "proj_out_1.weight",
        "proj_out_2.bias",
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
            let l = no_grad(|| loss(&model, &x, &target, &labels));
            f64::from(l.tensor().to_scalar().unwrap())
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
