//! `diffuse distill` and `diffuse train --objective consistency` end to end on a tiny U-Net: the round folders,
//! sampling them as distilled, resuming mid-round and between rounds exactly, and the refused inputs.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod common;
use common::{diffuse, synthetic_data, temp_dir, tiny_config};

fn ok(run: &Output) -> String {
    let stderr = String::from_utf8_lossy(&run.stderr).to_string();
    assert!(run.status.success(), "{stderr}");
    stderr
}

fn failed(run: &Output) -> String {
    let stderr = String::from_utf8_lossy(&run.stderr).to_string();
    assert!(!run.status.success(), "expected a failure:\n{stderr}");
    stderr
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A scratch folder with a synthetic labelled dataset, the tiny config and a teacher trained for 2 steps (seed
/// `seed`).
struct Setup {
    dir: PathBuf,
    data: PathBuf,
    config: PathBuf,
    teacher: PathBuf,
}

fn prepare(name: &str, seed: &str) -> Setup {
    let dir = temp_dir(name);
    let data = dir.join("data");
    synthetic_data(&data, 16, true);
    let config = dir.join("tiny.json");
    std::fs::write(&config, tiny_config()).unwrap();
    let teacher = dir.join("teacher");
    ok(&diffuse(&[
        "train",
        "--config",
        s(&config),
        "--data",
        s(&data),
        "--out",
        s(&teacher),
        "--steps",
        "2",
        "--batch-size",
        "4",
        "--sample-every",
        "0",
        "--grid-steps",
        "1",
        "--grid-columns",
        "1",
        "--prediction",
        "v_prediction",
        "--seed",
        seed,
    ]));
    Setup {
        dir,
        data,
        config,
        teacher,
    }
}

/// `diffuse distill KIND --teacher (the setup's) --data (the setup's) --out OUT EXTRA…`.
fn distill(setup: &Setup, kind: &str, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "distill",
        kind,
        "--teacher",
        s(&setup.teacher),
        "--data",
        s(&setup.data),
        "--out",
        s(out),
    ];
    args.extend(extra);
    diffuse(&args)
}

/// `diffuse distill KIND --resume OUT --data (the setup's) EXTRA…`.
fn resume(setup: &Setup, kind: &str, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "distill",
        kind,
        "--resume",
        s(out),
        "--data",
        s(&setup.data),
    ];
    args.extend(extra);
    diffuse(&args)
}

/// Resuming the `kind` run `out` with `other_teacher` is refused for the teacher's fingerprint, and resuming it with
/// the other `distill` subcommand for being a `kind` distillation run.
fn refuses_another_teacher_or_subcommand(
    setup: &Setup,
    kind: &str,
    out: &Path,
    other_teacher: &Path,
) {
    let err = failed(&resume(setup, kind, out, &["--teacher", s(other_teacher)]));
    assert!(
        err.contains("was distilled from the teacher") && err.contains("fingerprint"),
        "{err}"
    );
    let other_kind = match kind {
        "progressive" => "consistency",
        _ => "progressive",
    };
    let err = failed(&resume(setup, other_kind, out, &[]));
    assert!(err.contains(&format!("{kind} distillation run")), "{err}");
}

/// The progressive run the tests resume: 4 → 2 → 1 steps, 4 steps a round, a checkpoint every 2.
fn progressive(setup: &Setup, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "--teacher-steps",
        "4",
        "--to-steps",
        "1",
        "--steps",
        "4",
        "--batch-size",
        "4",
        "--checkpoint-every",
        "2",
        "--keep",
        "10",
        "--log-every",
        "1",
        "--guidance",
        "2",
    ];
    args.extend(extra);
    distill(setup, "progressive", out, &args)
}

fn weights(dir: &Path) -> Vec<u8> {
    std::fs::read(dir.join("ema").join("diffusion_pytorch_model.safetensors")).unwrap()
}

/// A copy of the finished run `from` whose `latest` names `step-{step}` and without the rounds from `first_missing`
/// on: the state of a run interrupted there.
fn rewind(from: &Path, to: &Path, step: u64, first_missing: u32) {
    let _ = std::fs::remove_dir_all(to);
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().into_string().unwrap();
        let later_round = name
            .strip_prefix("round-")
            .is_some_and(|k| k.parse::<u32>().unwrap() >= first_missing);
        let later_step = name
            .strip_prefix("step-")
            .is_some_and(|g| g.parse::<u64>().unwrap() > step);
        if later_round || later_step || name == "latest" {
            continue;
        }
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &to.join(&name));
        } else {
            std::fs::copy(entry.path(), to.join(&name)).unwrap();
        }
    }
    std::fs::write(to.join("latest"), format!("step-{step}\n")).unwrap();
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &to.join(entry.file_name()));
        } else {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

#[test]
fn progressive_distillation_writes_rounds_that_sample_with_ddim_and_resumes_exactly() {
    let setup = prepare("distill-progressive", "0");
    let out = setup.dir.join("prog");
    let log = ok(&progressive(&setup, &out, &[]));
    assert!(
        log.contains("round 1/2: 4 → 2 steps") && log.contains("round 2/2: 2 → 1 steps"),
        "{log}"
    );
    for (round, steps) in [(1, 2), (2, 1)] {
        let folder = out.join(format!("round-{round}"));
        assert!(
            out.join(format!("samples/round-{round}.png")).is_file(),
            "each round ends with a grid of its student"
        );
        let info: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(folder.join("distillation.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(info["steps"], steps);
        assert_eq!(info["guidance"], 2.0);
        // The student learned DDIM steps that take their noise from the clipped x̂0, and is sampled so.
        assert_eq!(info["clipped_model_output"], true);
        let scheduler =
            std::fs::read_to_string(folder.join("scheduler/scheduler_config.json")).unwrap();
        assert!(
            scheduler.contains("DDIMScheduler") && scheduler.contains("\"trailing\""),
            "{scheduler}"
        );
        // diffuse sample runs the student with DDIM at its own step count.
        let grid = setup.dir.join(format!("round-{round}.png"));
        let log = ok(&diffuse(&[
            "sample",
            "--checkpoint",
            s(&folder),
            "--count",
            "1",
            "--out",
            s(&grid),
        ]));
        assert!(log.contains(&format!("(ddim, {steps} steps)")), "{log}");
        assert!(!log.contains("note:"), "no ignored settings: {log}");
    }
    // Interrupted in round 1 (after 2 steps), between the rounds (step 4) and in round 2 (step 6): each resumed
    // run ends with the same students, bit for bit.
    for (step, first_missing) in [(2, 1), (4, 2), (6, 2)] {
        let resumed = setup.dir.join(format!("resumed-{step}"));
        rewind(&out, &resumed, step, first_missing);
        let log = ok(&resume(
            &setup,
            "progressive",
            &resumed,
            &["--log-every", "1"],
        ));
        assert!(log.contains("round 2/2"), "{log}");
        for round in ["round-1", "round-2"] {
            assert!(
                weights(&out.join(round)) == weights(&resumed.join(round)),
                "resumed at step {step}: {round} differs"
            );
        }
        let lines = std::fs::read_to_string(resumed.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .count();
        assert_eq!(
            lines, 8,
            "one metrics line per step, the resumed ones once, after resuming at {step}"
        );
    }
    let log = ok(&resume(&setup, "progressive", &out, &[]));
    assert!(log.contains("nothing to do"), "{log}");
}

#[test]
fn bad_distillation_inputs_are_refused_by_name() {
    let setup = prepare("distill-errors", "0");
    let out = setup.dir.join("bad");
    for (to, want) in [
        ("3", "power of two"),
        ("4", "below the teacher's 4"),
        ("8", "below the teacher's 4"),
    ] {
        let args = ["--teacher-steps", "4", "--to-steps", to];
        let err = failed(&distill(&setup, "progressive", &out, &args));
        assert!(
            err.contains("--to-steps") && err.contains(want),
            "--to-steps {to}: {err}"
        );
    }
    // A student config of another architecture than the teacher's.
    let other = setup.dir.join("other.json");
    std::fs::write(&other, tiny_config().replace("[8, 16]", "[8, 8]")).unwrap();
    for kind in ["progressive", "consistency"] {
        let mut args = vec!["--config", s(&other)];
        if kind == "progressive" {
            args.extend(["--to-steps", "2"]);
        }
        let err = failed(&distill(&setup, kind, &out, &args));
        assert!(
            err.contains("another architecture") && err.contains("leave --config out"),
            "{err}"
        );
    }
    // The teacher's own config is accepted.
    ok(&distill(
        &setup,
        "progressive",
        &out,
        &[
            "--config",
            s(&setup.config),
            "--teacher-steps",
            "4",
            "--to-steps",
            "2",
            "--steps",
            "1",
            "--batch-size",
            "4",
        ],
    ));
    let other_teacher = prepare("distill-errors-other", "7").teacher;
    refuses_another_teacher_or_subcommand(&setup, "progressive", &out, &other_teacher);
    // Resuming with settings other than the run's, which a resumed run would ignore.
    for (flag, value) in [("--to-steps", "1"), ("--teacher-steps", "8")] {
        let err = failed(&resume(&setup, "progressive", &out, &[flag, value]));
        assert!(
            err.contains(&format!("{flag} {value} differs"))
                && err.contains(&format!("leave {flag} out")),
            "{err}"
        );
    }
    let err = failed(&resume(
        &setup,
        "progressive",
        &out,
        &["--config", s(&other)],
    ));
    assert!(
        err.contains("another architecture") && err.contains("leave --config out"),
        "{err}"
    );
    // A progressive student as the teacher of consistency distillation.
    let err = failed(&diffuse(&[
        "distill",
        "consistency",
        "--teacher",
        s(&out.join("round-1")),
        "--data",
        s(&setup.data),
        "--out",
        s(&setup.dir.join("cd-from-student")),
    ]));
    assert!(
        err.contains("is a progressive student") && err.contains("give the diffusion run"),
        "{err}"
    );
    // The same refusals for consistency distillation: bad settings, another teacher, the other subcommand.
    let cd = setup.dir.join("bad-cd");
    for (args, want) in [
        (["--levels", "1"], "--levels: 1"),
        (["--target-decay", "1"], "--target-decay: 1"),
    ] {
        let err = failed(&distill(&setup, "consistency", &cd, &args));
        assert!(err.contains(want), "{err}");
    }
    let tiny = ["--steps", "1", "--batch-size", "4", "--levels", "4"];
    ok(&distill(&setup, "consistency", &cd, &tiny));
    refuses_another_teacher_or_subcommand(&setup, "consistency", &cd, &other_teacher);
    // The level weighting is stored (uniform by default) and a resumed run keeps it.
    let weighted = setup.dir.join("cd-edm-output");
    let mut args = tiny.to_vec();
    args.extend(["--level-weighting", "edm-output"]);
    ok(&distill(&setup, "consistency", &weighted, &args));
    for (run, stored, other) in [
        (&cd, "\"uniform\"", "edm-output"),
        (&weighted, "\"edm_output\"", "uniform"),
    ] {
        let state = std::fs::read_to_string(run.join("step-1/distill_state.json")).unwrap();
        assert!(
            state.contains(&format!("\"level_weighting\": {stored}")),
            "{state}"
        );
        let err = failed(&resume(
            &setup,
            "consistency",
            run,
            &["--level-weighting", other],
        ));
        assert!(
            err.contains(&format!("--level-weighting {other} differs"))
                && err.contains("leave --level-weighting out"),
            "{err}"
        );
    }
    let log = ok(&resume(
        &setup,
        "consistency",
        &weighted,
        &["--level-weighting", "edm-output"],
    ));
    assert!(log.contains("nothing to do"), "{log}");
    // A distillation run resumed by diffuse train, with or without --objective consistency.
    for objective in [&[][..], &["--objective", "consistency"][..]] {
        let mut args = vec!["train", "--resume", s(&out), "--data", s(&setup.data)];
        args.extend(objective);
        let err = failed(&diffuse(&args));
        assert!(
            err.contains("progressive distillation run")
                && err.contains(&format!("diffuse distill progressive --resume {}", s(&out))),
            "{err}"
        );
    }
}

#[test]
fn consistency_distillation_and_training_sample_with_the_consistency_sampler() {
    let setup = prepare("distill-consistency", "0");
    let cd = setup.dir.join("cd");
    ok(&distill(
        &setup,
        "consistency",
        &cd,
        &[
            "--steps",
            "2",
            "--batch-size",
            "4",
            "--levels",
            "6",
            "--sample-every",
            "1",
            "--grid-columns",
            "1",
        ],
    ));
    for grid in ["round-1-step-1", "round-1"] {
        assert!(cd.join(format!("samples/{grid}.png")).is_file(), "{grid}");
    }
    // The perceptual distance reads the shipped classifier compiled into the binary, from any working directory.
    let perceptual = setup.dir.join("perceptual");
    let run = Command::new(env!("CARGO_BIN_EXE_diffuse"))
        .current_dir(&setup.dir)
        .args([
            "distill",
            "consistency",
            "--teacher",
            s(&setup.teacher),
            "--data",
            s(&setup.data),
            "--out",
            s(&perceptual),
            "--steps",
            "1",
            "--batch-size",
            "2",
            "--levels",
            "6",
            "--distance",
            "perceptual",
        ])
        .output()
        .unwrap();
    ok(&run);
    assert!(perceptual.join("round-1").is_dir());
    let ct = setup.dir.join("ct");
    ok(&diffuse(&[
        "train",
        "--objective",
        "consistency",
        "--config",
        s(&setup.config),
        "--data",
        s(&setup.data),
        "--out",
        s(&ct),
        "--steps",
        "2",
        "--batch-size",
        "4",
        "--lr",
        "1e-3",
    ]));
    assert!(
        ct.join("samples/round-1.png").is_file(),
        "consistency training draws its grid with the consistency sampler"
    );
    let grid = setup.dir.join("grid.png");
    for run in [cd.join("round-1"), ct.clone()] {
        // One image from `run` with the sampler options `extra`.
        let sample_one = |extra: &[&str]| {
            let mut args = vec!["sample", "--checkpoint", s(&run), "--count", "1"];
            args.extend(extra);
            args.extend(["--out", s(&grid)]);
            diffuse(&args)
        };
        // A consistency model samples with its own sampler unless told otherwise.
        let log = ok(&sample_one(&[]));
        assert!(log.contains("(consistency, 1 steps)"), "{log}");
        let log = ok(&sample_one(&["--steps", "2"]));
        assert!(log.contains("(consistency, 2 steps)"), "{log}");
        let log = ok(&sample_one(&["--sigmas", "80,2,0.5"]));
        assert!(log.contains("(consistency, 3 steps)"), "{log}");
        let err = failed(&sample_one(&["--sigmas", "0.5,2"]));
        assert!(err.contains("must decrease"), "{err}");
        let err = failed(&sample_one(&["--sigmas", "80", "--steps", "2"]));
        assert!(err.contains("leave --steps out"), "{err}");
    }
    let err = failed(&diffuse(&[
        "sample",
        "--checkpoint",
        s(&setup.teacher),
        "--sampler",
        "ddim",
        "--sigmas",
        "80",
        "--out",
        s(&grid),
    ]));
    assert!(
        err.contains("--sigmas sets the noise levels of --sampler consistency"),
        "{err}"
    );
    let err = failed(&diffuse(&[
        "train",
        "--objective",
        "consistency",
        "--sde",
        "ve",
        "--out",
        s(&ct),
    ]));
    assert!(err.contains("leave out --vae and --sde"), "{err}");
    // A consistency model is no teacher.
    for (kind, teacher) in [
        ("progressive", ct.clone()),
        ("consistency", cd.join("round-1")),
    ] {
        let out = setup.dir.join(format!("from-{kind}"));
        let mut args = vec![
            "distill",
            kind,
            "--teacher",
            s(&teacher),
            "--data",
            s(&setup.data),
            "--out",
            s(&out),
        ];
        if kind == "progressive" {
            args.extend(["--to-steps", "1"]);
        }
        let err = failed(&diffuse(&args));
        assert!(err.contains("is a consistency model"), "{kind}: {err}");
    }
    // The consistency-training run resumed by the wrong command, or over another total.
    let err = failed(&resume(&setup, "progressive", &ct, &[]));
    assert!(
        err.contains(&format!(
            "diffuse train --objective consistency --resume {}",
            s(&ct)
        )),
        "{err}"
    );
    let err = failed(&diffuse(&[
        "train",
        "--resume",
        s(&ct),
        "--data",
        s(&setup.data),
    ]));
    assert!(
        err.contains("not a diffusion training run")
            && err.contains("diffuse train --objective consistency --resume"),
        "{err}"
    );
    let err = failed(&diffuse(&[
        "train",
        "--objective",
        "consistency",
        "--resume",
        s(&ct),
        "--data",
        s(&setup.data),
        "--steps",
        "3",
    ]));
    assert!(
        err.contains("--steps 3") && err.contains("leave --steps out"),
        "{err}"
    );
    // Without --steps it continues with its own total (here: it is done).
    let log = ok(&diffuse(&[
        "train",
        "--objective",
        "consistency",
        "--resume",
        s(&ct),
        "--data",
        s(&setup.data),
    ]));
    assert!(log.contains("nothing to do"), "{log}");
}
