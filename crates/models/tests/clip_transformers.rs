//! CLIP against transformers itself: golden fixtures made by `fixtures/clip/make_fixtures.py` (transformers 5.25's
//! `CLIPTextModel` of two tiny non-default configs and a `CLIPModel` of both towers, every parameter random), the
//! folder round trips, the causal mask, the strict config, and gradients of the contrastive loss.

use diffuse_autograd::Var;
use diffuse_models::clip::{
    contrastive_loss, ClipConfig, ClipModel, ClipTextConfig, ClipTextModel,
};
use diffuse_nn::ParamStore;
use diffuse_tensor::{Device, Tensor};
use safetensors::tensor::Dtype;
use safetensors::SafeTensors;
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/clip")
        .join(name)
}

struct Io(Vec<u8>);

impl Io {
    fn read(dir: &Path) -> Io {
        Io(std::fs::read(dir.join("io.safetensors")).unwrap())
    }

    fn f32s(&self, name: &str) -> (Vec<usize>, Vec<f32>) {
        let file = SafeTensors::deserialize(&self.0).unwrap();
        let view = file.tensor(name).unwrap();
        assert_eq!(view.dtype(), Dtype::F32, "{name}");
        let values = view
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect();
        (view.shape().to_vec(), values)
    }

    fn ids(&self) -> (usize, Vec<u32>) {
        let file = SafeTensors::deserialize(&self.0).unwrap();
        let view = file.tensor("input_ids").unwrap();
        assert_eq!(view.dtype(), Dtype::I64);
        let ids = view
            .data()
            .chunks_exact(8)
            .map(|b| i64::from_le_bytes(b.try_into().unwrap()) as u32)
            .collect();
        (view.shape()[0], ids)
    }
}

/// max |got − want| / max |want|. Each output is a few f32 GEMMs of at most 24 terms, LayerNorms and softmaxes over at
/// most 17 entries, through at most two layers; f32 rounding accumulates to ~1e-6 relative, so 1e-4 leaves a wide
/// margin while any mistake in the architecture (a missing mask, a wrong activation, a mis-read end token) is O(1).
fn assert_close(what: &str, got: &Var, (shape, want): &(Vec<usize>, Vec<f32>)) {
    assert_eq!(got.shape(), shape.as_slice(), "{what}");
    let got = got.tensor().to_vec().unwrap();
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
    let err = got
        .iter()
        .zip(want)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(
        err <= 1e-4 * scale,
        "{what}: max difference {err} against a scale of {scale}"
    );
}

#[test]
fn text_encoder_matches_transformers() {
    for name in ["text_quick_gelu_eos5", "text_gelu_legacy_eos"] {
        let dir = fixture(name);
        let (model, _store) = ClipTextModel::load(&dir, Device::Cpu).unwrap();
        let io = Io::read(&dir);
        let (n, ids) = io.ids();
        let out = model.forward(&ids, n).unwrap();
        assert_close(name, &out.last_hidden_state, &io.f32s("last_hidden_state"));
        assert_close(name, &out.pooled, &io.f32s("pooler_output"));
    }
}

#[test]
fn clip_model_matches_transformers() {
    let dir = fixture("clip_model");
    let (model, _store) = ClipModel::load(&dir, Device::Cpu).unwrap();
    let io = Io::read(&dir);
    let (n, ids) = io.ids();
    let (shape, pixels) = io.f32s("pixel_values");
    let pixels = Var::constant(Tensor::from_vec(pixels, &shape, Device::Cpu).unwrap());
    let text = model.text_embeds(&ids, n).unwrap();
    let image = model.image_embeds(&pixels).unwrap();
    assert_close("text_embeds", &text, &io.f32s("text_embeds"));
    assert_close("image_embeds", &image, &io.f32s("image_embeds"));
    let logits = model.logits_per_text(&text, &image).unwrap();
    assert_close("logits_per_text", &logits, &io.f32s("logits_per_text"));
    let loss = contrastive_loss(&logits).unwrap().reshape(&[1]).unwrap();
    assert_close("loss", &loss, &io.f32s("loss"));
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("diffuse-clip-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn tensor_names(path: &Path) -> Vec<String> {
    let bytes = std::fs::read(path).unwrap();
    let mut names: Vec<String> = SafeTensors::deserialize(&bytes)
        .unwrap()
        .names()
        .into_iter()
        .cloned()
        .collect();
    names.sort();
    names
}

#[test]
fn folders_round_trip_with_transformers_names() {
    let src = fixture("clip_model");
    let (model, store) = ClipModel::load(&src, Device::Cpu).unwrap();
    let dir = TempDir::new("roundtrip");
    model.save(&store, &dir.0).unwrap();
    assert_eq!(
        tensor_names(&dir.0.join("model.safetensors")),
        tensor_names(&src.join("model.safetensors"))
    );
    let config = std::fs::read_to_string(dir.0.join("config.json")).unwrap();
    assert_eq!(&ClipConfig::from_json_str(&config).unwrap(), model.config());
    // The text tower alone, as a text_encoder/ folder: the same tensor names a CLIPTextModel saves.
    let text_dir = dir.0.join("text_encoder");
    model.text_model.save(&store, &text_dir).unwrap();
    let (text, _) = ClipTextModel::load(&text_dir, Device::Cpu).unwrap();
    let io = Io::read(&src);
    let (n, ids) = io.ids();
    let a = text
        .forward(&ids, n)
        .unwrap()
        .last_hidden_state
        .tensor()
        .to_vec()
        .unwrap();
    let b = model
        .text_model
        .forward(&ids, n)
        .unwrap()
        .last_hidden_state
        .tensor()
        .to_vec()
        .unwrap();
    assert_eq!(a, b);
    let names = tensor_names(&text_dir.join("model.safetensors"));
    assert!(
        names.iter().all(|n| n.starts_with("text_model.")),
        "{names:?}"
    );
    // transformers 5 saves a CLIPTextModel without the text_model. prefix (and loads both); 4.x and diffusers' pipeline
    // folders have it, so diffuse writes it.
    let reference = tensor_names(&fixture("text_quick_gelu_eos5").join("model.safetensors"));
    let layer0 = |v: &[String]| {
        v.iter()
            .filter(|n| !n.contains("layers.1"))
            .cloned()
            .collect::<Vec<_>>()
    };
    let prefixed: Vec<String> = reference
        .iter()
        .map(|n| format!("text_model.{n}"))
        .collect();
    assert_eq!(layer0(&names), layer0(&prefixed));
}

#[test]
fn position_ids_buffer_of_older_folders_is_skipped() {
    let src = fixture("text_quick_gelu_eos5");
    let (model, store) = ClipTextModel::load(&src, Device::Cpu).unwrap();
    let dir = TempDir::new("position-ids");
    model.save(&store, &dir.0).unwrap();
    // Rewrite the weights with transformers 4.x's int64 buffer added.
    let bytes = std::fs::read(dir.0.join("model.safetensors")).unwrap();
    let file = SafeTensors::deserialize(&bytes).unwrap();
    let positions: Vec<u8> = (0..10i64).flat_map(|i| i.to_le_bytes()).collect();
    let mut views: Vec<(String, safetensors::tensor::TensorView)> =
        file.tensors().into_iter().collect();
    views.push((
        "text_model.embeddings.position_ids".to_string(),
        safetensors::tensor::TensorView::new(Dtype::I64, vec![1, 10], &positions).unwrap(),
    ));
    std::fs::write(
        dir.0.join("model.safetensors"),
        safetensors::serialize(views, &None).unwrap(),
    )
    .unwrap();
    ClipTextModel::load(&dir.0, Device::Cpu).unwrap();
}

#[test]
fn config_keys_this_implementation_does_not_build_are_refused_by_name() {
    let text =
        std::fs::read_to_string(fixture("text_quick_gelu_eos5").join("config.json")).unwrap();
    let mut value: serde_json::Value = serde_json::from_str(&text).unwrap();
    value["use_rotary_positions"] = true.into();
    let message = ClipTextConfig::from_json_str(&value.to_string())
        .unwrap_err()
        .to_string();
    assert!(message.contains("use_rotary_positions"), "{message}");
    for (key, bad, expected) in [
        (
            "hidden_act",
            serde_json::json!("relu"),
            "hidden_act = \"relu\"",
        ),
        (
            "num_attention_heads",
            serde_json::json!(3),
            "does not split into num_attention_heads = 3",
        ),
        (
            "attention_dropout",
            serde_json::json!(0.1),
            "attention_dropout = 0.1",
        ),
        (
            "eos_token_id",
            serde_json::Value::Null,
            "eos_token_id is null",
        ),
    ] {
        let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
        v[key] = bad;
        let message = ClipTextConfig::from_json_str(&v.to_string())
            .unwrap_err()
            .to_string();
        assert!(message.contains(expected), "{message}");
    }
}

#[test]
fn bad_inputs_are_refused_with_the_reason() {
    let (model, _) = ClipTextModel::load(&fixture("text_quick_gelu_eos5"), Device::Cpu).unwrap();
    let message = model.forward(&[4, 64, 5], 1).err().unwrap().to_string();
    assert!(
        message.contains("token id 64 is outside the vocabulary of 64"),
        "{message}"
    );
    let message = model.forward(&[4; 11], 1).err().unwrap().to_string();
    assert!(
        message.contains("longer than max_position_embeddings = 10"),
        "{message}"
    );
    let message = model.forward(&[4; 5], 2).err().unwrap().to_string();
    assert!(message.contains("do not make 2 sequences"), "{message}");
}

/// Token i attends only to tokens j ≤ i: changing the last token changes only the last row of the output.
#[test]
fn the_mask_is_causal() {
    let (model, _) = ClipTextModel::load(&fixture("text_quick_gelu_eos5"), Device::Cpu).unwrap();
    let a = [4u32, 10, 11, 12, 13, 5];
    let mut b = a;
    b[5] = 20;
    let ha = model
        .forward(&a, 1)
        .unwrap()
        .last_hidden_state
        .tensor()
        .to_vec()
        .unwrap();
    let hb = model
        .forward(&b, 1)
        .unwrap()
        .last_hidden_state
        .tensor()
        .to_vec()
        .unwrap();
    assert_eq!(ha[..5 * 16], hb[..5 * 16]);
    assert_ne!(ha[5 * 16..], hb[5 * 16..]);
}

/// The contrastive loss through both towers: every parameter gets a finite, non-zero gradient, and the central
/// difference (L(θ + εd) − L(θ − εd)) / 2ε along d = ∇L/|∇L| equals |∇L|. With ε = 1e-2 in f32 the truncation error is
/// O(ε²·L''') and the rounding error about 2⁻²⁴·L/ε; both stay well below the 2 % allowed.
#[test]
fn contrastive_gradient_predicts_the_change_of_the_loss() {
    let (model, store) = ClipModel::load(&fixture("clip_model"), Device::Cpu).unwrap();
    let io = Io::read(&fixture("clip_model"));
    let (n, ids) = io.ids();
    let (shape, pixels) = io.f32s("pixel_values");
    let pixels = Var::constant(Tensor::from_vec(pixels, &shape, Device::Cpu).unwrap());
    let loss = || {
        let logits = model
            .logits_per_text(
                &model.text_embeds(&ids, n).unwrap(),
                &model.image_embeds(&pixels).unwrap(),
            )
            .unwrap();
        contrastive_loss(&logits).unwrap()
    };
    let grads = loss().backward().unwrap();
    let mut directions = Vec::new();
    for (name, param) in store.params() {
        let g = grads
            .get(&param)
            .unwrap_or_else(|| panic!("{name} got no gradient"));
        let values = g.to_vec().unwrap();
        assert!(values.iter().all(|v| v.is_finite()), "{name}");
        // Rows of tokens absent from the batch, and positions past the sequences, get no gradient.
        if !name.ends_with("token_embedding.weight") {
            assert!(values.iter().any(|&v| v != 0.0), "{name} is all zero");
        }
        if name.contains("layers.0.self_attn.q_proj.weight") || name.ends_with("logit_scale") {
            directions.push((param, values));
        }
    }
    assert_eq!(directions.len(), 3);
    let norm = directions
        .iter()
        .flat_map(|(_, g)| g)
        .map(|v| f64::from(*v).powi(2))
        .sum::<f64>()
        .sqrt();
    let eps = 1e-2;
    let shift = |sign: f32| {
        for (param, g) in &directions {
            let moved: Vec<f32> = param
                .tensor()
                .to_vec()
                .unwrap()
                .iter()
                .zip(g)
                .map(|(p, d)| p + sign * eps * (*d as f64 / norm) as f32)
                .collect();
            param
                .tensor()
                .assign(&Tensor::from_vec(moved, param.shape(), Device::Cpu).unwrap())
                .unwrap();
        }
    };
    shift(1.0);
    let up = loss().tensor().to_vec().unwrap()[0];
    shift(-2.0);
    let down = loss().tensor().to_vec().unwrap()[0];
    shift(1.0);
    let slope = f64::from(up - down) / (2.0 * f64::from(eps));
    assert!(
        (slope - norm).abs() <= 0.02 * norm,
        "slope {slope} vs |grad| {norm}"
    );
    let _ = ParamStore::new(0, Device::Cpu);
}
