//! The U-Net against diffusers itself: golden fixtures made by `fixtures/unet/make_fixtures.py` (diffusers 0.42.1's
//! `UNet2DModel`, randomly initialised, with its forward output), and the diffusers folder round trip.

use common::{assert_no_temporary_files, assert_same_params, scaled_error, Io};
use diffuse_autograd::Var;
use diffuse_models::unet::{UNet2DModel, UNetConfig, WEIGHTS_FILE};
use diffuse_nn::ParamStore;
use diffuse_tensor::{Device, Tensor};
use safetensors::tensor::Dtype;
use std::path::{Path, PathBuf};

mod common;

const FIXTURES: [&str; 4] = [
    "attn_heads_classes",
    "null_head_ddpm_style",
    "uneven_heads_nonsquare",
    "fourier_score_sde",
];

fn fixture_dir(name: &str) -> PathBuf {
    common::fixture_dir("unet", name)
}

fn forward(model: &UNet2DModel, io: &Io) -> Tensor {
    let x = Var::constant(io.tensor("sample").clone());
    model
        .forward(&x, io.f64s("timesteps"), io.labels("class_labels"))
        .unwrap()
        .tensor()
        .clone()
}

/// Tolerance: both sides compute in f32 with different summation orders. Each convolution or GEMM output is a sum
/// of k ≤ 9·32 products, whose rounding differs by about k·2⁻²⁴ ≈ 2e-5 relative in the worst case and ~√k·2⁻²⁴ in
/// practice; group norms rescale but do not amplify relative error, and about twenty such layers are chained, so
/// 1e-4 of the output's scale bounds the disagreement with room to spare while catching any wrong index, weight or
/// constant (those show up at 1e-2 or more).
const TOLERANCE: f32 = 1e-4;

#[test]
fn forward_matches_diffusers_on_every_fixture() {
    for name in FIXTURES {
        let dir = fixture_dir(name);
        let (model, _store) = UNet2DModel::load_diffusers(&dir, Device::Cpu).unwrap();
        let io = Io::read(&dir.join("io.safetensors"));
        let out = forward(&model, &io);
        let err = scaled_error(&out, io.tensor("output"));
        eprintln!("{name}: scaled error {err:e}");
        assert!(err < TOLERANCE, "{name}: scaled error {err:e}");
    }
}

#[test]
fn save_then_load_is_bit_identical() {
    let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("unet-round-trip");
    for name in FIXTURES {
        let (model, store) = UNet2DModel::load_diffusers(&fixture_dir(name), Device::Cpu).unwrap();
        let dir = root.join(name);
        model.save_diffusers(&store, &dir).unwrap();
        let (reloaded, store2) = UNet2DModel::load_diffusers(&dir, Device::Cpu).unwrap();
        assert_eq!(reloaded.config(), model.config());
        assert_same_params(&store, &store2);
        assert_no_temporary_files(&dir);
    }
}

/// Saves freshly initialised diffuse models with their own outputs (`rust_io.safetensors`) under
/// `target/tmp/unet-rust-saved/`, for `make_fixtures.py --check` to load in diffusers; here, that the folder
/// reloads and reproduces the output exactly.
#[test]
fn a_freshly_initialised_model_saves_a_folder_that_reproduces_its_output() {
    let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("unet-rust-saved");
    for (k, name) in FIXTURES.iter().enumerate() {
        let text = std::fs::read_to_string(fixture_dir(name).join("config.json")).unwrap();
        let config = UNetConfig::from_json_str(&text).unwrap();
        let store = ParamStore::new(42 + k as u64, Device::Cpu);
        let model = UNet2DModel::new(config, &store).unwrap();
        let io = Io::read(&fixture_dir(name).join("io.safetensors"));
        let out = forward(&model, &io);
        let dir = root.join(name);
        model.save_diffusers(&store, &dir).unwrap();
        write_rust_io(&dir.join("rust_io.safetensors"), &io, &out);
        let (reloaded, _) = UNet2DModel::load_diffusers(&dir, Device::Cpu).unwrap();
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

#[test]
fn half_precision_checkpoints_load_widened_to_f32() {
    use safetensors::tensor::TensorView;
    let src = fixture_dir("attn_heads_classes");
    let (model, store) = UNet2DModel::load_diffusers(&src, Device::Cpu).unwrap();
    for (dtype, tag) in [(Dtype::F16, "f16"), (Dtype::BF16, "bf16")] {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("unet-{tag}"));
        model.save_diffusers(&store, &dir).unwrap();
        // Rewrite the weights in half precision.
        let params = store.params();
        let halves: Vec<(String, Vec<usize>, Vec<u8>)> = params
            .iter()
            .map(|(name, v)| {
                let bytes = v
                    .tensor()
                    .to_vec()
                    .unwrap()
                    .iter()
                    .flat_map(|&x| match dtype {
                        Dtype::F16 => half::f16::from_f32(x).to_le_bytes(),
                        _ => half::bf16::from_f32(x).to_le_bytes(),
                    })
                    .collect();
                (name.clone(), v.shape().to_vec(), bytes)
            })
            .collect();
        let views: Vec<_> = halves
            .iter()
            .map(|(n, s, b)| (n.as_str(), TensorView::new(dtype, s.clone(), b).unwrap()))
            .collect();
        safetensors::serialize_to_file(views, &None, &dir.join(WEIGHTS_FILE)).unwrap();
        let (_, loaded) = UNet2DModel::load_diffusers(&dir, Device::Cpu).unwrap();
        for ((name, original), (_, widened)) in params.iter().zip(loaded.params()) {
            let (a, b) = (
                original.tensor().to_vec().unwrap(),
                widened.tensor().to_vec().unwrap(),
            );
            for (x, y) in a.iter().zip(&b) {
                let expected = match dtype {
                    Dtype::F16 => half::f16::from_f32(*x).to_f32(),
                    _ => half::bf16::from_f32(*x).to_f32(),
                };
                assert_eq!(expected.to_bits(), y.to_bits(), "{tag} {name}");
            }
        }
    }
}

/// A Fourier-embedded model embeds ln σ and divides by σ, so a noise level that is not positive is refused, naming
/// what the timesteps must be.
#[test]
fn a_fourier_model_refuses_noise_levels_that_are_not_positive() {
    let (model, _store) =
        UNet2DModel::load_diffusers(&fixture_dir("fourier_score_sde"), Device::Cpu).unwrap();
    let x = Var::constant(
        Tensor::zeros(&[2, 2, 8, 8], diffuse_tensor::DType::F32, Device::Cpu).unwrap(),
    );
    for bad in [0.0, -1.0, f64::NAN] {
        let err = model
            .forward(&x, &[0.5, bad], Some(&[0, 1]))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("noise levels σ > 0"), "{err}");
    }
}
