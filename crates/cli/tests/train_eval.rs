//! `diffuse train --eval-every` end to end on a tiny U-Net and a small synthetic dataset (so that the classifier
//! runs over a few dozen reference images): evaluations are logged, agree with `diffuse eval`, leave the trained
//! weights unchanged, survive a resume, and bad evaluation data fails before the first step.

use std::path::Path;
use std::process::Output;

mod common;
use common::{diffuse, repo, synthetic_data, synthetic_split, temp_dir, tiny_config};

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The metrics lines: `(step, line)` of the loss lines and of the evaluation lines.
fn metrics(out: &Path) -> (Vec<u64>, Vec<(u64, serde_json::Value)>) {
    let (mut losses, mut evals) = (Vec::new(), Vec::new());
    for line in std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .lines()
    {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let step = v["step"].as_u64().unwrap();
        if v.get("eval").is_some() {
            evals.push((step, v));
        } else {
            assert!(v["loss"].is_number(), "{line}");
            losses.push(step);
        }
    }
    (losses, evals)
}

/// Training settings every run below shares: four images a step, one metrics line per step, no grids before the end.
const SETTINGS: [&str; 16] = [
    "--batch-size",
    "4",
    "--log-every",
    "1",
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
    "--lr-schedule",
    "constant",
];

#[test]
fn evaluation_during_training_is_logged_matches_diffuse_eval_and_leaves_the_weights_bit_for_bit() {
    let dir = temp_dir("train-eval");
    let config = dir.join("tiny.json");
    std::fs::write(&config, tiny_config()).unwrap();
    let data = dir.join("data");
    synthetic_data(&data, 40, true);
    let (config, data) = (config.to_str().unwrap(), data.to_str().unwrap());
    let classifier = repo("data/classifier/fashion-classifier.safetensors");
    let eval_settings = [
        "--eval-every",
        "2",
        "--eval-num",
        "6",
        "--eval-steps",
        "2",
        "--classifier",
        &classifier,
    ];
    let train = |out: &Path, steps: &str, resume: bool, evaluate: bool| {
        let out = out.to_str().unwrap();
        let mut args = vec!["train", "--data", data, "--steps", steps];
        if resume {
            args.extend(["--resume", out]);
        } else {
            args.extend(["--config", config, "--out", out]);
        }
        args.extend(SETTINGS);
        if evaluate {
            args.extend(eval_settings);
        }
        let run = diffuse(&args);
        assert!(run.status.success(), "{}", stderr(&run));
        stderr(&run)
    };
    let (evaluated, plain) = (dir.join("evaluated"), dir.join("plain"));
    let log = train(&evaluated, "4", false, true);
    assert!(log.contains("step 4: FD "), "{log}");
    train(&plain, "4", false, false);

    for file in [
        "model/diffusion_pytorch_model.safetensors",
        "ema/diffusion_pytorch_model.safetensors",
        "optimizer.safetensors",
        "trainer_state.json",
    ] {
        let a = std::fs::read(evaluated.join("step-4").join(file)).unwrap();
        let b = std::fs::read(plain.join("step-4").join(file)).unwrap();
        assert!(
            a == b,
            "{file} differs between the runs with and without evaluation"
        );
    }
    let (losses, evals) = metrics(&evaluated);
    assert_eq!(losses, [0, 1, 2, 3]);
    assert_eq!(metrics(&plain), (losses, Vec::new()));
    let steps: Vec<u64> = evals.iter().map(|e| e.0).collect();
    assert_eq!(steps, [2, 4]);
    for (_, line) in &evals {
        let report = &line["eval"];
        assert_eq!(report["samples"], 6);
        assert_eq!(report["reference_samples"], 40);
        assert!(report["fd_fashion_classifier"].as_f64().unwrap() >= 0.0);
        assert!((0.0..=1.0).contains(&report["accuracy"].as_f64().unwrap()));
        assert!(report["inception_score"].as_f64().unwrap() >= 1.0 - 1e-9);
        assert_eq!(line["eval_settings"]["sampler"], "dpm++2m");
    }
    let png = std::fs::read(evaluated.join("eval.png")).unwrap();
    assert_eq!(&png[1..4], b"PNG");
    assert!(!plain.join("eval.png").exists());

    // The last evaluation is what `diffuse eval` reports for the final checkpoint at the same settings (the same
    // sampler, built from the run's scheduler config in both).
    let json = dir.join("eval.json");
    let eval = diffuse(&[
        "eval",
        "--checkpoint",
        evaluated.to_str().unwrap(),
        "--data",
        data,
        "--classifier",
        &classifier,
        "--num",
        "6",
        "--sampler",
        "dpm++2m",
        "--steps",
        "2",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(eval.status.success(), "{}", stderr(&eval));
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(v["report"], evals[1].1["eval"]);

    // A resumed run keeps the evaluations its checkpoint had seen and adds its own.
    train(&evaluated, "6", true, true);
    let (losses, evals) = metrics(&evaluated);
    assert_eq!(losses, [0, 1, 2, 3, 4, 5]);
    let steps: Vec<u64> = evals.iter().map(|e| e.0).collect();
    assert_eq!(steps, [2, 4, 6]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn eval_every_fails_before_the_first_step_without_a_test_split_or_with_images_the_classifier_cannot_read(
) {
    let dir = temp_dir("train-eval-bad-data");
    let config = dir.join("tiny.json");
    std::fs::write(&config, tiny_config()).unwrap();
    let no_test = dir.join("no-test");
    synthetic_split(&no_test, "train", 8, 28, true);
    let small_test = dir.join("small-test");
    synthetic_split(&small_test, "train", 8, 28, true);
    synthetic_split(&small_test, "t10k", 8, 12, true);
    for (data, expected) in [
        (&no_test, "test split of --data"),
        (&small_test, "holds 1×12×12 images"),
    ] {
        let out = dir.join("run");
        let run = diffuse(&[
            "train",
            "--config",
            config.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--steps",
            "2",
            "--batch-size",
            "4",
            "--eval-every",
            "1",
            "--classifier",
            &repo("data/classifier/fashion-classifier.safetensors"),
        ]);
        assert!(!run.status.success());
        let err = stderr(&run);
        assert!(err.contains(expected), "{err}");
        assert!(!err.contains("training "), "training started: {err}");
        assert!(!out.join("metrics.jsonl").exists());
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
