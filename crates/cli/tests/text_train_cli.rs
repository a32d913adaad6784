//! Text to image end to end on tiny models: `clip train`, then `train --text` (pixels) and `train --text --vae`
//! (latents), each run a diffusers StableDiffusionPipeline folder that `--resume` continues bit for bit and
//! `sample --prompt` samples; and a text encoder that does not fit the U-Net, a tokenizer that does not fit the text
//! encoder, or a missing folder refused with both sides named and nothing written.

use std::path::{Path, PathBuf};

mod common;
use common::{
    fails, failure, ok, success, synthetic_data, temp_dir, tiny_train, TINY_CLIP, TINY_VAE_CONFIG,
};

/// A two-level cross-attention U-Net over 28×28 grey pixels attending to 16-wide text states (the tiny CLIP's).
const TINY_TEXT_CONFIG: &str = r#"{
  "_class_name": "UNet2DConditionModel", "sample_size": 28, "in_channels": 1, "out_channels": 1,
  "block_out_channels": [8, 16], "layers_per_block": 1,
  "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D"],
  "up_block_types": ["CrossAttnUpBlock2D", "UpBlock2D"],
  "attention_head_dim": 2, "norm_num_groups": 4, "cross_attention_dim": 16, "use_linear_projection": true
}"#;

struct Setup {
    dir: PathBuf,
    data: String,
    clip: String,
}

impl Setup {
    /// 40 synthetic labelled images (captions generated from the labels) and a tiny CLIP trained on them.
    fn new(name: &str) -> Setup {
        let dir = temp_dir(name);
        let data = dir.join("data");
        synthetic_data(&data, 40, true);
        std::fs::write(dir.join("text.json"), TINY_TEXT_CONFIG).unwrap();
        let setup = Setup {
            data: data.to_str().unwrap().to_string(),
            clip: dir.join("clip").to_str().unwrap().to_string(),
            dir,
        };
        let mut args = vec![
            "clip",
            "train",
            "--data",
            &setup.data,
            "--out",
            &setup.clip,
            "--steps",
            "2",
        ];
        args.extend(TINY_CLIP);
        args.extend(["--batch-size", "8", "--eval-images", "0", "--warmup", "1"]);
        ok(&args);
        setup
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).to_str().unwrap().to_string()
    }

    /// `diffuse train` with the common tiny settings and `extra`.
    fn train(&self, extra: &[&str]) -> std::process::Output {
        tiny_train(&self.data, extra)
    }
}

fn same_bytes(a: &Path, b: &Path, files: &[&str]) {
    for file in files {
        let (x, y) = (
            std::fs::read(a.join(file)).unwrap(),
            std::fs::read(b.join(file)).unwrap(),
        );
        assert!(
            x == y,
            "{file} differs between {} and {}",
            a.display(),
            b.display()
        );
    }
}

#[test]
fn a_text_run_is_a_stable_diffusion_pipeline_that_resumes_exactly_and_samples_from_prompts() {
    let s = Setup::new("text-train");
    let (config, run, straight) = (s.path("text.json"), s.path("run"), s.path("straight"));
    let stderr = success(s.train(&[
        "--config", &config, "--text", &s.clip, "--out", &run, "--steps", "4",
    ]));
    assert!(stderr.contains("caption dropout 0.1"), "{stderr}");
    assert!(stderr.contains("--prompt"), "{stderr}");
    let step = Path::new(&run).join("step-4");
    let index: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(step.join("model_index.json")).unwrap())
            .unwrap();
    assert_eq!(index["_class_name"], "StableDiffusionPipeline");
    assert_eq!(index["unet"][1], "UNet2DConditionModel");
    assert_eq!(index["text_encoder"][1], "CLIPTextModel");
    assert_eq!(index["tokenizer"][1], "CLIPTokenizer");
    assert!(index["vae"][0].is_null(), "{index}");
    for file in [
        "unet/diffusion_pytorch_model.safetensors",
        "text_encoder/model.safetensors",
        "tokenizer/vocab.json",
        "scheduler/scheduler_config.json",
        "trainer_state.json",
    ] {
        assert!(step.join(file).is_file(), "{file} missing");
    }
    // The frozen text encoder is saved as it was loaded.
    let clip_step = Path::new(&s.clip).join("step-2");
    same_bytes(&clip_step, &step, &["text_encoder/model.safetensors"]);
    assert!(Path::new(&run).join("samples/step-2.png").is_file());
    assert!(Path::new(&run).join("samples/final.png").is_file());

    // Stopped after its step-2 checkpoint, then resumed: the same bytes as the straight run.
    success(s.train(&[
        "--config", &config, "--text", &s.clip, "--out", &straight, "--steps", "4",
    ]));
    std::fs::remove_dir_all(Path::new(&run).join("step-4")).unwrap();
    std::fs::write(Path::new(&run).join("latest"), "step-2\n").unwrap();
    let stderr = success(s.train(&["--resume", &run, "--steps", "4"]));
    assert!(stderr.contains("resuming"), "{stderr}");
    same_bytes(
        &Path::new(&straight).join("step-4"),
        &step,
        &[
            "model/diffusion_pytorch_model.safetensors",
            "unet/diffusion_pytorch_model.safetensors",
            "optimizer.safetensors",
            "text_encoder/model.safetensors",
            "model_index.json",
        ],
    );
    let err = failure(s.train(&["--resume", &run, "--steps", "5", "--text", &s.clip]));
    assert!(err.contains("keeps the text encoder"), "{err}");

    // The run samples from prompts, a grid labelled with them.
    let (grid, tensor) = (s.path("grid.png"), s.path("samples.safetensors"));
    ok(&[
        "sample",
        "--checkpoint",
        &run,
        "--prompt",
        "a photo of a dark dress",
        "--prompt",
        "a coat",
        "--guidance",
        "3",
        "--steps",
        "2",
        "--count",
        "2",
        "--out",
        &grid,
        "--out-tensor",
        &tensor,
    ]);
    assert!(Path::new(&grid).is_file());
    let err = fails(&[
        "sample",
        "--checkpoint",
        &run,
        "--steps",
        "2",
        "--out",
        &grid,
    ]);
    assert!(err.contains("--prompt"), "{err}");

    // eval --prompts default: 40 prompts naming every class, paired for tone and build, scored with the run's CLIP.
    let json = s.path("prompts.json");
    let stderr = ok(&[
        "eval",
        "--checkpoint",
        &run,
        "--prompts",
        "default",
        "--per-prompt",
        "1",
        "--steps",
        "2",
        "--data",
        &s.data,
        "--clip-model",
        &s.clip,
        "--guidance",
        "2",
        "--json",
        &json,
    ]);
    assert!(
        stderr.contains("prompt adherence") && stderr.contains("CLIP score"),
        "{stderr}"
    );
    let value: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let report = &value["prompt_report"];
    assert_eq!(report["prompts"], 40);
    assert_eq!(report["class_samples"], 40);
    assert!(
        (0.0..=1.0).contains(&report["prompt_adherence"].as_f64().unwrap()),
        "{report}"
    );
    for (i, axis) in ["tone", "build"].iter().enumerate() {
        let a = &report["attribute_adherence"][i];
        assert_eq!(a["attribute"], *axis);
        assert_eq!(a["prompt_pairs"], 20);
        assert!(
            (0.0..=1.0).contains(&a["fraction"].as_f64().unwrap()),
            "{a}"
        );
    }
    assert!(
        (0.0..=100.0).contains(&report["clip_score"].as_f64().unwrap()),
        "{report}"
    );
    assert!(report["report"]["fd_fashion_classifier"]
        .as_f64()
        .unwrap()
        .is_finite());
    assert_eq!(value["settings"]["guidance"], 2.0);
    // A file: one tone pair, and a prompt that names no class (left out of the adherence, in the FD).
    let file = s.path("prompts.txt");
    std::fs::write(&file, "a dark coat\na light coat\na blurry thing\n").unwrap();
    ok(&[
        "eval",
        "--checkpoint",
        &run,
        "--prompts",
        &file,
        "--per-prompt",
        "2",
        "--steps",
        "2",
        "--data",
        &s.data,
        "--json",
        &json,
    ]);
    let value: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let report = &value["prompt_report"];
    assert_eq!(report["class_samples"], 4);
    assert_eq!(report["report"]["samples"], 6);
    assert_eq!(report["attribute_adherence"].as_array().unwrap().len(), 1);
    assert_eq!(report["attribute_adherence"][0]["sample_pairs"], 2);
    assert!(report["clip_score"].is_null());
    let err = fails(&[
        "eval",
        "--checkpoint",
        &run,
        "--steps",
        "2",
        "--data",
        &s.data,
    ]);
    assert!(err.contains("--prompts default"), "{err}");
}

#[test]
fn a_latent_text_run_takes_the_named_config_to_the_encoders_width_and_samples() {
    let s = Setup::new("text-latent");
    std::fs::write(s.dir.join("vae.json"), TINY_VAE_CONFIG).unwrap();
    let vae = s.path("vae");
    ok(&[
        "vae",
        "train",
        "--config",
        &s.path("vae.json"),
        "--data",
        &s.data,
        "--out",
        &vae,
        "--steps",
        "2",
        "--batch-size",
        "4",
        "--scale-images",
        "16",
    ]);
    let run = s.path("latent");
    let stderr = success(s.train(&[
        "--config",
        "fashion-text-latent",
        "--text",
        &s.clip,
        "--vae",
        &vae,
        "--out",
        &run,
        "--steps",
        "2",
        "--caption-dropout",
        "0.5",
    ]));
    assert!(stderr.contains("cross_attention_dim 16"), "{stderr}");
    assert!(stderr.contains("caption dropout 0.5"), "{stderr}");
    // The pixel text config on the autoencoder's latents: the refusal suggests the latent text config.
    let never = s.path("never");
    let err = failure(s.train(&[
        "--config",
        &s.path("text.json"),
        "--text",
        &s.clip,
        "--vae",
        &vae,
        "--out",
        &never,
        "--steps",
        "2",
    ]));
    assert!(
        err.contains("latent_channels = 4") && err.contains("--config fashion-text-latent"),
        "{err}"
    );
    assert!(!Path::new(&never).exists(), "a refused run wrote {never}");
    let index = std::fs::read_to_string(Path::new(&run).join("step-2/model_index.json")).unwrap();
    assert!(
        index.contains("AutoencoderKL") && index.contains("StableDiffusionPipeline"),
        "{index}"
    );
    let grid = s.path("latent.png");
    ok(&[
        "sample",
        "--checkpoint",
        &run,
        "--prompt",
        "a bag",
        "--steps",
        "2",
        "--count",
        "2",
        "--out",
        &grid,
    ]);
    assert!(Path::new(&grid).is_file());
}

#[test]
fn mismatched_or_missing_text_folders_are_refused_naming_both_sides_and_nothing_is_written() {
    let s = Setup::new("text-bad");
    let out = s.path("never");
    let train = |config: &str, text: &str| {
        failure(s.train(&[
            "--config", config, "--text", text, "--out", &out, "--steps", "2",
        ]))
    };
    // A config.json whose cross_attention_dim is not the encoder's width.
    std::fs::write(
        s.dir.join("narrow.json"),
        TINY_TEXT_CONFIG.replace(
            r#""cross_attention_dim": 16"#,
            r#""cross_attention_dim": 8"#,
        ),
    )
    .unwrap();
    let err = train(&s.path("narrow.json"), &s.clip);
    assert!(
        err.contains("16-wide") && err.contains("cross_attention_dim = [8, 8]"),
        "{err}"
    );
    // A text config without --text, and --text with a config without cross-attention.
    let err = failure(s.train(&[
        "--config",
        &s.path("text.json"),
        "--out",
        &out,
        "--steps",
        "2",
    ]));
    assert!(err.contains("--text CLIP_DIR"), "{err}");
    let err = train("fashion-small", &s.clip);
    assert!(err.contains("without cross-attention"), "{err}");
    // Missing folders.
    let err = train(&s.path("text.json"), &s.path("no-such-clip"));
    assert!(err.contains("no such folder"), "{err}");
    let err = train(&s.path("text.json"), &s.data);
    assert!(err.contains("tokenizer/"), "{err}");
    // A tokenizer that pads past the encoder's positions.
    let bad = s.dir.join("bad-clip");
    let step = Path::new(&s.clip).join("step-2");
    for part in ["tokenizer", "text_encoder"] {
        std::fs::create_dir_all(bad.join(part)).unwrap();
        for entry in std::fs::read_dir(step.join(part)).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), bad.join(part).join(entry.file_name())).unwrap();
        }
    }
    let config_path = bad.join("tokenizer/tokenizer_config.json");
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&config_path).unwrap()).unwrap();
    config["model_max_length"] = 500.into();
    std::fs::write(&config_path, config.to_string()).unwrap();
    let err = train(&s.path("text.json"), bad.to_str().unwrap());
    assert!(
        err.contains("500 tokens") && err.contains("max_position_embeddings"),
        "{err}"
    );
    assert!(!Path::new(&out).exists(), "a refused run wrote {out}");
}
