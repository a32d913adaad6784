//! The DiT against diffusers itself: golden fixtures made by `fixtures/dit/make_fixtures.py` (diffusers 0.42.1's
//! `DiTTransformer2DModel`, randomly initialised, with its forward output), the diffusers folder round trip, and a
//! folder saved here for `make_fixtures.py --check` to load in diffusers.

use common::{assert_same_params, scaled_error, Io};
use diffuse_autograd::Var;
use diffuse_models::dit::DiTConfig;
use diffuse_models::{Backbone, BackboneConfig};
use diffuse_nn::ParamStore;
use diffuse_tensor::{Device, Tensor};
use std::path::{Path, PathBuf};

mod common;

const FIXTURES: [&str; 3] = [
    "learned_sigma_rescaled_positions",
    "exact_gelu_no_bias_patch4",
    "latent_patch1_one_head",
];

fn fixture_dir(name: &str) -> PathBuf {
    common::fixture_dir("dit", name)
}

fn forward(model: &Backbone, io: &Io) -> Tensor {
    let x = Var::constant(io.tensor("sample").clone());
    model
        .forward(&x, io.f64s("timesteps"), io.labels("class_labels"), None)
        .unwrap()
        .tensor()
        .clone()
}

/// Tolerance: both sides compute in f32 with different summation orders. Each GEMM output is a sum of k ≤ 256
/// products (the timestep code), whose rounding differs by about k·2⁻²⁴ ≈ 1.5e-5 relative in the worst case and
/// ~√k·2⁻²⁴ in practice; layer norms rescale but do not amplify relative error, and a dozen such layers are chained,
/// so 1e-4 of the output's scale bounds the disagreement while catching any wrong index, weight, order of the
/// modulation chunks or constant (those show up at 1e-2 or more).
const TOLERANCE: f32 = 1e-4;

#[test]
fn forward_matches_diffusers_on_every_fixture() {
    for name in FIXTURES {
        let dir = fixture_dir(name);
        let (model, _store) = Backbone::load_diffusers(&dir, Device::Cpu).unwrap();
        assert!(matches!(model.config(), BackboneConfig::DiT(_)), "{name}");
        let io = Io::read(&dir.join("io.safetensors"));
        let out = forward(&model, &io);
        let err = scaled_error(&out, io.tensor("output"));
        eprintln!("{name}: scaled error {err:e}");
        assert!(err < TOLERANCE, "{name}: scaled error {err:e}");
    }
}

#[test]
fn a_learned_variance_doubles_the_output_channels() {
    let (model, _) = Backbone::load_diffusers(
        &fixture_dir("learned_sigma_rescaled_positions"),
        Device::Cpu,
    )
    .unwrap();
    assert!(model.config().learns_variance());
    assert_eq!(model.config().out_channels(), 4);
    let (model, _) =
        Backbone::load_diffusers(&fixture_dir("exact_gelu_no_bias_patch4"), Device::Cpu).unwrap();
    assert!(!model.config().learns_variance());
}

#[test]
fn save_then_load_is_bit_identical() {
    let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dit-round-trip");
    for name in FIXTURES {
        let (model, store) = Backbone::load_diffusers(&fixture_dir(name), Device::Cpu).unwrap();
        let dir = root.join(name);
        model.save_diffusers(&store, &dir).unwrap();
        let (reloaded, store2) = Backbone::load_diffusers(&dir, Device::Cpu).unwrap();
        assert_eq!(reloaded.config(), model.config());
        assert_same_params(&store, &store2);
    }
}

/// Saves freshly initialised diffuse DiTs (with weights perturbed away from the adaLN-Zero start, whose output is
/// identically 0) and their outputs (`rust_io.safetensors`) under `target/tmp/dit-rust-saved/`, for
/// `make_fixtures.py --check` to load in diffusers; here, that the folder reloads and reproduces the output exactly.
#[test]
fn a_freshly_initialised_model_saves_a_folder_that_reproduces_its_output() {
    let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dit-rust-saved");
    for (k, name) in FIXTURES.iter().enumerate() {
        let text = std::fs::read_to_string(fixture_dir(name).join("config.json")).unwrap();
        let config = BackboneConfig::DiT(DiTConfig::from_json_str(&text).unwrap());
        let store = ParamStore::new(42 + k as u64, Device::Cpu);
        let model = Backbone::new(config, &store).unwrap();
        for (i, (_, p)) in store.params().iter().enumerate() {
            let noise = Tensor::randn(p.shape(), 7, i as u64 * 4096, Device::Cpu).unwrap();
            p.tensor()
                .assign(&p.tensor().add(&noise.mul_scalar(0.05).unwrap()).unwrap())
                .unwrap();
        }
        let io = Io::read(&fixture_dir(name).join("io.safetensors"));
        let out = forward(&model, &io);
        let dir = root.join(name);
        model.save_diffusers(&store, &dir).unwrap();
        write_rust_io(&dir.join("rust_io.safetensors"), &io, &out);
        let (reloaded, _) = Backbone::load_diffusers(&dir, Device::Cpu).unwrap();
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
