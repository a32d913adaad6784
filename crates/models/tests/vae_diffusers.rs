//! The autoencoder against diffusers itself: golden fixtures made by `fixtures/vae/make_fixtures.py` (diffusers
//! 0.42.1's `AutoencoderKL`, randomly initialised, with its posterior, KL and decoder outputs), and the diffusers
//! folder round trip.

use common::{assert_no_temporary_files, param_bits, scaled_error, Io};
use diffuse_autograd::Var;
use diffuse_models::folder::DIFFUSERS_WEIGHTS_FILE;
use diffuse_models::vae::{AutoencoderKL, AutoencoderKLConfig};
use diffuse_nn::ParamStore;
use diffuse_tensor::{Device, Tensor};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

mod common;

const FIXTURES: [&str; 2] = ["two_levels_clamped", "three_levels_plain"];

fn fixture_dir(name: &str) -> PathBuf {
    common::fixture_dir("vae", name)
}

/// What diffuse computes for a fixture's inputs, under the fixture's names.
fn outputs(model: &AutoencoderKL, io: &Io) -> HashMap<&'static str, Tensor> {
    let images = Var::constant(io.tensor("images").clone());
    let posterior = model.encode(&images).unwrap();
    let sample = posterior.sample_with(io.tensor("noise")).unwrap();
    let decoded = model
        .decode(&Var::constant(io.tensor("latents").clone()))
        .unwrap();
    let (_, forward) = model.forward(&images, None).unwrap();
    HashMap::from([
        ("mean", posterior.mean.tensor().clone()),
        ("logvar", posterior.logvar.tensor().clone()),
        ("kl", posterior.kl().unwrap().tensor().clone()),
        ("sample", sample.tensor().clone()),
        ("decoded", decoded.tensor().clone()),
        ("forward", forward.tensor().clone()),
    ])
}

/// Tolerance: both sides compute in f32 with different summation orders; each convolution output sums at most
/// 9·32 products (rounding ~√k·2⁻²⁴ relative in practice, k·2⁻²⁴ ≈ 2e-5 at worst), the group norms and the one
/// softmax do not amplify relative error, and about fifteen layers are chained on the longest path, so 1e-4 of
/// the output's scale bounds the disagreement while catching a wrong index, weight or constant (1e-2 or more).
/// The KL sums ≤ 48 terms of the same size per image, which adds no more than its own rounding.
const TOLERANCE: f32 = 1e-4;

#[test]
fn encode_mean_logvar_kl_and_decode_match_diffusers_on_every_fixture() {
    for name in FIXTURES {
        let dir = fixture_dir(name);
        let (model, _store) = AutoencoderKL::load_diffusers(&dir, Device::Cpu).unwrap();
        let io = Io::read(&dir.join("io.safetensors"));
        for (key, ours) in outputs(&model, &io) {
            let err = scaled_error(&ours, io.tensor(key));
            eprintln!("{name} {key}: scaled error {err:e}");
            assert!(err < TOLERANCE, "{name} {key}: scaled error {err:e}");
        }
    }
}

#[test]
fn the_log_variance_clamp_engages_where_diffusers_clamps() {
    // The fixture pushed two log-variance biases to +25 and −40: those channels sit on the bounds 20 and −30.
    let io = Io::read(&fixture_dir("two_levels_clamped").join("io.safetensors"));
    let (model, _) =
        AutoencoderKL::load_diffusers(&fixture_dir("two_levels_clamped"), Device::Cpu).unwrap();
    let logvar = model
        .encode(&Var::constant(io.tensor("images").clone()))
        .unwrap()
        .logvar
        .tensor()
        .clone();
    let channel = |c: usize| logvar.narrow(1, c, 1).unwrap().to_vec().unwrap();
    assert!(channel(0).iter().all(|&v| v == 20.0), "{:?}", channel(0));
    assert!(channel(1).iter().all(|&v| v == -30.0), "{:?}", channel(1));
    assert!(channel(2).iter().all(|&v| v > -30.0 && v < 20.0));
}

#[test]
fn scaling_maps_latents_as_diffusers_pipelines_do() {
    let (model, _) =
        AutoencoderKL::load_diffusers(&fixture_dir("two_levels_clamped"), Device::Cpu).unwrap();
    // scaling_factor 0.5, shift_factor 0.25: (z − 0.25)·0.5 and back.
    let z = Tensor::from_slice(&[0.25, 1.25, -0.75], &[3], Device::Cpu).unwrap();
    let scaled = model.scale_latents(&z).unwrap();
    assert_eq!(scaled.to_vec().unwrap(), [0.0, 0.5, -0.5]);
    assert_eq!(
        model.unscale_latents(&scaled).unwrap().to_vec().unwrap(),
        z.to_vec().unwrap()
    );
}

#[test]
fn save_then_load_is_bit_identical() {
    let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("vae-round-trip");
    for name in FIXTURES {
        let (model, store) =
            AutoencoderKL::load_diffusers(&fixture_dir(name), Device::Cpu).unwrap();
        let dir = root.join(name);
        model.save_diffusers(&store, &dir).unwrap();
        let (reloaded, store2) = AutoencoderKL::load_diffusers(&dir, Device::Cpu).unwrap();
        assert_eq!(reloaded.config(), model.config());
        assert_eq!(param_bits(&store), param_bits(&store2), "{name}");
        assert_no_temporary_files(&dir);
    }
}

/// Saves freshly initialised diffuse autoencoders with their own outputs (`rust_io.safetensors`) under
/// `target/tmp/vae-rust-saved/`, for `make_fixtures.py --check` to load in diffusers; here, that the folder reloads
/// and reproduces the outputs exactly.
#[test]
fn a_freshly_initialised_autoencoder_saves_a_folder_that_reproduces_its_outputs() {
    let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("vae-rust-saved");
    for (k, name) in FIXTURES.iter().enumerate() {
        let text = std::fs::read_to_string(fixture_dir(name).join("config.json")).unwrap();
        let config = AutoencoderKLConfig::from_json_str(&text).unwrap();
        let store = ParamStore::new(7 + k as u64, Device::Cpu);
        let model = AutoencoderKL::new(config, &store).unwrap();
        let io = Io::read(&fixture_dir(name).join("io.safetensors"));
        let ours = outputs(&model, &io);
        let dir = root.join(name);
        model.save_diffusers(&store, &dir).unwrap();
        let mut rust_io = io.clone().only(&["images", "latents"]);
        for key in ["mean", "logvar", "decoded"] {
            rust_io.set_tensor(key, ours[key].clone());
        }
        rust_io.write(&dir.join("rust_io.safetensors"));
        let (reloaded, _) = AutoencoderKL::load_diffusers(&dir, Device::Cpu).unwrap();
        let again = outputs(&reloaded, &io);
        for key in ["mean", "logvar", "decoded"] {
            assert_eq!(
                again[key].to_vec().unwrap(),
                ours[key].to_vec().unwrap(),
                "{name} {key}"
            );
        }
    }
}

#[test]
fn a_folder_missing_a_tensor_or_with_a_corrupt_file_is_refused_by_name() {
    let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("vae-broken");
    let (model, store) =
        AutoencoderKL::load_diffusers(&fixture_dir("three_levels_plain"), Device::Cpu).unwrap();
    let dir = root.join("corrupt");
    model.save_diffusers(&store, &dir).unwrap();
    std::fs::write(dir.join(DIFFUSERS_WEIGHTS_FILE), b"not a safetensors file").unwrap();
    let err = AutoencoderKL::load_diffusers(&dir, Device::Cpu)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains(DIFFUSERS_WEIGHTS_FILE), "{err}");

    // The weights of the other fixture (other widths) into this config: the first mismatch is named with both shapes.
    let dir = root.join("mismatched");
    model.save_diffusers(&store, &dir).unwrap();
    std::fs::copy(
        fixture_dir("two_levels_clamped").join(DIFFUSERS_WEIGHTS_FILE),
        dir.join(DIFFUSERS_WEIGHTS_FILE),
    )
    .unwrap();
    let err = AutoencoderKL::load_diffusers(&dir, Device::Cpu)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("decoder.conv_in.bias") && err.contains("[16]") && err.contains("[8]"),
        "{err}"
    );

    let err = AutoencoderKL::load_diffusers(&root.join("missing"), Device::Cpu)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("config.json"), "{err}");
}
