//! `diffuse clip` end to end on a tiny CLIP: training writes transformers folders (the CLIPModel, its text_encoder/
//! and tokenizer/), metrics and an evaluation; `--resume` continues the run bit for bit; `clip eval` reads the run;
//! bad settings are refused with the reason (two ranks under mpirun: crates/cli/tests/mpi_train.rs).

mod common;
use common::{diffuse, ok, synthetic_data, temp_dir, TINY_CLIP};

/// The training settings of every run, after the tiny CLIP's.
const RUN: [&str; 10] = [
    "--batch-size",
    "8",
    "--checkpoint-every",
    "2",
    "--log-every",
    "1",
    "--eval-images",
    "16",
    "--warmup",
    "1",
];

#[test]
fn clip_train_resumes_exactly_and_eval_reads_the_run() {
    let dir = temp_dir("clip-train");
    let data = dir.join("data");
    synthetic_data(&data, 40, true);
    let data = data.to_str().unwrap().to_string();
    let path = |name: &str| dir.join(name).to_str().unwrap().to_string();
    let (straight, resumed) = (path("straight"), path("resumed"));
    let train = |out: &str, steps: &str, extra: &[&str]| {
        let mut args = vec![
            "clip", "train", "--data", &data, "--out", out, "--steps", steps,
        ];
        args.extend(TINY_CLIP);
        args.extend(RUN);
        args.extend(extra);
        ok(&args)
    };
    let log = train(&straight, "4", &[]);
    assert!(log.contains("zero-shot accuracy"), "{log}");
    // A run that stopped after its step-2 checkpoint (as a crash would leave it), then resumed.
    train(&resumed, "4", &[]);
    std::fs::remove_dir_all(std::path::Path::new(&resumed).join("step-4")).unwrap();
    std::fs::write(std::path::Path::new(&resumed).join("latest"), "step-2\n").unwrap();
    let log = train(&resumed, "4", &["--resume", &resumed]);
    assert!(log.contains("resuming"), "{log}");
    let step = |run: &str| std::path::Path::new(run).join("step-4");
    for file in [
        "model.safetensors",
        "text_encoder/model.safetensors",
        "tokenizer/vocab.json",
        "optimizer.safetensors",
    ] {
        let a = std::fs::read(step(&straight).join(file)).unwrap();
        let b = std::fs::read(step(&resumed).join(file)).unwrap();
        assert!(
            a == b,
            "{file} differs between the straight and the resumed run"
        );
    }
    for file in [
        "config.json",
        "text_encoder/config.json",
        "tokenizer/merges.txt",
        "tokenizer/tokenizer.json",
        "tokenizer/tokenizer_config.json",
    ] {
        assert!(step(&straight).join(file).is_file(), "{file}");
    }
    let eval: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(std::path::Path::new(&straight).join("eval.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(eval["images"], 16);
    assert!(eval["zero_shot_accuracy"].as_f64().is_some());
    for run in [&straight, &resumed] {
        let metrics =
            std::fs::read_to_string(std::path::Path::new(run).join("metrics.jsonl")).unwrap();
        assert_eq!(
            metrics.lines().count(),
            4,
            "{run}: one line per step, none repeated by the resume"
        );
    }
    let json = path("eval.json");
    let log = ok(&[
        "clip",
        "eval",
        "--clip",
        &straight,
        "--data",
        &data,
        "--images",
        "16",
        "--templates",
        "held-out",
        "--json",
        &json,
    ]);
    assert!(log.contains("text → image recall@1"), "{log}");
    assert!(std::path::Path::new(&json).is_file());
}

#[test]
fn bad_settings_are_refused_with_the_reason() {
    let dir = temp_dir("clip-bad");
    let data = dir.join("data");
    synthetic_data(&data, 16, true);
    let data = data.to_str().unwrap().to_string();
    let out = dir.join("run").to_str().unwrap().to_string();
    for (extra, expected) in [
        (
            ["--heads", "3"],
            "does not split into num_attention_heads = 3",
        ),
        (["--patch-size", "5"], "patch size 5"),
        (["--batch-size", "32"], "larger than the 16 training images"),
    ] {
        let mut args = vec![
            "clip", "train", "--data", &data, "--out", &out, "--steps", "1",
        ];
        // The tiny CLIP's and the run's settings, with the one under test replaced.
        let settings = TINY_CLIP.chunks(2).chain(RUN.chunks(2));
        for pair in settings.filter(|pair| pair[0] != extra[0]) {
            args.extend(pair);
        }
        args.extend(extra);
        let run = diffuse(&args);
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert!(
            !run.status.success() && stderr.contains(expected),
            "{extra:?}: {stderr}"
        );
    }
    let run = diffuse(&["clip", "eval", "--clip", &data, "--data", &data]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        !run.status.success() && stderr.contains("neither a `diffuse clip train` run"),
        "{stderr}"
    );
}
