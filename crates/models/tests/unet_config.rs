//! Configuration, construction and the errors of the U-Net: every refusal names what it refused.

use diffuse_autograd::Var;
use diffuse_models::unet::{UNet2DModel, UNetConfig, CONFIG_FILE, NAMED_CONFIGS, WEIGHTS_FILE};
use diffuse_nn::ParamStore;
use diffuse_tensor::{Device, Tensor};
use safetensors::tensor::{Dtype, TensorView};
use std::path::{Path, PathBuf};

fn fixture_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/unet")
        .join(name)
}

fn tiny_config() -> UNetConfig {
    let text =
        std::fs::read_to_string(fixture_dir("attn_heads_classes").join(CONFIG_FILE)).unwrap();
    UNetConfig::from_json_str(&text).unwrap()
}

/// Parameter counts of the same configs built by diffusers 0.42.1
/// (`make_fixtures.py --counts`: `sum(p.numel() for p in UNet2DModel(**config).parameters())`).
#[test]
fn named_configs_build_with_diffusers_parameter_counts() {
    for (name, count) in [
        ("fashion-small", 1_114_209),
        ("fashion-base", 6_804_225),
        ("fashion-latent", 960_324),
        ("fashion-small-14", 702_753),
        ("fashion-sr", 1_114_497),
        ("fashion-inpaint", 1_114_785),
        ("ddpm-cifar10", 35_746_307),
    ] {
        let store = ParamStore::new(0, Device::Cpu);
        let model = UNet2DModel::new(UNetConfig::named(name).unwrap(), &store).unwrap();
        assert_eq!(store.numel(), count, "{name}");
        assert_eq!(model.config(), &UNetConfig::named(name).unwrap());
    }
}

#[test]
fn named_configs_map_a_sample_to_its_own_shape() {
    for (name, shape, labels) in [
        ("fashion-small", [2, 1, 28, 28], Some(&[3u32, 10][..])),
        ("fashion-base", [1, 1, 28, 28], Some(&[10u32][..])),
        ("fashion-latent", [2, 4, 7, 7], Some(&[0u32, 10][..])),
        ("fashion-small-14", [1, 1, 14, 14], Some(&[4u32][..])),
        ("ddpm-cifar10", [1, 3, 32, 32], None),
    ] {
        let store = ParamStore::new(1, Device::Cpu);
        let model = UNet2DModel::new(UNetConfig::named(name).unwrap(), &store).unwrap();
        let x = Var::constant(Tensor::randn(&shape, 3, 0, Device::Cpu).unwrap());
        let t = [10.0, 500.5];
        let y = model.forward(&x, &t[..shape[0]], labels).unwrap();
        assert_eq!(y.shape(), &shape, "{name}");
        assert!(
            y.tensor().to_vec().unwrap().iter().all(|v| v.is_finite()),
            "{name}"
        );
    }
}

#[test]
fn unknown_config_name_lists_the_known_ones() {
    let err = UNetConfig::named("fashion-huge").unwrap_err().to_string();
    assert!(err.contains("fashion-huge"), "{err}");
    for name in NAMED_CONFIGS {
        assert!(err.contains(name), "{err}");
    }
}

#[test]
fn config_json_round_trips_and_names_the_class() {
    for name in NAMED_CONFIGS {
        let config = UNetConfig::named(name).unwrap();
        let text = config.to_json_string();
        assert!(text.contains("\"_class_name\": \"UNet2DModel\""), "{text}");
        assert_eq!(UNetConfig::from_json_str(&text).unwrap(), config);
    }
}

#[test]
fn unknown_fields_are_ignored_and_missing_ones_take_diffusers_defaults() {
    let config = UNetConfig::from_json_str(
        r#"{"_name_or_path": "x", "some_future_option": [1, 2], "block_out_channels": [32, 64],
            "down_block_types": ["DownBlock2D", "AttnDownBlock2D"], "up_block_types": ["AttnUpBlock2D", "UpBlock2D"]}"#,
    )
    .unwrap();
    assert_eq!(config.in_channels, 3);
    assert_eq!(config.norm_num_groups, 32);
    assert_eq!(config.attention_head_dim, Some(8));
    assert!(config.flip_sin_to_cos);
}

/// A valid config as JSON with `key` set to `value`.
fn with(key: &str, value: &str) -> String {
    let mut json: serde_json::Value =
        serde_json::from_str(&tiny_config().to_json_string()).unwrap();
    json[key] = serde_json::from_str(value).unwrap();
    json.to_string()
}

#[test]
fn unsupported_options_are_errors_naming_option_and_value() {
    let err = UNetConfig::from_json_str(&with("resnet_time_scale_shift", "\"scale_shift\""))
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "config.json: resnet_time_scale_shift = \"scale_shift\" is not supported; supported: \"default\""
    );
    for (key, value, expect) in [
        (
            "time_embedding_type",
            "\"learned\"",
            "time_embedding_type = \"learned\"",
        ),
        ("act_fn", "\"gelu\"", "act_fn = \"gelu\""),
        ("dropout", "0.1", "dropout = 0.1"),
        (
            "class_embed_type",
            "\"timestep\"",
            "class_embed_type = \"timestep\"",
        ),
        (
            "downsample_type",
            "\"resnet\"",
            "downsample_type = \"resnet\"",
        ),
        ("upsample_type", "\"resnet\"", "upsample_type = \"resnet\""),
        ("add_attention", "false", "add_attention = false"),
        ("mid_block_type", "null", "mid_block_type = None"),
        (
            "mid_block_scale_factor",
            "2",
            "mid_block_scale_factor = 2.0",
        ),
        ("time_embedding_dim", "64", "time_embedding_dim = 64"),
        ("attn_norm_num_groups", "2", "attn_norm_num_groups = 2"),
        (
            "up_block_types",
            "[\"CrossAttnUpBlock2D\", \"UpBlock2D\"]",
            "up_block_types[0] = \"CrossAttnUpBlock2D\"",
        ),
        (
            "down_block_types",
            "[\"DownBlock2D\", \"SkipDownBlock2D\"]",
            "down_block_types[1] = \"SkipDownBlock2D\"",
        ),
        ("norm_num_groups", "3", "norm_num_groups = 3"),
        (
            "block_out_channels",
            "[4, 8, 8]",
            "block_out_channels has 3 entries",
        ),
        (
            "attention_head_dim",
            "16",
            "attention_head_dim = 16 exceeds",
        ),
        (
            "_class_name",
            "\"UNet2DConditionModel\"",
            "_class_name = \"UNet2DConditionModel\"",
        ),
        ("layers_per_block", "\"two\"", "unexpected value"),
    ] {
        let err = UNetConfig::from_json_str(&with(key, value))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("config.json: "), "{key}: {err}");
        assert!(err.contains(expect), "{key}: expected '{expect}' in: {err}");
    }
}

/// Copies the tiny fixture into a scratch folder and replaces its weights by `tensors`.
fn folder_with_weights(
    tag: &str,
    edit: impl FnOnce(&mut Vec<(String, Vec<usize>, Vec<u8>)>),
) -> PathBuf {
    let (_, store) =
        UNet2DModel::load_diffusers(&fixture_dir("attn_heads_classes"), Device::Cpu).unwrap();
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("unet-bad-{tag}"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(
        fixture_dir("attn_heads_classes").join(CONFIG_FILE),
        dir.join(CONFIG_FILE),
    )
    .unwrap();
    let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = store
        .params()
        .into_iter()
        .map(|(name, v)| {
            let bytes = v
                .tensor()
                .to_vec()
                .unwrap()
                .iter()
                .flat_map(|x| x.to_le_bytes())
                .collect();
            (name, v.shape().to_vec(), bytes)
        })
        .collect();
    edit(&mut tensors);
    let views: Vec<_> = tensors
        .iter()
        .map(|(n, s, b)| {
            (
                n.as_str(),
                TensorView::new(Dtype::F32, s.clone(), b).unwrap(),
            )
        })
        .collect();
    safetensors::serialize_to_file(views, &None, &dir.join(WEIGHTS_FILE)).unwrap();
    dir
}

fn load_error(dir: &Path) -> String {
    match UNet2DModel::load_diffusers(dir, Device::Cpu) {
        Ok(_) => panic!("{} loaded", dir.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn loading_names_missing_extra_and_misshapen_tensors() {
    let name = "down_blocks.1.attentions.0.to_q.weight";
    let dir = folder_with_weights("missing", |t| t.retain(|(n, _, _)| n != name));
    let err = load_error(&dir);
    assert!(
        err.contains("missing tensor") && err.contains(name),
        "{err}"
    );

    let dir = folder_with_weights("shape", |t| {
        let entry = t.iter_mut().find(|(n, _, _)| n == name).unwrap();
        entry.1 = vec![entry.1.iter().product()];
    });
    let err = load_error(&dir);
    assert!(
        err.contains(name) && err.contains("shape [64]") && err.contains("[8, 8]"),
        "{err}"
    );

    let dir = folder_with_weights("extra", |t| {
        t.push(("mid_block.extra.weight".into(), vec![1], vec![0; 4]))
    });
    let err = load_error(&dir);
    assert!(err.contains("mid_block.extra.weight"), "{err}");
}

#[test]
fn loading_names_a_missing_file() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("unet-empty");
    std::fs::create_dir_all(&dir).unwrap();
    let _ = std::fs::remove_file(dir.join(CONFIG_FILE));
    assert!(load_error(&dir).contains(CONFIG_FILE));
    std::fs::copy(
        fixture_dir("attn_heads_classes").join(CONFIG_FILE),
        dir.join(CONFIG_FILE),
    )
    .unwrap();
    assert!(load_error(&dir).contains(WEIGHTS_FILE));
}

#[test]
fn forward_refuses_inputs_that_do_not_fit() {
    let store = ParamStore::new(0, Device::Cpu);
    let model = UNet2DModel::new(tiny_config(), &store).unwrap();
    let x = |shape: &[usize]| {
        Var::constant(Tensor::zeros(shape, diffuse_tensor::DType::F32, Device::Cpu).unwrap())
    };
    let good = x(&[2, 3, 8, 8]);
    let err = |r: diffuse_models::Result<Var>| r.expect_err("an error").to_string();
    assert!(err(model.forward(&good, &[1.0, 2.0], None)).contains("pass class labels"));
    assert!(err(model.forward(&good, &[1.0, 2.0], Some(&[0, 5]))).contains("class label 5"));
    assert!(err(model.forward(&good, &[1.0, 2.0], Some(&[0])))
        .contains("1 class labels for a batch of 2"));
    assert!(err(model.forward(&good, &[1.0, 2.0, 3.0], Some(&[0, 1]))).contains("3 timesteps"));
    assert!(err(model.forward(&x(&[2, 1, 8, 8]), &[1.0], Some(&[0, 1]))).contains("(N, 3, H, W)"));
    assert!(err(model.forward(&x(&[2, 3, 7, 7]), &[1.0], Some(&[0, 1]))).contains("halving"));
    assert!(model.forward(&good, &[1.0], Some(&[0, 1])).is_ok());

    let mut unconditional = tiny_config();
    unconditional.num_class_embeds = None;
    let model = UNet2DModel::new(unconditional, &ParamStore::new(0, Device::Cpu)).unwrap();
    assert!(err(model.forward(&good, &[1.0], Some(&[0, 1]))).contains("no class embedding"));
}
