//! `diffuse eval` end to end on a tiny U-Net trained for two steps, scored against a small synthetic reference set
//! (so that the classifier runs over a few dozen images, not the 10,000 of the shipped test split).

use std::path::Path;
use std::process::Output;

mod common;
use common::{diffuse, repo, synthetic_data, temp_dir, tiny_config};

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Trains the tiny model (class-conditional or not) for two steps into `dir/run` and returns that folder.
fn tiny_run(dir: &Path, conditional: bool) -> String {
    let config = dir.join("tiny.json");
    let text = if conditional {
        tiny_config()
    } else {
        tiny_config().replace(r#", "num_class_embeds": 11"#, "")
    };
    assert_ne!(text.contains("num_class_embeds"), !conditional);
    std::fs::write(&config, text).unwrap();
    let out = dir.join("run").to_str().unwrap().to_string();
    let train = diffuse(&[
        "train",
        "--config",
        config.to_str().unwrap(),
        "--data",
        &repo("data/fashion-mnist"),
        "--out",
        &out,
        "--steps",
        "2",
        "--batch-size",
        "4",
        "--checkpoint-every",
        "2",
        "--sample-every",
        "2",
        "--grid-steps",
        "2",
        "--grid-columns",
        "2",
        "--num-train-timesteps",
        "50",
    ]);
    assert!(train.status.success(), "{}", stderr(&train));
    out
}

fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn eval_writes_a_report_with_settings_accuracy_bpd_and_floor() {
    let dir = temp_dir("report");
    let run = tiny_run(&dir, true);
    let data = dir.join("data");
    synthetic_data(&data, 40, true);
    let json = dir.join("out.json");
    let out = diffuse(&[
        "eval",
        "--checkpoint",
        &run,
        "--data",
        data.to_str().unwrap(),
        "--classifier",
        &repo("data/classifier/fashion-classifier.safetensors"),
        "--num",
        "20",
        "--batch",
        "8",
        "--steps",
        "2",
        "--bpd",
        "4",
        "--floor",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("next: diffuse eval --checkpoint"),
        "{}",
        stderr(&out)
    );
    let table = String::from_utf8_lossy(&out.stdout);
    for row in [
        "FD (fashion_classifier)",
        "accuracy",
        "IS-style score",
        "precision",
        "recall",
        "bits/dim",
    ] {
        assert!(table.contains(row), "no {row} row in\n{table}");
    }
    let v = read_json(&json);
    let settings = &v["settings"];
    // No --sampler: the run's own scheduler config decides (diffuse's runs save a DDPMScheduler config).
    assert_eq!(settings["sampler"], "ddpm");
    assert_eq!(settings["sampler_settings"]["class"], "DDPMScheduler");
    assert_eq!(settings["steps"], 2);
    assert_eq!(settings["num"], 20);
    assert_eq!(settings["seed"], 0);
    assert_eq!(settings["guidance"], 1.0);
    assert_eq!(settings["checkpoint_step"], 2);
    let report = &v["report"];
    assert_eq!(report["samples"], 20);
    assert_eq!(report["reference_samples"], 40);
    assert!(report["fd_fashion_classifier"].as_f64().unwrap() >= 0.0);
    let accuracy = report["accuracy"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&accuracy));
    assert_eq!(report["per_class_accuracy"].as_array().unwrap().len(), 10);
    assert!(report["inception_score"].as_f64().unwrap() >= 1.0 - 1e-9);
    for key in ["precision", "recall"] {
        assert!(
            (0.0..=1.0).contains(&report[key].as_f64().unwrap()),
            "{key}"
        );
    }
    assert!(report["bpd"]["mean"].as_f64().unwrap() > 0.0);
    assert_eq!(v["floor"]["samples"], 20);
}

#[test]
fn eval_sweep_of_an_unconditional_model_writes_one_row_per_sampler_and_step_count_and_a_plot() {
    let dir = temp_dir("sweep");
    let run = tiny_run(&dir, false);
    let data = dir.join("data");
    synthetic_data(&data, 24, false);
    let json = dir.join("sweep.json");
    let out = diffuse(&[
        "eval",
        "--checkpoint",
        &run,
        "--data",
        data.to_str().unwrap(),
        "--classifier",
        &repo("data/classifier/fashion-classifier.safetensors"),
        "--num",
        "8",
        "--sweep-steps",
        "1,2",
        "--samplers",
        "ddim,euler",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("next: diffuse sample --checkpoint"),
        "{}",
        stderr(&out)
    );
    let rows = read_json(&json);
    let rows = rows.as_array().unwrap();
    let settings: Vec<(String, u64)> = rows
        .iter()
        .map(|r| {
            (
                r["settings"]["sampler"].as_str().unwrap().to_string(),
                r["settings"]["steps"].as_u64().unwrap(),
            )
        })
        .collect();
    let expected: Vec<(String, u64)> = [("ddim", 1), ("ddim", 2), ("euler", 1), ("euler", 2)]
        .iter()
        .map(|&(s, n)| (s.to_string(), n))
        .collect();
    assert_eq!(settings, expected);
    for row in rows {
        assert!(row["report"]["accuracy"].is_null());
        assert!(row["report"]["per_class_accuracy"].is_null());
        assert!(row["report"]["inception_score"].as_f64().unwrap() >= 1.0 - 1e-9);
    }
    // `all` is the twelve samplers of docs/samplers.md.
    let all = dir.join("all.json");
    let out = diffuse(&[
        "eval",
        "--checkpoint",
        &run,
        "--data",
        data.to_str().unwrap(),
        "--classifier",
        &repo("data/classifier/fashion-classifier.safetensors"),
        "--num",
        "4",
        "--sweep-steps",
        "4",
        "--samplers",
        "all",
        "--json",
        all.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let names: Vec<String> = read_json(&all)
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["settings"]["sampler"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, diffuse_diffusion::sampler::named::ALL);
    let png = std::fs::read(dir.join("sweep.png")).unwrap();
    // A chart of diffuse-plot's size whose plotting area holds the drawn lines and markers.
    let image = diffuse_plot::check_png(&png).unwrap();
    assert_eq!((image.width, image.height), diffuse_plot::CHART_SIZE);
    assert!(image.ink((120, 880), (60, 480)) > 0.01);
}

#[test]
fn eval_names_a_checkpoint_folder_without_a_model() {
    let dir = temp_dir("bad-checkpoint");
    let out = diffuse(&[
        "eval",
        "--checkpoint",
        dir.to_str().unwrap(),
        "--classifier",
        &repo("data/classifier/fashion-classifier.safetensors"),
    ]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("is neither a diffusers pipeline (model_index.json), a training run (latest)"),
        "{err}"
    );
}

#[test]
fn eval_says_where_the_classifier_belongs_and_how_to_train_it() {
    let dir = temp_dir("no-classifier");
    let missing = dir.join("missing.safetensors");
    let out = diffuse(&[
        "eval",
        "--checkpoint",
        dir.to_str().unwrap(),
        "--classifier",
        missing.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("no classifier at"), "{err}");
    assert!(err.contains("diffuse classifier train"), "{err}");
}

#[test]
fn eval_bpd_of_a_conditional_model_needs_test_labels() {
    let dir = temp_dir("no-labels");
    let run = tiny_run(&dir, true);
    let data = dir.join("data");
    synthetic_data(&data, 12, false);
    let out = diffuse(&[
        "eval",
        "--checkpoint",
        &run,
        "--data",
        data.to_str().unwrap(),
        "--classifier",
        &repo("data/classifier/fashion-classifier.safetensors"),
        "--num",
        "4",
        "--steps",
        "1",
        "--bpd",
        "2",
    ]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("needs the test images' labels"), "{err}");
}

#[test]
fn eval_help_shows_every_default() {
    let help = diffuse(&["eval", "--help"]);
    let text = String::from_utf8_lossy(&help.stdout);
    let options: Vec<&str> = text
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("--"))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| !["checkpoint", "floor", "help"].contains(name))
        .collect();
    assert!(options.len() >= 14, "{text}");
    for name in options {
        let line = text
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("--{name} ")))
            .unwrap_or_default();
        assert!(
            line.contains("[default:"),
            "--{name} shows no default: {line}"
        );
    }
}
