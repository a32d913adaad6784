//! The DiT against diffusers itself: golden fixtures made by `fixtures/dit/make_fixtures.py` (diffusers 0.42.1's
//! `DiTTransformer2DModel`, randomly initialised, with its forward output), the diffusers folder round trip, and a
//! folder saved here for `make_fixtures.py --check` to load in diffusers.

use diffuse_autograd::Var;
use diffuse_models::dit::DiTConfig;
use diffuse_models::{Backbone, BackboneConfig};
use diffuse_nn::ParamStore;
use diffuse_tensor::{Device, Tensor};
use safetensors::tensor::{Dtype, TensorView};
use safetensors::SafeTensors;
use std::path::{Path, PathBuf};

const FIXTURES: [&str; 3] = [
    "learned_sigma_rescaled_positions",
    "exact_gelu_no_bias_patch4",
    "latent_patch1_one_head",
];

fn fixture_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/dit")
        .join(name)
}

/// A fixture's inputs and diffusers' output.
struct Io {
    sample: Tensor,
    timesteps: Vec<f64>,
    class_labels: Vec<u32>,
    output: Tensor,
}

fn read_io(path: &Path) -> Io {
    let bytes = std::fs::read(path).unwrap();
    let file = SafeTensors::deserialize(&bytes).unwrap();
    let words = |name: &str, dtype: Dtype| {
        let view = file.tensor(name).unwrap();
        assert_eq!(view.dtype(), dtype, "{name}");
        (view.shape().to_vec(), view.data().to_vec())
    };
    let f32_tensor = |name: &str| {
        let (shape, data) = words(name, Dtype::F32);
        let values = data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect();
        Tensor::from_vec(values, &shape, Device::Cpu).unwrap()
    };
    let (_, t) = words("timesteps", Dtype::F64);
    let (_, labels) = words("class_labels", Dtype::I64);
    Io {
        sample: f32_tensor("sample"),
        timesteps: t
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes(b.try_into().unwrap()))
            .collect(),
        class_labels: labels
            .chunks_exact(8)
            .map(|b| i64::from_le_bytes(b.try_into().unwrap()) as u32)
            .collect(),
        output: f32_tensor("output"),
    }
}

/// Largest |a − b| over the largest |b|.
fn scaled_error(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.shape(), b.shape());
    let (a, b) = (a.to_vec().unwrap(), b.to_vec().unwrap());
    let scale = b.iter().fold(0f32, |m, x| m.max(x.abs()));
    let diff = a
        .iter()
        .zip(&b)
        .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
    diff / scale
}

fn forward(model: &Backbone, io: &Io) -> Tensor {
    let x = Var::constant(io.sample.clone());
    model
        .forward(&x, &io.timesteps, Some(&io.class_labels), None)
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
        let io = read_io(&dir.join("io.safetensors"));
        let out = forward(&model, &io);
        let err = scaled_error(&out, &io.output);
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

fn bits(v: &Var) -> Vec<u32> {
    v.tensor()
        .to_vec()
        .unwrap()
        .iter()
        .map(|x| x.to_bits())
        .collect()
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
        let (a, b) = (store.params(), store2.params());
        assert_eq!(a.len(), b.len());
        for ((name_a, va), (name_b, vb)) in a.iter().zip(&b) {
            assert_eq!(name_a, name_b);
            assert_eq!(bits(va), bits(vb), "{name_a} changed in the round trip");
        }
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
        let io = read_io(&fixture_dir(name).join("io.safetensors"));
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

fn write_rust_io(path: &Path, io: &Io, out: &Tensor) {
    let f32_bytes = |t: &Tensor| -> Vec<u8> {
        t.to_vec()
            .unwrap()
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect()
    };
    let (sample, output) = (f32_bytes(&io.sample), f32_bytes(out));
    let timesteps: Vec<u8> = io.timesteps.iter().flat_map(|x| x.to_le_bytes()).collect();
    let labels: Vec<u8> = io
        .class_labels
        .iter()
        .flat_map(|&x| i64::from(x).to_le_bytes())
        .collect();
    let views = vec![
        (
            "sample",
            TensorView::new(Dtype::F32, io.sample.shape().to_vec(), &sample).unwrap(),
        ),
        (
            "output",
            TensorView::new(Dtype::F32, out.shape().to_vec(), &output).unwrap(),
        ),
        (
            "timesteps",
            TensorView::new(Dtype::F64, vec![io.timesteps.len()], &timesteps).unwrap(),
        ),
        (
            "class_labels",
            TensorView::new(Dtype::I64, vec![io.class_labels.len()], &labels).unwrap(),
        ),
    ];
    safetensors::serialize_to_file(views, &None, path).unwrap();
}
