//! `diffuse train`, `info`, `sample` and `--eval-every` end to end on a tiny DiT with a learned variance: the run
//! trains on the hybrid objective, resumes, evaluates, describes itself with its compute, and samples with every
//! family of sampler.

use std::process::Output;

mod common;
use common::{diffuse, repo, synthetic_data, temp_dir};

/// 28×28 pixels in 7×7 patches (16 tokens of width 16, two heads), one block, learned variance, 10 classes and the
/// null class: ~30k parameters.
const TINY_DIT: &str = r#"{
  "_class_name": "DiTTransformer2DModel",
  "num_attention_heads": 2, "attention_head_dim": 8, "in_channels": 1, "out_channels": 2,
  "num_layers": 1, "sample_size": 28, "patch_size": 7, "num_embeds_ada_norm": 10
}"#;

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn run(args: &[&str]) -> Output {
    let out = diffuse(args);
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    out
}

#[test]
fn a_dit_trains_resumes_evaluates_describes_itself_and_samples() {
    let dir = temp_dir("train-dit");
    let config = dir.join("dit.json");
    std::fs::write(&config, TINY_DIT).unwrap();
    let data = dir.join("data");
    synthetic_data(&data, 24, true);
    let out = dir.join("run");
    let (config, data, out_s) = (
        config.to_str().unwrap(),
        data.to_str().unwrap(),
        out.to_str().unwrap(),
    );
    let classifier = repo("data/classifier/fashion-classifier.safetensors");
    let settings = [
        "--batch-size",
        "4",
        "--checkpoint-every",
        "2",
        "--sample-every",
        "0",
        "--grid-steps",
        "1",
        "--grid-columns",
        "1",
        "--num-train-timesteps",
        "50",
        "--eval-every",
        "2",
        "--eval-num",
        "4",
        "--eval-steps",
        "1",
        "--classifier",
        &classifier,
    ];
    let mut args = vec![
        "train", "--config", config, "--data", data, "--out", out_s, "--steps", "2",
    ];
    args.extend(settings);
    let log = stderr(&run(&args));
    assert!(log.contains("step 2: FD "), "{log}");
    let mut args = vec!["train", "--resume", out_s, "--data", data, "--steps", "3"];
    args.extend(settings);
    run(&args);
    let scheduler =
        std::fs::read_to_string(out.join("step-3/scheduler/scheduler_config.json")).unwrap();
    assert!(
        scheduler.contains("\"variance_type\": \"learned_range\""),
        "{scheduler}"
    );

    let info = String::from_utf8_lossy(&run(&["info", out_s]).stdout).into_owned();
    assert!(
        info.contains("DiTTransformer2DModel, width 16 in 2 heads, 1 blocks, patch 7"),
        "{info}"
    );
    assert!(
        info.contains("GFLOPs per forward pass of one 28×28 sample"),
        "{info}"
    );
    assert!(info.contains("step         3 of 3"), "{info}");

    for sampler in ["ddpm", "ddim", "dpm++2m"] {
        let grid = dir.join(format!("{sampler}.png"));
        run(&[
            "sample",
            "--checkpoint",
            out_s,
            "--sampler",
            sampler,
            "--steps",
            "2",
            "--count",
            "1",
            "--guidance",
            "2",
            "--out",
            grid.to_str().unwrap(),
        ]);
        assert_eq!(&std::fs::read(&grid).unwrap()[1..4], b"PNG");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
