//! Score models end to end: `diffuse train --sde`, `diffuse sample` with the three score samplers (guided), the
//! refusal of a discrete-time sampler, and `diffuse eval --nll` on a score model and on a DDPM model.

use std::path::Path;
use std::process::Output;

mod common;
use common::{diffuse, repo, synthetic_data, temp_dir, tiny_config};

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Trains the tiny class-conditional model for two steps into `dir/NAME` with the extra `args`.
fn train(dir: &Path, name: &str, config: &str, args: &[&str]) -> String {
    let config_path = dir.join(format!("{name}.json"));
    std::fs::write(&config_path, config).unwrap();
    let out = dir.join(name).to_str().unwrap().to_string();
    let data = repo("data/fashion-mnist");
    let mut all = vec![
        "train",
        "--config",
        config_path.to_str().unwrap(),
        "--data",
        &data,
        "--out",
        &out,
        "--steps",
        "2",
        "--batch-size",
        "4",
        "--grid-steps",
        "3",
        "--grid-columns",
        "1",
        "--num-train-timesteps",
        "50",
    ];
    all.extend_from_slice(args);
    let run = diffuse(&all);
    assert!(run.status.success(), "{}", stderr(&run));
    out
}

/// The tiny config with the score-SDE time embedding (σ through Fourier features, output divided by σ).
fn fourier_config() -> String {
    tiny_config().replace(
        r#""_class_name": "UNet2DModel","#,
        r#""_class_name": "UNet2DModel", "time_embedding_type": "fourier","#,
    )
}

#[test]
fn a_ve_score_model_trains_and_samples_with_every_score_sampler_but_no_discrete_one() {
    let dir = temp_dir("score-ve");
    let run = train(
        &dir,
        "ve",
        &fourier_config(),
        &["--sde", "ve", "--sigma-max", "20"],
    );
    let scheduler =
        std::fs::read_to_string(Path::new(&run).join("step-2/scheduler/scheduler_config.json"))
            .unwrap();
    assert!(scheduler.contains("\"ScoreSdeVeScheduler\""), "{scheduler}");
    assert!(Path::new(&run).join("samples/final.png").is_file());
    for (sampler, extra, evaluations) in [
        (
            "langevin",
            vec!["--steps", "2", "--corrector-steps", "3"],
            "7 model evaluations",
        ),
        ("pc", vec!["--steps", "3"], "6 model evaluations"),
        (
            "ode-rk45",
            vec!["--rtol", "1e-2", "--atol", "1e-2"],
            "model evaluations",
        ),
    ] {
        let grid = dir.join(format!("{sampler}.png"));
        let mut args = vec![
            "sample",
            "--checkpoint",
            &run,
            "--sampler",
            sampler,
            "--class",
            "3",
            "--count",
            "2",
            "--guidance",
            "2",
            "--out",
            grid.to_str().unwrap(),
        ];
        args.extend(extra.iter().copied());
        let out = diffuse(&args);
        assert!(out.status.success(), "{sampler}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(evaluations),
            "{sampler}: {}",
            stderr(&out)
        );
        assert!(grid.is_file());
    }
    let out = diffuse(&["sample", "--checkpoint", &run, "--sampler", "ddim"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("score-SDE model") && err.contains("langevin, pc, ode-rk45"),
        "{err}"
    );
    // Without --sampler the folder's score-SDE scheduler decides: predictor–corrector, as diffusers'
    // ScoreSdeVePipeline; `diffuse info` says so.
    let grid = dir.join("default.png");
    let grid = grid.to_str().unwrap();
    let out = diffuse(&[
        "sample",
        "--checkpoint",
        &run,
        "--count",
        "1",
        "--steps",
        "2",
        "--out",
        grid,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("pc: "), "{}", stderr(&out));
    let out = diffuse(&["info", &run]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        text.contains("ScoreSdeVeScheduler") || text.contains("scheduler_config.json"),
        "{text}"
    );
    assert!(text.contains("sampler") && text.contains("pc"), "{text}");
    // The discrete-time samplers' options mean nothing to a score sampler.
    let out = diffuse(&[
        "sample",
        "--checkpoint",
        &run,
        "--sampler",
        "pc",
        "--eta",
        "0.5",
        "--out",
        grid,
    ]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--eta"), "{}", stderr(&out));
    let out = diffuse(&[
        "sample",
        "--checkpoint",
        &run,
        "--sampler",
        "ode-rk45",
        "--rtol",
        "0",
    ]);
    assert!(
        stderr(&out).contains("rtol = 0 must be positive"),
        "{}",
        stderr(&out)
    );
}

/// `--nll ode` on a score model, and `--nll both` on a DDPM model (the bound and the ODE on the same images); the
/// bound is refused for a score model, which has no discrete schedule.
#[test]
fn eval_measures_bits_per_dim_by_the_ode_beside_the_bound() {
    let dir = temp_dir("score-nll");
    let data = dir.join("data");
    synthetic_data(&data, 24, true);
    let eval = |run: &str, sampler: &str, nll: &str, json: &Path| {
        diffuse(&[
            "eval",
            "--checkpoint",
            run,
            "--data",
            data.to_str().unwrap(),
            "--classifier",
            &repo("data/classifier/fashion-classifier.safetensors"),
            "--num",
            "12",
            "--batch",
            "12",
            "--sampler",
            sampler,
            "--steps",
            "2",
            "--bpd",
            "2",
            "--nll",
            nll,
            "--rtol",
            "1e-2",
            "--atol",
            "1e-2",
            "--json",
            json.to_str().unwrap(),
        ])
    };
    let read = |path: &Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    };
    let ve = train(&dir, "ve", &fourier_config(), &["--sde", "ve"]);
    let json = dir.join("ve.json");
    let out = eval(&ve, "pc", "ode", &json);
    assert!(out.status.success(), "{}", stderr(&out));
    let v = read(&json);
    assert!(v["ode_bpd"]["mean"].as_f64().unwrap() > 0.0);
    assert_eq!(v["ode_bpd"]["per_image"].as_array().unwrap().len(), 2);
    assert_eq!(v["model_evaluations_per_batch"], 4.0);
    let out = eval(&ve, "pc", "both", &json);
    assert!(stderr(&out).contains("use --nll ode"), "{}", stderr(&out));

    let ddpm = train(&dir, "ddpm", &tiny_config(), &[]);
    let json = dir.join("ddpm.json");
    let out = eval(&ddpm, "dpm++2m", "both", &json);
    assert!(out.status.success(), "{}", stderr(&out));
    let v = read(&json);
    assert!(v["report"]["bpd"]["mean"].as_f64().unwrap() > 0.0);
    assert!(v["ode_bpd"]["mean"].as_f64().unwrap() > 0.0);
}
