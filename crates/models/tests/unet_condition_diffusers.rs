//! The cross-attention U-Net against diffusers itself: golden fixtures made by
//! `fixtures/unet_condition/make_fixtures.py` (diffusers 0.42.1's `UNet2DConditionModel`, random weights, with its
//! forward output), the diffusers folder round trip, and the configs it refuses.

use common::{assert_same_params, scaled_error, Io};
use diffuse_autograd::Var;
use diffuse_models::unet_condition::{UNet2DConditionConfig, UNet2DConditionModel};
use diffuse_nn::ParamStore;
use diffuse_tensor::{Device, Tensor};
use std::path::{Path, PathBuf};

mod common;

const FIXTURES: [&str; 2] = ["linear_proj_heads_classes", "conv_proj_uneven_heads"];

fn fixture_dir(name: &str) -> PathBuf {
    common::fixture_dir("unet_condition", name)
}

fn forward(model: &UNet2DConditionModel, io: &Io) -> Tensor {
    model
        .forward(
            &Var::constant(io.tensor("sample").clone()),
            io.f64s("timesteps"),
            &Var::constant(io.tensor("encoder_hidden_states").clone()),
            io.labels("class_labels"),
        )
        .unwrap()
        .tensor()
        .clone()
}

/// Tolerance: both sides compute in f32 with different summation orders. Each convolution, GEMM or attention output
/// is a sum of k ≤ 9·16 products (the widest reduction, a 3×3 convolution over 16 concatenated channels), whose
/// rounding differs by about k·2⁻²⁴ ≈ 1e-5 relative in the worst case and ~√k·2⁻²⁴ in practice; the norms rescale
/// but do not amplify relative error, and about thirty such layers are chained, so 1e-4 of the output's scale bounds
/// the disagreement while catching any wrong index, weight or constant (those show up at 1e-2 or more).
const TOLERANCE: f32 = 1e-4;

#[test]
fn forward_matches_diffusers_on_every_fixture() {
    for name in FIXTURES {
        let dir = fixture_dir(name);
        let (model, _store) = UNet2DConditionModel::load_diffusers(&dir, Device::Cpu).unwrap();
        let io = Io::read(&dir.join("io.safetensors"));
        let err = scaled_error(&forward(&model, &io), io.tensor("output"));
        eprintln!("{name}: scaled error {err:e}");
        assert!(err < TOLERANCE, "{name}: scaled error {err:e}");
    }
}

#[test]
fn the_output_depends_on_the_context() {
    let dir = fixture_dir("conv_proj_uneven_heads");
    let (model, _store) = UNet2DConditionModel::load_diffusers(&dir, Device::Cpu).unwrap();
    let mut io = Io::read(&dir.join("io.safetensors"));
    let negated = io.tensor("encoder_hidden_states").mul_scalar(-1.0).unwrap();
    io.set_tensor("encoder_hidden_states", negated);
    let err = scaled_error(&forward(&model, &io), io.tensor("output"));
    assert!(
        err > 1e-3,
        "negating the context changed the output by only {err:e}"
    );
}

#[test]
fn save_then_load_is_bit_identical() {
    let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("unet-condition-round-trip");
    for name in FIXTURES {
        let (model, store) =
            UNet2DConditionModel::load_diffusers(&fixture_dir(name), Device::Cpu).unwrap();
        let dir = root.join(name);
        model.save_diffusers(&store, &dir).unwrap();
        let (reloaded, store2) = UNet2DConditionModel::load_diffusers(&dir, Device::Cpu).unwrap();
        assert_eq!(reloaded.config(), model.config());
        assert_same_params(&store, &store2);
    }
}

/// Saves freshly initialised diffuse models with their own outputs (`rust_io.safetensors`) under
/// `target/tmp/unet-condition-rust-saved/`, for `make_fixtures.py --check` to load in diffusers; here, that the
/// folder reloads and reproduces the output exactly.
#[test]
fn a_freshly_initialised_model_saves_a_folder_that_reproduces_its_output() {
    let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("unet-condition-rust-saved");
    for (k, name) in FIXTURES.iter().enumerate() {
        let text = std::fs::read_to_string(fixture_dir(name).join("config.json")).unwrap();
        let config = UNet2DConditionConfig::from_json_str(&text).unwrap();
        let store = ParamStore::new(42 + k as u64, Device::Cpu);
        let model = UNet2DConditionModel::new(config, &store).unwrap();
        let io = Io::read(&fixture_dir(name).join("io.safetensors"));
        let out = forward(&model, &io);
        let dir = root.join(name);
        model.save_diffusers(&store, &dir).unwrap();
        write_rust_io(&dir.join("rust_io.safetensors"), &io, &out);
        let (reloaded, _) = UNet2DConditionModel::load_diffusers(&dir, Device::Cpu).unwrap();
        assert_eq!(
            forward(&reloaded, &io).to_vec().unwrap(),
            out.to_vec().unwrap()
        );
    }
}

/// Diffuse's output beside the fixture's inputs, under the names `make_fixtures.py --check` reads.
fn write_rust_io(path: &Path, io: &Io, out: &Tensor) {
    let mut rust_io = io.clone();
    rust_io.set_tensor("output", out.clone());
    rust_io.write(path);
}

fn config_with(key: &str, value: &str) -> String {
    let text =
        std::fs::read_to_string(fixture_dir("conv_proj_uneven_heads").join("config.json")).unwrap();
    let mut json: serde_json::Value = serde_json::from_str(&text).unwrap();
    json[key] = serde_json::from_str(value).unwrap();
    json.to_string()
}

#[test]
fn unknown_keys_and_unsupported_values_are_refused_by_name() {
    let err = UNet2DConditionConfig::from_json_str(&config_with("use_flash_magic", "true"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("use_flash_magic"), "{err}");
    for (key, value) in [
        (
            "down_block_types",
            r#"["SimpleCrossAttnDownBlock2D", "CrossAttnDownBlock2D"]"#,
        ),
        ("mid_block_type", r#""UNetMidBlock2DSimpleCrossAttn""#),
        ("only_cross_attention", "true"),
        ("dual_cross_attention", "true"),
        ("addition_embed_type", r#""text_time""#),
        ("time_embedding_type", r#""fourier""#),
        ("encoder_hid_dim", "7"),
        ("num_attention_heads", "2"),
        ("conv_in_kernel", "1"),
        ("class_embed_type", r#""timestep""#),
        ("resnet_time_scale_shift", r#""scale_shift""#),
    ] {
        let err = UNet2DConditionConfig::from_json_str(&config_with(key, value))
            .unwrap_err()
            .to_string();
        assert!(err.contains(key), "{key}: {err}");
    }
    let err = UNet2DConditionConfig::from_json_str(&config_with("_class_name", r#""UNet2DModel""#))
        .unwrap_err()
        .to_string();
    assert!(err.contains("UNet2DConditionModel"), "{err}");
    // Three heads cannot split 4 channels evenly, which linear projections need (diffusers fails to build it).
    let err = UNet2DConditionConfig::from_json_str(&config_with("use_linear_projection", "true"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("use_linear_projection"), "{err}");
    let err = UNet2DConditionConfig::from_json_str(&config_with("attention_head_dim", "[1, 2, 3]"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("attention_head_dim"), "{err}");
}

#[test]
fn a_context_of_the_wrong_width_is_refused_naming_cross_attention_dim() {
    let dir = fixture_dir("conv_proj_uneven_heads");
    let (model, _store) = UNet2DConditionModel::load_diffusers(&dir, Device::Cpu).unwrap();
    let io = Io::read(&dir.join("io.safetensors"));
    let context = Tensor::zeros(&[3, 4, 8], diffuse_tensor::DType::F32, Device::Cpu).unwrap();
    let err = model
        .forward(
            &Var::constant(io.tensor("sample").clone()),
            io.f64s("timesteps"),
            &Var::constant(context),
            None,
        )
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("cross_attention_dim = 5") && err.contains("[3, 4, 8]"),
        "{err}"
    );
}

#[test]
fn the_named_configs_build_and_denoise_their_sample_size_under_a_context() {
    for (name, shape) in [
        ("fashion-text", [1, 1, 28, 28]),
        ("fashion-text-latent", [2, 4, 7, 7]),
    ] {
        let config = UNet2DConditionConfig::named(name).unwrap();
        // The named configs round-trip through the diffusers config.json.
        let text = config.to_json_string();
        assert_eq!(UNet2DConditionConfig::from_json_str(&text).unwrap(), config);
        let store = ParamStore::new(0, Device::Cpu);
        let model = UNet2DConditionModel::new(config.clone(), &store).unwrap();
        let sample = Tensor::randn(&shape, 1, 0, Device::Cpu).unwrap();
        let context =
            Tensor::randn(&[shape[0], 5, config.context_dim()], 2, 0, Device::Cpu).unwrap();
        let out = model
            .forward(
                &Var::constant(sample),
                &vec![500.0; shape[0]],
                &Var::constant(context),
                None,
            )
            .unwrap();
        assert_eq!(out.tensor().shape(), &shape[..], "{name}");
    }
    let err = UNet2DConditionConfig::named("fashion-texts")
        .unwrap_err()
        .to_string();
    assert!(err.contains("fashion-text-latent"), "{err}");
}
