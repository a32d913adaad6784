//! The U-Net against diffusers itself: golden fixtures made by `fixtures/unet/make_fixtures.py` (diffusers 0.42.1's
//! `UNet2DModel`, randomly initialised, with its forward output), and the diffusers folder round trip.

use diffuse_autograd::Var;
use diffuse_models::unet::{UNet2DModel, UNetConfig, WEIGHTS_FILE};
use diffuse_nn::ParamStore;
use diffuse_tensor::{Device, Tensor};
use safetensors::tensor::Dtype;
use safetensors::SafeTensors;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

const FIXTURES: [&str; 4] = [
    "attn_heads_classes",
    "null_head_ddpm_style",
    "uneven_heads_nonsquare",
    "fourier_score_sde",
];

fn fixture_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/unet")
        .join(name)
}

/// A fixture's inputs and diffusers' output.
struct Io {
    sample: Tensor,
    timesteps: Vec<f64>,
    class_labels: Option<Vec<u32>>,
    output: Tensor,
}

fn read_io(path: &Path) -> Io {
    let bytes = std::fs::read(path).unwrap();
    let file = SafeTensors::deserialize(&bytes).unwrap();
    let tensors: HashMap<String, (Dtype, Vec<usize>, Vec<u8>)> = file
        .tensors()
        .into_iter()
        .map(|(name, v)| (name, (v.dtype(), v.shape().to_vec(), v.data().to_vec())))
        .collect();
    let f32_tensor = |name: &str| {
        let (dtype, shape, data) = &tensors[name];
        assert_eq!(*dtype, Dtype::F32);
        let values = data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect();
        Tensor::from_vec(values, shape, Device::Cpu).unwrap()
    };
    let (dtype, _, data) = &tensors["timesteps"];
    assert_eq!(*dtype, Dtype::F64);
    let timesteps = data
        .chunks_exact(8)
        .map(|b| f64::from_le_bytes(b.try_into().unwrap()))
        .collect();
    let class_labels = tensors.get("class_labels").map(|(dtype, _, data)| {
        assert_eq!(*dtype, Dtype::I64);
        data.chunks_exact(8)
            .map(|b| i64::from_le_bytes(b.try_into().unwrap()) as u32)
            .collect()
    });
    Io {
        sample: f32_tensor("sample"),
        timesteps,
        class_labels,
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

fn forward(model: &UNet2DModel, io: &Io) -> Tensor {
    let x = Var::constant(io.sample.clone());
    model
        .forward(&x, &io.timesteps, io.class_labels.as_deref())
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
        let io = read_io(&dir.join("io.safetensors"));
        let out = forward(&model, &io);
        let err = scaled_error(&out, &io.output);
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
        let (a, b) = (store.params(), store2.params());
        assert_eq!(a.len(), b.len());
        for ((name_a, va), (name_b, vb)) in a.iter().zip(&b) {
            assert_eq!(name_a, name_b);
            let bits = |v: &Var| -> Vec<u32> {
                v.tensor()
                    .to_vec()
                    .unwrap()
                    .iter()
                    .map(|x| x.to_bits())
                    .collect()
            };
            assert_eq!(bits(va), bits(vb), "{name_a} changed in the round trip");
        }
        let leftovers: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|f| f.ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
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
        let io = read_io(&fixture_dir(name).join("io.safetensors"));
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

fn write_rust_io(path: &Path, io: &Io, out: &Tensor) {
    use safetensors::tensor::TensorView;
    let f32_bytes = |t: &Tensor| -> Vec<u8> {
        t.to_vec()
            .unwrap()
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect()
    };
    let sample = f32_bytes(&io.sample);
    let output = f32_bytes(out);
    let timesteps: Vec<u8> = io.timesteps.iter().flat_map(|x| x.to_le_bytes()).collect();
    let labels: Option<Vec<u8>> = io
        .class_labels
        .as_ref()
        .map(|l| l.iter().flat_map(|&x| (x as i64).to_le_bytes()).collect());
    let mut views = vec![
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
    ];
    if let Some(labels) = &labels {
        views.push((
            "class_labels",
            TensorView::new(Dtype::I64, vec![labels.len() / 8], labels).unwrap(),
        ));
    }
    safetensors::serialize_to_file(views, &None, path).unwrap();
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
