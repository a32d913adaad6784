//! `mpirun -np 2 diffuse train` against one process, on the shipped data: same losses and weights, a killed or hung
//! rank ends the job with the last checkpoint whole, and a run resumes onto a different number of processes; the
//! same for `diffuse vae train` with its discriminator on (and a killed rank), and for `diffuse clip train` (the embeddings gathered
//! across the ranks); the commands that train in one process only refuse several ranks, naming the fix.
//!
//! These need the `mpi` feature (and so Open MPI): `cargo test --release -p diffuse-cli --features mpi --test
//! mpi_train`. Built without it, the MPI tests are reported ignored with that reason, and two tests run instead: a
//! build without MPI refuses to run under mpirun, and the one-process commands refuse several ranks (read from the
//! variables mpirun sets).

use libtest_mimic::{Arguments, Trial};
#[cfg(feature = "mpi")]
use std::path::{Path, PathBuf};
#[cfg(feature = "mpi")]
use std::process::{Command, Output, Stdio};
#[cfg(feature = "mpi")]
use std::time::{Duration, Instant};

mod common;
#[cfg(feature = "mpi")]
use common::{repo, synthetic_data, temp_dir, tiny_config, TINY_CLIP, TINY_VAE_CONFIG};

/// The options of every run: the tiny U-Net at the global batch of 32, a learning rate that does not depend on the
/// total number of steps (so a run to 10 steps is the first half of one to 20), no grids but the final one.
#[cfg(feature = "mpi")]
const RUN: [&str; 16] = [
    "--batch-size",
    "32",
    "--lr-schedule",
    "constant",
    "--num-train-timesteps",
    "100",
    "--log-every",
    "1",
    "--sample-every",
    "0",
    "--grid-steps",
    "1",
    "--grid-columns",
    "1",
    "--device",
    "cpu",
];

/// A scratch folder with the tiny config.
#[cfg(feature = "mpi")]
fn setup(name: &str) -> (PathBuf, String) {
    let dir = temp_dir(name);
    let config = dir.join("tiny.json");
    std::fs::write(&config, tiny_config()).unwrap();
    let config = config.to_str().unwrap().to_string();
    (dir, config)
}

/// `mpirun -np N diffuse ARGS` (one thread per process: the machine may have as few cores as processes), or, for
/// `processes == 0`, `diffuse ARGS` without mpirun.
#[cfg(feature = "mpi")]
fn launch(processes: usize, args: &[&str]) -> Command {
    let bin = env!("CARGO_BIN_EXE_diffuse");
    let mut command = if processes == 0 {
        Command::new(bin)
    } else {
        let mut mpirun = Command::new("mpirun");
        mpirun
            .args([
                "-np",
                &processes.to_string(),
                "--oversubscribe",
                "--bind-to",
                "none",
            ])
            .args(["-x", "RAYON_NUM_THREADS=1", bin])
            // CI containers run as root, which Open MPI refuses unless told.
            .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
            .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1");
        mpirun
    };
    command.args(args).env("RAYON_NUM_THREADS", "1");
    command
}

#[cfg(feature = "mpi")]
fn succeed(mut command: Command) -> Output {
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{command:?} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// The loss of every step of a run's metrics.
#[cfg(feature = "mpi")]
fn losses(out: &Path) -> Vec<(u64, f64)> {
    std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (v["step"].as_u64().unwrap(), v["loss"].as_f64().unwrap())
        })
        .collect()
}

/// Every f32 tensor of the safetensors file `path`, by name, each name prefixed with `part/`.
#[cfg(feature = "mpi")]
fn tensors(path: &Path, part: &str) -> Vec<(String, Vec<f32>)> {
    let bytes = std::fs::read(path).unwrap();
    let tensors = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut names: Vec<String> = tensors.names().into_iter().cloned().collect();
    names.sort();
    names
        .into_iter()
        .map(|name| {
            let view = tensors.tensor(&name).unwrap();
            let values = view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            (format!("{part}/{name}"), values)
        })
        .collect()
}

/// Every weight of checkpoint `step` of a run (model and EMA), by name.
#[cfg(feature = "mpi")]
fn weights(out: &Path, step: u64) -> Vec<(String, Vec<f32>)> {
    let mut all = Vec::new();
    for part in ["model", "ema"] {
        let path = out
            .join(format!("step-{step}"))
            .join(part)
            .join("diffusion_pytorch_model.safetensors");
        all.extend(tensors(&path, part));
    }
    all
}

/// Two runs' numbers per logged step agree: the same steps, and each number within `relative` of the first run's
/// (relative to its magnitude, floored at 1e-3 so that numbers near zero compare absolutely).
#[cfg(feature = "mpi")]
fn assert_steps_within<const N: usize>(
    la: &[(u64, [f64; N])],
    lb: &[(u64, [f64; N])],
    relative: f64,
    what: &str,
) {
    assert_eq!(la.len(), lb.len(), "{la:?}\n{lb:?}");
    for ((sa, x), (sb, y)) in la.iter().zip(lb) {
        assert_eq!(sa, sb);
        for (u, v) in x.iter().zip(y) {
            assert!(
                (u - v).abs() <= relative * u.abs().max(1e-3),
                "step {sa}: {what} {x:?} against {y:?}"
            );
        }
    }
}

/// Two runs' weights, matched by name, differ by at most `tolerance` each (a NaN difference fails), leaving out the
/// tensors whose name ends with `skip`.
#[cfg(feature = "mpi")]
fn assert_weights_within(
    wa: &[(String, Vec<f32>)],
    wb: &[(String, Vec<f32>)],
    tolerance: f32,
    skip: Option<&str>,
) {
    assert_eq!(wa.len(), wb.len());
    let mut worst = (0.0f32, String::new());
    for ((na, va), (nb, vb)) in wa.iter().zip(wb) {
        assert_eq!(na, nb);
        if skip.is_some_and(|suffix| na.ends_with(suffix)) {
            continue;
        }
        for (x, y) in va.iter().zip(vb) {
            let d = (x - y).abs();
            if d.is_nan() || d > worst.0 {
                worst = (d, na.clone());
            }
        }
    }
    assert!(
        worst.0 <= tolerance,
        "weights differ by up to {} (in {})",
        worst.0,
        worst.1
    );
}

/// The runs agree to what reordering f32 sums allows. A shard sums half the batch's per-sample gradients and the
/// all-reduce adds the two halves, where one process sums all 32 in one pass: each gradient differs by a few ulps
/// (relative ~1e-6). AdamW divides the first moment by the root of the second, so an update differs by about as much
/// relatively, and each update moves a weight by at most ~lr = 2e-3: after 20 steps the weights differ by far less
/// than 20 × 2e-3 × 1e-4 = 4e-6 each, except for coordinates whose gradient is near zero, where m/√v is ill
/// conditioned; those still move by at most 2·lr per step. Hence: every weight within 1e-4 absolute (the weights
/// are O(0.1)), and the losses, which see weights that close, within 1e-4 relative.
#[cfg(feature = "mpi")]
fn assert_same_run(a: &Path, b: &Path, step: u64) {
    let loss = |run: &Path| -> Vec<(u64, [f64; 1])> {
        losses(run).into_iter().map(|(s, l)| (s, [l])).collect()
    };
    assert_steps_within(&loss(a), &loss(b), 1e-4, "loss");
    assert_weights_within(&weights(a, step), &weights(b, step), 1e-4, None);
}

#[cfg(feature = "mpi")]
fn two_processes_reproduce_one_and_resume_onto_one() {
    let (dir, config) = setup("mpi-reproduce");
    let data = repo("data/fashion-mnist");
    let [one, two, half] = ["one", "two", "half"].map(|name| dir.join(name));
    let train = |out: &Path, steps: &str| -> Vec<String> {
        let mut args = vec![
            "train", "--config", &config, "--data", &data, "--steps", steps,
        ];
        args.extend(["--out", out.to_str().unwrap(), "--checkpoint-every", "10"]);
        args.extend(RUN);
        args.iter().map(|s| s.to_string()).collect()
    };
    let run = |processes: usize, args: Vec<String>| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        succeed(launch(processes, &args))
    };
    run(0, train(&one, "20"));
    let output = run(2, train(&two, "20"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("over 2 processes"), "{stderr}");
    assert_eq!(losses(&two).len(), 20);
    assert_same_run(&one, &two, 20);
    assert!(two.join("samples/final.png").is_file());

    // Ten steps on two processes, then ten more on one: the same run.
    run(2, train(&half, "10"));
    let mut resume: Vec<String> = [
        "train",
        "--resume",
        half.to_str().unwrap(),
        "--data",
        &data,
        "--steps",
        "20",
    ]
    .map(String::from)
    .to_vec();
    resume.extend(RUN.map(String::from));
    let output = run(0, resume);
    assert!(String::from_utf8_lossy(&output.stderr).contains("at step 10"));
    assert_same_run(&one, &half, 20);
}

/// The gradient all-reduce overlapped with backward in many small buckets (`--bucket-mb 0.01`: 2621 values, so the
/// tiny U-Net's gradients go in dozens of buckets, started as backward finishes each) against one all-reduce pass
/// after backward (`--bucket-mb 0`): the same bits. With two ranks every summed value is one IEEE addition of the
/// two ranks' values, which is commutative and correctly rounded, so neither the buckets nor the algorithm MPI
/// picks for a message of their size can change it (docs/distributed.md).
#[cfg(feature = "mpi")]
fn overlapped_buckets_give_the_bits_of_one_pass_after_backward() {
    let (dir, config) = setup("mpi-overlap");
    let data = repo("data/fashion-mnist");
    let run = |name: &str, bucket_mb: &str| -> PathBuf {
        let out = dir.join(name);
        let out_s = out.to_str().unwrap().to_string();
        let mut args = vec![
            "train", "--config", &config, "--data", &data, "--steps", "6",
        ];
        args.extend(["--out", &out_s, "--bucket-mb", bucket_mb]);
        args.extend(RUN);
        succeed(launch(2, &args));
        out
    };
    let (after, overlapped) = (run("after", "0"), run("overlapped", "0.01"));
    assert_eq!(losses(&after), losses(&overlapped));
    assert_eq!(weights(&after, 6), weights(&overlapped, 6));
    let _ = std::fs::remove_dir_all(dir);
}

/// The options of every `vae train` run: the tiny autoencoder at the global batch of 8 with flips, the
/// discriminator on from step 2, a constant learning rate (so a run to 3 steps is the first half of one to 6), a
/// checkpoint every 3 steps and no grids but the final one.
#[cfg(feature = "mpi")]
const VAE_RUN: [&str; 23] = [
    "--batch-size",
    "8",
    "--hflip",
    "--disc-start",
    "2",
    "--disc-channels",
    "8",
    "--kl-weight",
    "1e-3",
    "--lr-schedule",
    "constant",
    "--checkpoint-every",
    "3",
    "--sample-every",
    "0",
    "--log-every",
    "1",
    "--scale-images",
    "16",
    "--grid-columns",
    "2",
    "--device",
    "cpu",
];

/// The loss terms of every step of a `vae train` run's metrics.
#[cfg(feature = "mpi")]
fn vae_losses(out: &Path) -> Vec<(u64, [f64; 6])> {
    let terms = [
        "loss",
        "reconstruction",
        "kl",
        "generator",
        "discriminator",
        "adaptive_weight",
    ];
    std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let step = v["step"].as_u64().unwrap();
            (step, terms.map(|t| v[t].as_f64().unwrap()))
        })
        .collect()
}

/// Every weight of checkpoint `step` of a `vae train` run: the autoencoder, its EMA and the discriminator.
#[cfg(feature = "mpi")]
fn vae_weights(out: &Path, step: u64) -> Vec<(String, Vec<f32>)> {
    let dir = out.join(format!("step-{step}"));
    let mut all = Vec::new();
    for part in ["vae", "ema"] {
        all.extend(tensors(
            &dir.join(part).join("diffusion_pytorch_model.safetensors"),
            part,
        ));
    }
    all.extend(tensors(
        &dir.join("discriminator.safetensors"),
        "discriminator",
    ));
    all
}

/// The `vae train` runs agree to what reordering f32 sums allows. Each image's forward pass reads that image alone,
/// so every per-image quantity (encoding, posterior noise, decoding, per-image losses, the discriminator's logits)
/// is the same f32 computation on a rank as in one process; only the sums over the batch are grouped differently
/// (a shard's 4 images, then the two shards added), which moves each batch sum and each gradient by a few ulps
/// (relative ~1e-6): the loss terms, and λ (a ratio of two gradient norms), within 1e-5 relative. AdamW's update
/// m/√v differs relatively by about as much, so after 6 steps of lr 1e-3 the weights (O(0.1)) stay within 1e-5.
/// The attention's key bias is left out: its gradient is zero in exact arithmetic (a shift of every key by `b` adds
/// `q·b` to every score of a query, which the softmax ignores), so backward computes rounding noise for it that
/// depends on the summation order, and Adam turns that noise into steps of about ±lr whose signs differ.
#[cfg(feature = "mpi")]
fn assert_same_vae_run(a: &Path, b: &Path, step: u64) {
    assert_steps_within(&vae_losses(a), &vae_losses(b), 1e-5, "loss terms");
    let (wa, wb) = (vae_weights(a, step), vae_weights(b, step));
    assert_weights_within(&wa, &wb, 1e-5, Some(".to_k.bias"));
}

/// `mpirun -np 2 diffuse vae train` against one process, with flips and the discriminator (adaptive weight and its
/// own step) on: the same losses and weights; the gradients summed during backward in many small buckets give the
/// bits of one pass after backward (with two ranks every summed value is one IEEE addition); and 3 steps on two
/// processes then 3 on one are the same run.
#[cfg(feature = "mpi")]
fn vae_two_processes_reproduce_one_and_resume_onto_one() {
    let dir = temp_dir("mpi-vae");
    let config = dir.join("tiny_vae.json");
    std::fs::write(&config, TINY_VAE_CONFIG).unwrap();
    let config = config.to_str().unwrap().to_string();
    let data = repo("data/fashion-mnist");
    let train = |processes: usize, name: &str, steps: &str, extra: &[&str]| -> Output {
        let out = dir.join(name).to_str().unwrap().to_string();
        let mut args = vec![
            "vae", "train", "--config", &config, "--data", &data, "--out", &out, "--steps", steps,
        ];
        args.extend(extra);
        args.extend(VAE_RUN);
        succeed(launch(processes, &args))
    };
    train(0, "one", "6", &[]);
    let output = train(2, "two", "6", &["--bucket-mb", "0.001"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("over 2 processes"), "{stderr}");
    train(2, "after", "6", &["--bucket-mb", "0"]);
    let [one, two, after, half] = ["one", "two", "after", "half"].map(|name| dir.join(name));
    assert_eq!(vae_losses(&two).len(), 6);
    assert_same_vae_run(&one, &two, 6);
    assert!(two.join("samples/final.png").is_file());
    assert_eq!(vae_losses(&two), vae_losses(&after));
    assert_eq!(vae_weights(&two, 6), vae_weights(&after, 6));

    train(2, "half", "3", &[]);
    let half_s = half.to_str().unwrap().to_string();
    let mut resume = vec![
        "vae", "train", "--resume", &half_s, "--data", &data, "--steps", "6",
    ];
    resume.extend(VAE_RUN);
    let output = succeed(launch(0, &resume));
    assert!(String::from_utf8_lossy(&output.stderr).contains("at step 3"));
    assert_same_vae_run(&one, &half, 6);
    let _ = std::fs::remove_dir_all(dir);
}

/// The options of every `clip train` run after the tiny CLIP's: the global batch of 7, so that the two ranks encode
/// shards of unequal size (3 and 4 pairs), a checkpoint every 2 steps, no evaluation.
#[cfg(feature = "mpi")]
const CLIP_RUN: [&str; 14] = [
    "--batch-size",
    "7",
    "--checkpoint-every",
    "2",
    "--log-every",
    "1",
    "--eval-images",
    "0",
    "--warmup",
    "1",
    "--keep",
    "3",
    "--device",
    "cpu",
];

/// The `clip train` runs agree to what reordering f32 sums allows. Each rank encodes its pairs one sequence and one
/// image at a time, as one process does, and every rank computes the loss from the same gathered embeddings, so the
/// losses differ only through the weights. The all-gather's backward gives each rank exactly the single process's
/// gradient at its embeddings (each rank back-propagates half the loss, and the two halves add exactly); what is
/// grouped differently is each weight gradient's sum over the batch (a shard's 3 or 4 pairs, then the two shards
/// added, against 7 in one pass), a few ulps (relative ~1e-6). AdamW's step m/√v differs relatively by about as much,
/// so after 4 steps of lr ≤ 1e-3 the weights (O(1)) stay within 1e-5, and the losses and gradient norms within 1e-5
/// relative. The attention's key bias is left out, as for the autoencoder: its gradient is zero in exact arithmetic,
/// so what backward computes for it is rounding noise that depends on the summation order, which Adam turns into
/// steps of about ±lr.
#[cfg(feature = "mpi")]
fn assert_same_clip_run(a: &Path, b: &Path, step: u64) {
    // The gradient norm before clipping too: AdamW's step is blind to a gradient scaled by a constant, and the
    // clipping to norm 1 to one scaled whole, so only the norm shows a gradient summed wrongly by a constant factor.
    let numbers = |run: &Path| -> Vec<(u64, [f64; 2])> {
        std::fs::read_to_string(run.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                let step = v["step"].as_u64().unwrap();
                (step, ["loss", "grad_norm"].map(|k| v[k].as_f64().unwrap()))
            })
            .collect()
    };
    assert_steps_within(&numbers(a), &numbers(b), 1e-5, "loss and gradient norm");
    let weights = |run: &Path| tensors(&run.join(format!("step-{step}/model.safetensors")), "clip");
    assert_weights_within(&weights(a), &weights(b), 1e-5, Some("k_proj.bias"));
}

/// `mpirun -np 2 diffuse clip train` against one process on 40 captioned synthetic images: the same losses and
/// weights; and the two-process run resumed on one process from its step-2 checkpoint is the same run.
#[cfg(feature = "mpi")]
fn clip_two_processes_reproduce_one_and_resume_onto_one() {
    let dir = temp_dir("mpi-clip");
    let data = dir.join("data");
    synthetic_data(&data, 40, true);
    let data = data.to_str().unwrap().to_string();
    let train = |processes: usize, out: &Path, steps: &str, resume: bool| -> Output {
        let out = out.to_str().unwrap().to_string();
        let mut args = vec!["clip", "train", "--data", &data, "--steps", steps];
        args.extend(match resume {
            true => ["--resume", &out],
            false => ["--out", &out],
        });
        args.extend(TINY_CLIP);
        args.extend(CLIP_RUN);
        succeed(launch(processes, &args))
    };
    let [one, two] = ["one", "two"].map(|name| dir.join(name));
    train(0, &one, "4", false);
    let output = train(2, &two, "4", false);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("over 2 processes"), "{stderr}");
    assert_eq!(losses(&two).len(), 4);
    assert_same_clip_run(&one, &two, 4);
    assert_same_clip_run(&one, &two, 2);

    // The two-process run as if it had stopped after its step-2 checkpoint (its learning-rate schedule is the
    // 4-step one), resumed on one process.
    std::fs::remove_dir_all(two.join("step-4")).unwrap();
    std::fs::write(two.join("latest"), "step-2\n").unwrap();
    let output = train(0, &two, "4", true);
    assert!(String::from_utf8_lossy(&output.stderr).contains("at step 2"));
    assert_same_clip_run(&one, &two, 4);
    let _ = std::fs::remove_dir_all(dir);
}

/// The training commands without data parallelism refuse to run as several ranks, naming the fix, before anything
/// is read or written. With the mpi feature the two ranks are started by mpirun; without it, the command is run as
/// rank 1 of 2 through the variables mpirun sets, which are all the refusal reads.
fn one_process_commands_refuse_several_ranks() {
    let out = common::temp_dir("mpi-refuse").join("run");
    let out = out.to_str().unwrap();
    for args in [
        vec![
            "distill",
            "progressive",
            "--teacher",
            "/nonexistent",
            "--out",
            out,
        ],
        vec!["train", "--objective", "consistency", "--out", out],
        vec!["classifier", "train", "--out", out],
    ] {
        #[cfg(feature = "mpi")]
        let output = launch(2, &args).output().unwrap();
        #[cfg(not(feature = "mpi"))]
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_diffuse"))
            .args(&args)
            .env("OMPI_COMM_WORLD_RANK", "1")
            .env("OMPI_COMM_WORLD_SIZE", "2")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            !output.status.success()
                && stderr.contains("one of 2 processes")
                && stderr.contains("Run it without mpirun (or with -np 1)"),
            "{args:?}: {stderr}"
        );
        assert!(!std::path::Path::new(out).exists(), "{args:?} wrote {out}");
    }
}

/// The ranks `mpirun` (pid `parent`) started, by rank.
#[cfg(feature = "mpi")]
fn rank_pid(parent: u32, rank: u32) -> Option<i32> {
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid ...: the command may hold spaces, so read after the last ')'.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok());
        if ppid != Some(parent) {
            continue;
        }
        let environ = std::fs::read(entry.path().join("environ")).unwrap_or_default();
        let wanted = format!("OMPI_COMM_WORLD_RANK={rank}");
        if environ.split(|&b| b == 0).any(|v| v == wanted.as_bytes()) {
            return Some(pid);
        }
    }
    None
}

/// Starts `args` (a long run on 2 processes that checkpoints into `out`), waits for its first checkpoint, sends
/// `signal` to rank 1, and returns the job's output: it must end by itself within `limit`.
#[cfg(feature = "mpi")]
fn fault(args: &[String], out: &Path, signal: i32, limit: Duration) -> Output {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut job = launch(2, &args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let begun = Instant::now();
    while !out.join("latest").is_file() {
        assert!(
            begun.elapsed() < Duration::from_secs(120),
            "no checkpoint after 2 minutes"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let rank1 = rank_pid(job.id(), 1).expect("rank 1 of the job");
    // SAFETY: kill with a pid read from /proc and a valid signal number has no memory effects.
    assert_eq!(unsafe { libc::kill(rank1, signal) }, 0);
    let stopped = Instant::now();
    loop {
        if job.try_wait().unwrap().is_some() {
            break;
        }
        if stopped.elapsed() > limit {
            let _ = job.kill();
            panic!("the job did not end within {limit:?} of the fault");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    job.wait_with_output().unwrap()
}

/// A `train` run on 2 processes checkpointing every 5 steps, with the given collective timeout, faulted by `signal`
/// ([`fault`]); returns the job's output, the run folder and the scratch folder.
#[cfg(feature = "mpi")]
fn train_fault(name: &str, signal: i32, timeout: &str) -> (Output, PathBuf, PathBuf) {
    let (dir, config) = setup(name);
    let data = repo("data/fashion-mnist");
    let out = dir.join("run");
    let out_s = out.to_str().unwrap().to_string();
    let mut args = vec![
        "train", "--config", &config, "--data", &data, "--out", &out_s,
    ];
    args.extend(["--steps", "100000", "--checkpoint-every", "5"]);
    args.extend(["--collective-timeout", timeout]);
    args.extend(RUN);
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let output = fault(&args, &out, signal, Duration::from_secs(60));
    (output, out, dir)
}

/// Resumes the run in `out` of `command` (`train`, `vae train`) with the options `run` for 3 more steps than its
/// last checkpoint on `processes` processes.
#[cfg(feature = "mpi")]
fn resume_three_more(out: &Path, processes: usize, command: &[&str], run: &[&str]) {
    let latest = std::fs::read_to_string(out.join("latest")).unwrap();
    let step: u64 = latest.trim().trim_start_matches("step-").parse().unwrap();
    let (data, out_s, steps) = (
        repo("data/fashion-mnist"),
        out.to_str().unwrap().to_string(),
        (step + 3).to_string(),
    );
    let mut args = command.to_vec();
    args.extend(["--resume", &out_s, "--data", &data, "--steps", &steps]);
    args.extend(run);
    let output = succeed(launch(processes, &args));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&format!("at step {step}")), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(out.join("latest")).unwrap().trim(),
        format!("step-{}", step + 3)
    );
}

#[cfg(feature = "mpi")]
fn a_killed_rank_ends_the_job_and_the_run_resumes() {
    let (output, out, _) = train_fault("mpi-kill", libc::SIGKILL, "60");
    assert!(!output.status.success());
    resume_three_more(&out, 2, &["train"], &RUN);
}

/// `vae train` as `train` above: rank 1 killed after the first checkpoint (every 3 steps) ends the job within the
/// limit, and the last checkpoint resumes on one process.
#[cfg(feature = "mpi")]
fn vae_a_killed_rank_ends_the_job_and_the_run_resumes() {
    let dir = temp_dir("mpi-vae-kill");
    let config = dir.join("tiny_vae.json");
    std::fs::write(&config, TINY_VAE_CONFIG).unwrap();
    let out = dir.join("run");
    let (config, data, out_s) = (
        config.to_str().unwrap().to_string(),
        repo("data/fashion-mnist"),
        out.to_str().unwrap().to_string(),
    );
    let mut args = vec![
        "vae", "train", "--config", &config, "--data", &data, "--out", &out_s,
    ];
    args.extend(["--steps", "100000", "--collective-timeout", "60"]);
    args.extend(VAE_RUN);
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let output = fault(&args, &out, libc::SIGKILL, Duration::from_secs(60));
    assert!(!output.status.success());
    resume_three_more(&out, 1, &["vae", "train"], &VAE_RUN);
    let _ = std::fs::remove_dir_all(dir);
}

#[cfg(feature = "mpi")]
fn a_hung_rank_ends_the_job_within_the_timeout_and_the_run_resumes() {
    let (output, out, dir) = train_fault("mpi-hang", libc::SIGSTOP, "2");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("did not complete within 2 s") && stderr.contains("--resume"),
        "{stderr}"
    );
    resume_three_more(&out, 1, &["train"], &RUN);
    let _ = std::fs::remove_dir_all(dir);
}

fn trials() -> Vec<Trial> {
    #[cfg(feature = "mpi")]
    {
        let test = |name: &str, body: fn()| {
            Trial::test(name, move || {
                body();
                Ok(())
            })
        };
        vec![
            test(
                "two_processes_reproduce_one_and_resume_onto_one",
                two_processes_reproduce_one_and_resume_onto_one,
            ),
            test(
                "overlapped_buckets_give_the_bits_of_one_pass_after_backward",
                overlapped_buckets_give_the_bits_of_one_pass_after_backward,
            ),
            test(
                "a_killed_rank_ends_the_job_and_the_run_resumes",
                a_killed_rank_ends_the_job_and_the_run_resumes,
            ),
            test(
                "vae_two_processes_reproduce_one_and_resume_onto_one",
                vae_two_processes_reproduce_one_and_resume_onto_one,
            ),
            test(
                "a_hung_rank_ends_the_job_within_the_timeout_and_the_run_resumes",
                a_hung_rank_ends_the_job_within_the_timeout_and_the_run_resumes,
            ),
            test(
                "vae_a_killed_rank_ends_the_job_and_the_run_resumes",
                vae_a_killed_rank_ends_the_job_and_the_run_resumes,
            ),
            test(
                "clip_two_processes_reproduce_one_and_resume_onto_one",
                clip_two_processes_reproduce_one_and_resume_onto_one,
            ),
            test(
                "one_process_commands_refuse_several_ranks",
                one_process_commands_refuse_several_ranks,
            ),
        ]
    }
    #[cfg(not(feature = "mpi"))]
    {
        use libtest_mimic::Completion;
        let reason = "diffuse-cli was built without the mpi feature: install Open MPI and run `cargo test --release \
                      -p diffuse-cli --features mpi --test mpi_train`";
        let mut trials: Vec<Trial> = [
            "two_processes_reproduce_one_and_resume_onto_one",
            "overlapped_buckets_give_the_bits_of_one_pass_after_backward",
            "a_killed_rank_ends_the_job_and_the_run_resumes",
            "a_hung_rank_ends_the_job_within_the_timeout_and_the_run_resumes",
            "vae_two_processes_reproduce_one_and_resume_onto_one",
            "vae_a_killed_rank_ends_the_job_and_the_run_resumes",
            "clip_two_processes_reproduce_one_and_resume_onto_one",
        ]
        .into_iter()
        .map(|name| Trial::ignorable_test(name, move || Ok(Completion::ignored_with(reason))))
        .collect();
        trials.push(Trial::test(
            "one_process_commands_refuse_several_ranks",
            || {
                one_process_commands_refuse_several_ranks();
                Ok(())
            },
        ));
        trials.push(Trial::test(
            "a_build_without_mpi_refuses_to_run_under_mpirun",
            || {
                let output = std::process::Command::new(env!("CARGO_BIN_EXE_diffuse"))
                    .args([
                        "train",
                        "--steps",
                        "1",
                        "--out",
                        "/nonexistent/diffuse-mpi-refusal",
                    ])
                    .env("OMPI_COMM_WORLD_RANK", "1")
                    .env("OMPI_COMM_WORLD_SIZE", "2")
                    .output()
                    .map_err(|e| e.to_string())?;
                let stderr = String::from_utf8_lossy(&output.stderr);
                if output.status.success()
                    || !stderr.contains("openmpi-bin")
                    || !stderr.contains("--features mpi")
                {
                    return Err(format!(
                        "expected the refusal naming the package and the feature: {stderr}"
                    )
                    .into());
                }
                Ok(())
            },
        ));
        trials
    }
}

fn main() {
    libtest_mimic::run(&Arguments::from_args(), trials()).exit();
}
