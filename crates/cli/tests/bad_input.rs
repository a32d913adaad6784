//! Bad input refused before anything is allocated or written, one row per case: non-finite numbers in float options
//! of every command, and a model too big for this machine's memory. (The bad files of `diffuse sample` — NaN or
//! infinite `--init-noise`, latents of the wrong shape — are in `sample_pipeline.rs`; bad image folders and configs
//! that do not fit the data in `image_data.rs`.)

mod common;
use common::{diffuse, temp_dir};

#[test]
fn non_finite_float_options_are_refused_by_every_command() {
    let table: [(&[&str], &str); 8] = [
        (&["train", "--lr", "inf"], "--lr"),
        (&["train", "--ema-decay", "nan"], "--ema-decay"),
        (&["train", "--grid-guidance", "NaN"], "--grid-guidance"),
        (
            &["train", "--sde", "ve", "--sigma-max", "inf"],
            "--sigma-max",
        ),
        (&["train", "--eval-guidance", "1e999"], "--eval-guidance"),
        (
            &["eval", "--checkpoint", "x", "--guidance", "nan"],
            "--guidance",
        ),
        (&["sample", "--checkpoint", "x", "--rtol", "nan"], "--rtol"),
        (&["vae", "train", "--kl-weight", "nan"], "--kl-weight"),
    ];
    let dir = temp_dir("bad-floats");
    for (args, flag) in table {
        let out = dir.join("run");
        let mut args = args.to_vec();
        args.extend(["--out", out.to_str().unwrap()]);
        if args[0] == "eval" {
            args.truncate(args.len() - 2);
        }
        let run = diffuse(&args);
        let err = String::from_utf8_lossy(&run.stderr);
        assert!(!run.status.success(), "{args:?} was accepted");
        assert!(
            err.contains(flag) && err.contains("is not a finite number"),
            "{args:?}: {err}"
        );
        assert!(!out.exists(), "{args:?} wrote {}", out.display());
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_model_too_big_for_memory_is_refused_with_the_size_it_needs() {
    if !std::path::Path::new("/proc/meminfo").exists() {
        return;
    }
    let dir = temp_dir("bad-big-model");
    let config = dir.join("big.json");
    std::fs::write(
        &config,
        r#"{"_class_name": "UNet2DModel", "sample_size": 28, "in_channels": 1, "out_channels": 1,
            "block_out_channels": [200000, 64, 64], "layers_per_block": 1,
            "down_block_types": ["DownBlock2D", "DownBlock2D", "DownBlock2D"],
            "up_block_types": ["UpBlock2D", "UpBlock2D", "UpBlock2D"], "norm_num_groups": 4,
            "num_class_embeds": 11}"#,
    )
    .unwrap();
    let out = dir.join("run");
    let run = diffuse(&[
        "train",
        "--config",
        config.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{err}");
    assert!(
        err.contains("big.json")
            && err.contains("would need about")
            && err.contains("GiB")
            && err.contains("available"),
        "{err}"
    );
    assert!(!out.exists());
    let _ = std::fs::remove_dir_all(dir);
}
