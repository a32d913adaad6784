//! Latent diffusion end to end on tiny models: `vae train`, then `train --vae` (whose checkpoints are diffusers
//! pipeline folders), `--resume` bit for bit, then `sample`, `info` and `eval` on the result, each decoding through
//! the autoencoder; and every mismatch between data, autoencoder and denoiser refused with both sides named and
//! nothing written.

use std::path::{Path, PathBuf};

mod common;
use common::{
    diffuse, fails, repo, success, synthetic_data, synthetic_split, temp_dir, tiny_config,
    tiny_train, TINY_VAE_CONFIG,
};

/// A class-conditional one-level U-Net over 4×7×7 latents (~46k parameters).
const TINY_LATENT_CONFIG: &str = r#"{
  "_class_name": "UNet2DModel", "sample_size": 7, "in_channels": 4, "out_channels": 4,
  "block_out_channels": [16], "layers_per_block": 1,
  "down_block_types": ["AttnDownBlock2D"], "up_block_types": ["AttnUpBlock2D"],
  "attention_head_dim": 8, "norm_num_groups": 4, "num_class_embeds": 11
}"#;

/// A DiT over 4×7×7 latents in 7×7 patches, learned variance (8 output channels), one block (~10k parameters).
const TINY_LATENT_DIT: &str = r#"{
  "_class_name": "DiTTransformer2DModel",
  "num_attention_heads": 2, "attention_head_dim": 8, "in_channels": 4, "out_channels": 8,
  "num_layers": 1, "sample_size": 7, "patch_size": 7, "num_embeds_ada_norm": 10
}"#;

fn ok(args: &[&str]) -> String {
    let run = diffuse(args);
    let stderr = String::from_utf8_lossy(&run.stderr).into_owned();
    assert!(run.status.success(), "{args:?}: {stderr}");
    stderr + &String::from_utf8_lossy(&run.stdout)
}

struct Setup {
    dir: PathBuf,
    data: String,
    vae: String,
}

impl Setup {
    /// A scratch folder with 32 synthetic labelled images in both splits and a tiny autoencoder trained on them.
    fn new(name: &str) -> Setup {
        let dir = temp_dir(name);
        let data = dir.join("data");
        synthetic_data(&data, 32, true);
        std::fs::write(dir.join("vae.json"), TINY_VAE_CONFIG).unwrap();
        std::fs::write(dir.join("latent.json"), TINY_LATENT_CONFIG).unwrap();
        std::fs::write(dir.join("pixel.json"), tiny_config()).unwrap();
        std::fs::write(dir.join("dit.json"), TINY_LATENT_DIT).unwrap();
        let setup = Setup {
            data: data.to_str().unwrap().to_string(),
            vae: dir.join("vae").to_str().unwrap().to_string(),
            dir,
        };
        ok(&[
            "vae",
            "train",
            "--config",
            &setup.path("vae.json"),
            "--data",
            &setup.data,
            "--out",
            &setup.vae,
            "--steps",
            "2",
            "--batch-size",
            "4",
            "--scale-images",
            "16",
        ]);
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

#[test]
fn a_latent_run_is_a_pipeline_folder_resumes_exactly_and_samples_evaluates_and_describes() {
    let s = Setup::new("latent");
    let (config, run, straight) = (s.path("latent.json"), s.path("run"), s.path("straight"));
    let classifier = repo("data/classifier/fashion-classifier.safetensors");
    let eval = [
        "--eval-every",
        "2",
        "--eval-num",
        "8",
        "--eval-steps",
        "2",
        "--classifier",
        classifier.as_str(),
    ];
    let mut args = vec![
        "--config", &config, "--vae", &s.vae, "--out", &run, "--steps", "3",
    ];
    args.extend(eval);
    let stderr = success(s.train(&args));
    assert!(stderr.contains("as 4×7×7 latents of"), "{stderr}");
    let step3 = Path::new(&run).join("step-3");
    for file in [
        "model_index.json",
        "unet/config.json",
        "unet/diffusion_pytorch_model.safetensors",
        "model/diffusion_pytorch_model.safetensors",
        "vae/config.json",
        "vae/diffusion_pytorch_model.safetensors",
        "scheduler/scheduler_config.json",
        "optimizer.safetensors",
        "trainer_state.json",
    ] {
        assert!(step3.join(file).is_file(), "{file} is missing");
    }
    assert!(
        !step3.join("ema").exists(),
        "the EMA weights belong in unet/"
    );
    let index: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(step3.join("model_index.json")).unwrap())
            .unwrap();
    assert_eq!(
        index["unet"],
        serde_json::json!(["diffusers", "UNet2DModel"])
    );
    assert_eq!(
        index["vae"],
        serde_json::json!(["diffusers", "AutoencoderKL"])
    );
    // The pipeline's vae/ is the autoencoder trained above, scaling factor included.
    let ours = std::fs::read_to_string(step3.join("vae/config.json")).unwrap();
    let theirs = std::fs::read_to_string(Path::new(&s.vae).join("step-2/ema/config.json")).unwrap();
    let scaling =
        |t: &str| serde_json::from_str::<serde_json::Value>(t).unwrap()["scaling_factor"].clone();
    assert_eq!(scaling(&ours), scaling(&theirs));
    assert!(Path::new(&run).join("samples/step-2.png").is_file());

    let mut args = vec!["--resume", &run, "--steps", "5"];
    args.extend(eval);
    let stderr = success(s.train(&args));
    assert!(stderr.contains("at step 3"), "{stderr}");
    let mut args = vec![
        "--config", &config, "--vae", &s.vae, "--out", &straight, "--steps", "5",
    ];
    args.extend(eval);
    success(s.train(&args));
    for file in [
        "model/diffusion_pytorch_model.safetensors",
        "unet/diffusion_pytorch_model.safetensors",
        "vae/diffusion_pytorch_model.safetensors",
        "optimizer.safetensors",
        "trainer_state.json",
        "model_index.json",
    ] {
        let a = std::fs::read(Path::new(&run).join("step-5").join(file)).unwrap();
        let b = std::fs::read(Path::new(&straight).join("step-5").join(file)).unwrap();
        assert!(
            a == b,
            "{file} differs between the resumed and the uninterrupted run"
        );
    }

    let text = ok(&["info", &run]);
    assert!(
        text.contains("latents      4×7×7 of 1×28×28 images"),
        "{text}"
    );
    let (grid, tensor, trajectory) = (
        s.path("grid.png"),
        s.path("samples.safetensors"),
        s.path("traj.png"),
    );
    ok(&[
        "sample",
        "--checkpoint",
        &run,
        "--steps",
        "2",
        "--count",
        "1",
        "--class",
        "3",
        "--out",
        &grid,
        "--out-tensor",
        &tensor,
        "--trajectory",
        &trajectory,
    ]);
    let bytes = std::fs::read(&tensor).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    assert_eq!(file.tensor("samples").unwrap().shape(), [1, 1, 28, 28]);
    assert!(Path::new(&trajectory).is_file());
    // SDEdit on the latents of that sample (encoded through the run's autoencoder), decoded again.
    let edited = s.path("edited.safetensors");
    let text = ok(&[
        "sample",
        "--checkpoint",
        &run,
        "--steps",
        "4",
        "--count",
        "2",
        "--init-image",
        &tensor,
        "--strength",
        "0.5",
        "--out",
        &s.path("edited.png"),
        "--out-tensor",
        &edited,
    ]);
    assert!(
        text.contains("SDEdit: strength 0.5 keeps 2 of 4 steps"),
        "{text}"
    );
    let bytes = std::fs::read(&edited).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    assert_eq!(file.tensor("samples").unwrap().shape(), [2, 1, 28, 28]);
    let text = ok(&[
        "eval",
        "--checkpoint",
        &run,
        "--num",
        "4",
        "--steps",
        "2",
        "--data",
        &s.data,
        "--classifier",
        &classifier,
    ]);
    assert!(text.contains("IS-style score"), "{text}");
    let err = fails(&[
        "eval",
        "--checkpoint",
        &run,
        "--num",
        "4",
        "--steps",
        "2",
        "--data",
        &s.data,
        "--classifier",
        &classifier,
        "--bpd",
        "2",
    ]);
    assert!(err.contains("--bpd") && err.contains("latents"), "{err}");

    // Any backbone: a DiT whose learned variance doubles its output channels trains and samples on the latents.
    let dit = s.path("dit-run");
    success(s.train(&[
        "--config",
        &s.path("dit.json"),
        "--vae",
        &s.vae,
        "--out",
        &dit,
        "--steps",
        "2",
    ]));
    let index = std::fs::read_to_string(Path::new(&dit).join("step-2/model_index.json")).unwrap();
    assert!(index.contains("DiTTransformer2DModel"), "{index}");
    ok(&[
        "sample",
        "--checkpoint",
        &dit,
        "--steps",
        "2",
        "--count",
        "1",
        "--class",
        "0",
        "--out",
        &grid,
    ]);
    std::fs::remove_dir_all(&s.dir).unwrap();
}

#[test]
fn mismatches_between_data_autoencoder_and_denoiser_are_refused_and_nothing_is_written() {
    let s = Setup::new("latent-bad");
    let out = s.path("never");
    // A pixel U-Net (in_channels 1) on 4-channel latents.
    let err = String::from_utf8_lossy(
        &s.train(&[
            "--config",
            &s.path("pixel.json"),
            "--vae",
            &s.vae,
            "--out",
            &out,
        ])
        .stderr,
    )
    .into_owned();
    assert!(
        err.contains("latent_channels = 4")
            && err.contains("in_channels = 1")
            && err.contains("out_channels = 1"),
        "{err}"
    );
    // 16×16 images for an autoencoder of 28×28 ones.
    let small = s.dir.join("small");
    synthetic_split(&small, "train", 8, 16, true);
    let output = diffuse(&[
        "train",
        "--config",
        &s.path("latent.json"),
        "--vae",
        &s.vae,
        "--data",
        small.to_str().unwrap(),
        "--out",
        &out,
    ]);
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(err.contains("1×16×16") && err.contains("1×28×28"), "{err}");
    // No autoencoder where --vae points.
    let err = String::from_utf8_lossy(
        &s.train(&[
            "--config",
            &s.path("latent.json"),
            "--vae",
            &s.path("nowhere"),
            "--out",
            &out,
        ])
        .stderr,
    )
    .into_owned();
    assert!(
        err.contains("nowhere") && err.contains("config.json"),
        "{err}"
    );
    // --hflip would mirror latents, not images.
    let err = String::from_utf8_lossy(
        &s.train(&[
            "--config",
            &s.path("latent.json"),
            "--vae",
            &s.vae,
            "--out",
            &out,
            "--hflip",
        ])
        .stderr,
    )
    .into_owned();
    assert!(err.contains("--hflip with --vae"), "{err}");
    assert!(!Path::new(&out).exists(), "a refused run wrote {out}");

    // A pipeline whose vae/ is corrupt: sampling names the file and writes no grid.
    let run = s.path("run");
    success(s.train(&[
        "--config",
        &s.path("latent.json"),
        "--vae",
        &s.vae,
        "--out",
        &run,
        "--steps",
        "2",
    ]));
    let weights = Path::new(&run).join("step-2/vae/diffusion_pytorch_model.safetensors");
    std::fs::write(&weights, b"corrupt").unwrap();
    let grid = s.path("grid.png");
    let err = fails(&[
        "sample",
        "--checkpoint",
        &run,
        "--steps",
        "1",
        "--out",
        &grid,
    ]);
    assert!(
        err.contains("model_index.json names a vae") && err.contains("diffusion_pytorch_model"),
        "{err}"
    );
    assert!(!Path::new(&grid).exists());
    // And one whose vae/ is missing.
    std::fs::remove_dir_all(Path::new(&run).join("step-2/vae")).unwrap();
    let err = fails(&[
        "sample",
        "--checkpoint",
        &run,
        "--steps",
        "1",
        "--out",
        &grid,
    ]);
    assert!(
        err.contains("names component 'vae' (AutoencoderKL), but the folder")
            && err.contains("is missing"),
        "{err}"
    );
    std::fs::remove_dir_all(&s.dir).unwrap();
}
