//! The autoencoder's configuration and construction: every refusal names the key it refused.

use diffuse_autograd::Var;
use diffuse_models::vae::{AutoencoderKL, AutoencoderKLConfig, NAMED_CONFIGS};
use diffuse_nn::ParamStore;
use diffuse_tensor::{Device, Tensor};

/// A config with one key set to `value` (raw JSON), on top of the fashion-vae config.
fn with(key: &str, value: &str) -> String {
    let mut v: serde_json::Value = serde_json::from_str(
        &AutoencoderKLConfig::named("fashion-vae")
            .unwrap()
            .to_json_string(),
    )
    .unwrap();
    v[key] = serde_json::from_str(value).unwrap();
    v.to_string()
}

fn error_of(text: &str) -> String {
    AutoencoderKLConfig::from_json_str(text)
        .unwrap_err()
        .to_string()
}

/// Parameter counts of the same configs built by diffusers 0.42.1 (`fixtures/vae/make_fixtures.py --counts`).
#[test]
fn named_configs_build_with_diffusers_parameter_counts() {
    let counts = [("fashion-vae", 953_413)];
    assert_eq!(NAMED_CONFIGS, counts.map(|(name, _)| name));
    for (name, count) in counts {
        let store = ParamStore::new(0, Device::Cpu);
        let model = AutoencoderKL::new(AutoencoderKLConfig::named(name).unwrap(), &store).unwrap();
        assert_eq!(store.numel(), count, "{name}");
        assert_eq!(model.config(), &AutoencoderKLConfig::named(name).unwrap());
    }
}

#[test]
fn fashion_vae_maps_28x28_grey_images_to_4x7x7_latents_and_back() {
    let config = AutoencoderKLConfig::named("fashion-vae").unwrap();
    assert_eq!(config.latent_size(28, 28), (7, 7));
    assert_eq!(config.image_size(7, 7), (28, 28));
    let store = ParamStore::new(1, Device::Cpu);
    let model = AutoencoderKL::new(config, &store).unwrap();
    let x = Var::constant(Tensor::randn(&[2, 1, 28, 28], 3, 0, Device::Cpu).unwrap());
    let (posterior, decoded) = model.forward(&x, None).unwrap();
    assert_eq!(posterior.mean.shape(), [2, 4, 7, 7]);
    assert_eq!(posterior.kl().unwrap().shape(), [2]);
    assert_eq!(decoded.shape(), [2, 1, 28, 28]);
}

#[test]
fn the_latent_size_follows_the_asymmetric_padding() {
    let mut config = AutoencoderKLConfig::named("fashion-vae").unwrap();
    // ⌊(n − 2)/2⌋ + 1 per level: 11 → 5 → 2, 6 → 3 → 1 (as in the three_levels_plain fixture).
    assert_eq!(config.latent_size(11, 6), (2, 1));
    config.block_out_channels = vec![8];
    config.down_block_types.truncate(1);
    config.up_block_types.truncate(1);
    assert_eq!(config.latent_size(9, 4), (9, 4));
}

#[test]
fn a_round_trip_through_json_keeps_every_field() {
    let mut config = AutoencoderKLConfig::named("fashion-vae").unwrap();
    config.scaling_factor = 0.734_512_345_678_9;
    config.shift_factor = Some(-0.125);
    let back = AutoencoderKLConfig::from_json_str(&config.to_json_string()).unwrap();
    assert_eq!(back, config);
}

#[test]
fn diffusers_defaults_fill_what_a_file_leaves_out() {
    let config = AutoencoderKLConfig::from_json_str(r#"{"_class_name": "AutoencoderKL"}"#).unwrap();
    assert_eq!(config, AutoencoderKLConfig::default());
    assert_eq!(config.block_out_channels, [64]);
    assert_eq!(config.scaling_factor, 0.18215);
}

#[test]
fn unknown_keys_are_refused_by_name() {
    let err = error_of(&with("norm_type", "\"spatial\""));
    assert!(
        err.contains("config.json") && err.contains("\"norm_type\"") && err.contains("known:"),
        "{err}"
    );
    // diffusers' own bookkeeping keys are read past.
    AutoencoderKLConfig::from_json_str(&with("_name_or_path", "\"stabilityai/sd-vae\"")).unwrap();
}

#[test]
fn unsupported_values_are_refused_by_key() {
    for (key, value, says) in [
        ("_class_name", "\"VQModel\"", "_class_name = \"VQModel\""),
        (
            "down_block_types",
            "[\"DownEncoderBlock2D\", \"AttnDownEncoderBlock2D\", \"DownEncoderBlock2D\"]",
            "down_block_types[1] = \"AttnDownEncoderBlock2D\"",
        ),
        (
            "up_block_types",
            "[\"UpDecoderBlock2D\"]",
            "up_block_types has 1 entries but block_out_channels has 3",
        ),
        ("act_fn", "\"gelu\"", "act_fn = \"gelu\""),
        ("latents_mean", "[0.1, 0.2]", "latents_mean"),
        ("latents_std", "[1.0]", "latents_std"),
        ("latent_channels", "0", "latent_channels must be at least 1"),
        (
            "norm_num_groups",
            "5",
            "block_out_channels[0] = 32 is not a positive multiple of norm_num_groups = 5",
        ),
        ("scaling_factor", "0", "scaling_factor = 0 must be positive"),
        ("block_out_channels", "[]", "block_out_channels is empty"),
        ("layers_per_block", "\"two\"", "unexpected value"),
    ] {
        let err = error_of(&with(key, value));
        assert!(
            err.starts_with("config.json: ") && err.contains(says),
            "{key}: {err}"
        );
    }
}

#[test]
fn images_of_the_wrong_channels_and_latents_of_the_wrong_width_are_refused() {
    let store = ParamStore::new(2, Device::Cpu);
    let model =
        AutoencoderKL::new(AutoencoderKLConfig::named("fashion-vae").unwrap(), &store).unwrap();
    let rgb = Var::constant(
        Tensor::zeros(&[1, 3, 28, 28], diffuse_tensor::DType::F32, Device::Cpu).unwrap(),
    );
    let err = model.encode(&rgb).err().unwrap().to_string();
    assert!(
        err.contains("(N, 1, H, W)") && err.contains("[1, 3, 28, 28]"),
        "{err}"
    );
    let z = Var::constant(
        Tensor::zeros(&[1, 3, 7, 7], diffuse_tensor::DType::F32, Device::Cpu).unwrap(),
    );
    let err = model.decode(&z).err().unwrap().to_string();
    assert!(
        err.contains("(N, 4, h, w)") && err.contains("[1, 3, 7, 7]"),
        "{err}"
    );
}
