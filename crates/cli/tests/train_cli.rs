//! `diffuse train` end to end on a tiny U-Net: the run folder's files exist, and `--resume` continues the run.

use std::path::Path;
use std::process::Command;

mod common;
use common::{diffuse, repo, temp_dir, tiny_config, tiny_train};

fn metric_steps(out: &Path) -> Vec<u64> {
    std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["step"].as_u64().unwrap()
        })
        .collect()
}

#[test]
fn train_writes_checkpoints_samples_metrics_and_resume_continues_the_run() {
    let dir = temp_dir("train");
    let config = dir.join("tiny.json");
    std::fs::write(&config, tiny_config()).unwrap();
    let out = dir.join("run");
    let (config, out_s, data) = (
        config.to_str().unwrap().to_string(),
        out.to_str().unwrap().to_string(),
        repo("data/fashion-mnist"),
    );
    // `tiny_train`'s constant learning rate does not depend on the total, so `--steps 5` means the same in both runs
    // below.
    let run = tiny_train(
        &data,
        &["--config", &config, "--out", &out_s, "--steps", "3"],
    );
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    for file in [
        "latest",
        "step-2/trainer_state.json",
        "step-3/model/config.json",
        "step-3/model/diffusion_pytorch_model.safetensors",
        "step-3/ema/diffusion_pytorch_model.safetensors",
        "step-3/optimizer.safetensors",
        "samples/step-2.png",
        "samples/final.png",
        "metrics.jsonl",
        "loss.png",
    ] {
        assert!(out.join(file).is_file(), "{file} is missing");
    }
    assert_eq!(
        std::fs::read_to_string(out.join("latest")).unwrap(),
        "step-3\n"
    );
    assert_eq!(metric_steps(&out), [0, 1, 2]);
    // The loss curve over the learning-rate panel: taller than a single chart, ink in both panels' plotting areas.
    let loss = diffuse_plot::check_png(&std::fs::read(out.join("loss.png")).unwrap()).unwrap();
    let (width, single) = diffuse_plot::CHART_SIZE;
    assert_eq!(loss.width, width);
    assert!(loss.height > single);
    assert!(loss.ink((120, width - 20), (60, 450)) > 0.01, "loss panel");
    assert!(
        loss.ink((120, width - 20), (loss.height - 200, loss.height - 70)) > 0.005,
        "learning-rate panel"
    );

    let resumed = tiny_train(&data, &["--resume", &out_s, "--steps", "5"]);
    let stderr = String::from_utf8_lossy(&resumed.stderr);
    assert!(resumed.status.success(), "{stderr}");
    assert!(stderr.contains("at step 3"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(out.join("latest")).unwrap(),
        "step-5\n"
    );
    assert_eq!(metric_steps(&out), [0, 1, 2, 3, 4]);
    // --keep 2 (the default): step-2 is gone.
    assert!(!out.join("step-2").exists());
    assert!(out.join("step-4").is_dir() && out.join("step-5").is_dir());

    // Five steps in one process give the same bytes as three, a checkpoint, and two more in a second process.
    let straight = dir.join("straight");
    let straight_s = straight.to_str().unwrap().to_string();
    let run = tiny_train(
        &data,
        &["--config", &config, "--out", &straight_s, "--steps", "5"],
    );
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    for file in [
        "model/diffusion_pytorch_model.safetensors",
        "ema/diffusion_pytorch_model.safetensors",
        "optimizer.safetensors",
        "trainer_state.json",
    ] {
        let a = std::fs::read(out.join("step-5").join(file)).unwrap();
        let b = std::fs::read(straight.join("step-5").join(file)).unwrap();
        assert!(
            a == b,
            "{file} differs between the resumed and the uninterrupted run"
        );
    }

    let info = diffuse(&["info", &out_s]);
    let text = String::from_utf8_lossy(&info.stdout);
    assert!(
        info.status.success() && text.contains("step         5 of 5"),
        "{text}"
    );

    let path = |name: &str| dir.join(name).to_str().unwrap().to_string();
    let (grid, tensor, again, traj, each) = (
        path("grid.png"),
        path("samples.safetensors"),
        path("again.safetensors"),
        path("trajectory.png"),
        path("each"),
    );
    let sample = diffuse(&[
        "sample",
        "--checkpoint",
        &out_s,
        "--sampler",
        "ddim",
        "--steps",
        "3",
        "--count",
        "2",
        "--guidance",
        "2",
        "--out",
        &grid,
        "--out-tensor",
        &tensor,
        "--trajectory",
        &traj,
        "--out-dir",
        &each,
    ]);
    assert!(
        sample.status.success(),
        "{}",
        String::from_utf8_lossy(&sample.stderr)
    );
    for file in [&grid, &tensor, &traj] {
        assert!(Path::new(file).is_file(), "{file} is missing");
    }
    // One row of two per class 0..9.
    assert!(Path::new(&each).join("sample-0019.png").is_file());
    // Starting from the first run's output as noise is accepted and deterministic.
    let from_noise = |out: &str, extra: &[&str]| {
        let mut args = vec![
            "sample",
            "--checkpoint",
            &out_s,
            "--steps",
            "2",
            "--count",
            "2",
            "--out",
            &grid,
            "--init-noise",
            &tensor,
            "--out-tensor",
            out,
        ];
        args.extend(extra);
        let run = diffuse(&args);
        assert!(
            run.status.success(),
            "{}",
            String::from_utf8_lossy(&run.stderr)
        );
        std::fs::read(out).unwrap()
    };
    let plain = from_noise(&again, &[]);
    assert_eq!(plain, from_noise(&path("third.safetensors"), &[]));
    // Dynamic thresholding reaches the sampler: from the same noise, an untrained model's predicted x0 overshoots
    // [−1, 1] and is rescaled rather than clipped, so the samples change.
    let thresholded = from_noise(
        &path("thresholded.safetensors"),
        &["--dynamic-threshold", "0.9"],
    );
    assert_ne!(plain, thresholded);
    for (bad, says) in [
        (
            vec!["--dynamic-threshold", "1.5"],
            "ratio 1.5 must be in (0, 1]",
        ),
        (
            vec!["--dynamic-threshold", "0.9", "--threshold-max", "0.5"],
            "max 0.5",
        ),
        (
            vec!["--threshold-max", "2"],
            "--threshold-max needs --dynamic-threshold",
        ),
    ] {
        let mut args = vec!["sample", "--checkpoint", &out_s, "--out", &grid];
        args.extend(bad);
        let run = diffuse(&args);
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert!(!run.status.success() && stderr.contains(says), "{stderr}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn ctrl_c_writes_a_checkpoint_and_exits_cleanly() {
    let dir = temp_dir("sigint");
    let config = dir.join("tiny.json");
    std::fs::write(&config, tiny_config()).unwrap();
    let out = dir.join("run");
    let child = Command::new(env!("CARGO_BIN_EXE_diffuse"))
        .args(["train", "--config", config.to_str().unwrap(), "--data"])
        .arg(repo("data/fashion-mnist"))
        .arg("--out")
        .arg(&out)
        .args([
            "--steps",
            "100000",
            "--batch-size",
            "4",
            "--log-every",
            "1",
            "--num-train-timesteps",
            "50",
        ])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let metrics = out.join("metrics.jsonl");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while std::fs::read_to_string(&metrics).map_or(0, |t| t.lines().count()) < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "training never logged a step"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // SAFETY: sends SIGINT to the child this test spawned and still owns.
    let sent = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    assert_eq!(sent, 0);
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    let latest = std::fs::read_to_string(out.join("latest")).unwrap();
    let step: u64 = latest
        .trim()
        .strip_prefix("step-")
        .unwrap()
        .parse()
        .unwrap();
    assert!(step >= 2, "{latest}");
    assert!(out
        .join(latest.trim())
        .join("optimizer.safetensors")
        .is_file());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn every_command_asked_for_cuda_without_a_driver_says_so_and_auto_falls_back_to_the_cpu() {
    if diffuse_tensor::Device::auto() != diffuse_tensor::Device::Cpu {
        eprintln!("a CUDA device is present: the no-driver messages cannot be checked here");
        return;
    }
    let missing = repo("runs/no-such-run");
    for command in [
        vec!["train", "--device", "cuda", "--steps", "1"],
        vec!["sample", "--device", "cuda:0", "--checkpoint", &missing],
        vec!["eval", "--device", "cuda", "--checkpoint", &missing],
    ] {
        let run = diffuse(&command);
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert!(!run.status.success(), "{command:?}");
        assert!(
            stderr.contains("cuda:0")
                && stderr.contains("no CUDA driver")
                && stderr.contains("--device cpu"),
            "{command:?}: {stderr}"
        );
    }
    let run = diffuse(&["train", "--device", "tpu", "--steps", "1"]);
    assert!(String::from_utf8_lossy(&run.stderr).contains("unknown device 'tpu'"));
}

#[test]
fn train_help_shows_every_default() {
    let help = diffuse(&["train", "--help"]);
    let text = String::from_utf8_lossy(&help.stdout);
    for option in [
        "--steps",
        "--batch-size",
        "--lr ",
        "--schedule",
        "--prediction",
        "--ema-decay",
        "--eval-every",
        "--eval-num",
        "--eval-sampler",
        "--eval-steps",
        "--eval-guidance",
        "--classifier",
    ] {
        let line = text
            .lines()
            .find(|l| l.contains(option))
            .unwrap_or_default();
        let block: String = text
            .split(option)
            .nth(1)
            .unwrap_or_default()
            .chars()
            .take(300)
            .collect();
        assert!(
            block.contains("[default:") || line.contains("[default:"),
            "{option} shows no default"
        );
    }
}

/// The checkpoint `latest` names, as its step, after checking that it is complete and readable.
fn latest_readable_step(out: &Path) -> Option<u64> {
    let latest = std::fs::read_to_string(out.join("latest")).ok()?;
    let dir = out.join(latest.trim());
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("trainer_state.json")).unwrap())
            .unwrap_or_else(|e| panic!("{}: unreadable trainer_state.json: {e}", dir.display()));
    let info = diffuse(&["info", dir.to_str().unwrap()]);
    assert!(
        info.status.success(),
        "{} is not a readable checkpoint: {}",
        dir.display(),
        String::from_utf8_lossy(&info.stderr)
    );
    Some(state["step"].as_u64().unwrap())
}

#[test]
fn sigkill_at_any_moment_leaves_a_readable_checkpoint_and_the_resumed_run_is_exact() {
    let dir = temp_dir("sigkill");
    let config = dir.join("tiny.json");
    std::fs::write(&config, tiny_config()).unwrap();
    let data = repo("data/fashion-mnist");
    let settings = [
        "--steps",
        "12",
        "--batch-size",
        "4",
        "--checkpoint-every",
        "1",
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
    let straight = dir.join("straight");
    let mut args = vec![
        "train",
        "--config",
        config.to_str().unwrap(),
        "--data",
        &data,
        "--out",
        straight.to_str().unwrap(),
    ];
    args.extend(settings);
    assert!(diffuse(&args).status.success());

    // The same run, killed with SIGKILL at fixed pseudo-random moments once it has a checkpoint, then resumed,
    // until it reaches step 12. Every kill must leave `latest` naming a complete checkpoint, and progress never goes
    // back by more than the steps since that checkpoint (here: none, one checkpoint per step).
    let out = dir.join("killed");
    let delays_ms = [40u64, 170, 5, 90, 260, 15, 130];
    let (mut kills, mut last_step) = (0, 0);
    for (round, delay) in delays_ms
        .iter()
        .chain(std::iter::repeat(&u64::MAX))
        .enumerate()
    {
        let mut command = Command::new(env!("CARGO_BIN_EXE_diffuse"));
        command.arg("train").args(["--data", &data]);
        if round == 0 {
            command
                .args(["--config", config.to_str().unwrap(), "--out"])
                .arg(&out);
        } else {
            command.arg("--resume").arg(&out);
        }
        let mut child = command
            .args(settings)
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        if *delay != u64::MAX {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
            while !out.join("latest").is_file() {
                assert!(
                    std::time::Instant::now() < deadline,
                    "no checkpoint was ever written"
                );
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            std::thread::sleep(std::time::Duration::from_millis(*delay));
            child.kill().unwrap();
        }
        let status = child.wait().unwrap();
        // A kill that arrives after the run finished does not count: only a death by SIGKILL does.
        if std::os::unix::process::ExitStatusExt::signal(&status) == Some(9) {
            kills += 1;
        }
        let step = latest_readable_step(&out).expect("a checkpoint survives every kill");
        assert!(
            step >= last_step,
            "latest went back from step {last_step} to {step}"
        );
        last_step = step;
        if step == 12 {
            assert!(status.success() || round < delays_ms.len());
            break;
        }
        assert!(
            round < delays_ms.len() + 1,
            "the unkilled run did not finish"
        );
    }
    assert!(
        kills >= 3,
        "only {kills} kills landed before the run finished"
    );
    for file in [
        "model/diffusion_pytorch_model.safetensors",
        "ema/diffusion_pytorch_model.safetensors",
        "optimizer.safetensors",
    ] {
        let a = std::fs::read(out.join("step-12").join(file)).unwrap();
        let b = std::fs::read(straight.join("step-12").join(file)).unwrap();
        assert!(
            a == b,
            "{file}: the killed-and-resumed run differs from the straight one"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
