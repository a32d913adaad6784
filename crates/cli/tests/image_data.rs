//! `diffuse train` on image folders as users have them: the default command (no config flag) trains and samples on
//! an unlabelled and on a labelled RGB folder, an explicit config.json that does not fit is refused naming both sides,
//! a folder with a broken file writes nothing, and the shipped Fashion-MNIST is found from any working directory.

use std::path::Path;
use std::process::Command;

mod common;
use common::{diffuse, temp_dir, tiny_config};

/// `count` 16×16 RGB images, PNG and JPEG alternately, in `dir` and a sub-folder.
fn rgb_folder(dir: &Path, count: u32) {
    std::fs::create_dir_all(dir.join("more")).unwrap();
    for i in 0..count {
        let image = image::RgbImage::from_fn(16, 16, |x, y| {
            image::Rgb([(x * 16) as u8, (y * 16) as u8, (i * 30) as u8])
        });
        let name = if i % 2 == 0 {
            format!("more/img{i}.png")
        } else {
            format!("img{i}.jpg")
        };
        image.save(dir.join(name)).unwrap();
    }
}

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Few steps, a small grid, nothing in between.
const SHORT: [&str; 12] = [
    "--steps",
    "2",
    "--batch-size",
    "4",
    "--grid-steps",
    "2",
    "--grid-columns",
    "2",
    "--sample-every",
    "0",
    "--checkpoint-every",
    "0",
];

fn train_then_sample(data: &Path, out: &Path) -> (String, String) {
    let (data, out_s) = (data.to_str().unwrap(), out.to_str().unwrap());
    let mut args = vec!["train", "--data", data, "--out", out_s];
    args.extend(SHORT);
    let train = diffuse(&args);
    assert!(train.status.success(), "{}", stderr(&train));
    let grid = out.join("grid.png");
    let sample = diffuse(&[
        "sample",
        "--checkpoint",
        out_s,
        "--steps",
        "2",
        "--count",
        "2",
        "--out",
        grid.to_str().unwrap(),
    ]);
    assert!(sample.status.success(), "{}", stderr(&sample));
    // Each command ends with the natural next one.
    assert!(stderr(&train).contains(&format!("next: diffuse sample --checkpoint {out_s}")));
    assert!(stderr(&sample).contains(&format!("next: diffuse eval --checkpoint {out_s}")));
    let decoded = image::open(&grid).unwrap();
    assert!(
        decoded.color().has_color(),
        "an RGB model's samples are in colour"
    );
    (stderr(&train), stderr(&sample))
}

#[test]
fn default_command_trains_and_samples_an_unlabelled_rgb_folder() {
    let dir = temp_dir("rgb-unlabelled");
    rgb_folder(&dir.join("data"), 8);
    let (train, _) = train_then_sample(&dir.join("data"), &dir.join("run"));
    for part in [
        "8 images (4 × 16×16 RGB 8-bit JPEG, 4 × 16×16 RGB 8-bit PNG); no labels",
        "unconditional",
        "3 input channels",
        "sample size 16×16",
    ] {
        assert!(train.contains(part), "{train:?} should say {part:?}");
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn default_command_trains_and_samples_a_labelled_rgb_folder() {
    let dir = temp_dir("rgb-labelled");
    let data = dir.join("data");
    rgb_folder(&data, 8);
    let labels: String = (0..8)
        .map(|i| {
            if i % 2 == 0 {
                format!("more/img{i}.png,{}\n", i % 3)
            } else {
                format!("img{i}.jpg,{}\n", i % 3)
            }
        })
        .collect();
    std::fs::write(data.join("labels.txt"), labels).unwrap();
    let (train, sample) = train_then_sample(&data, &dir.join("run"));
    assert!(
        train.contains("3 classes from") && train.contains("4 class embeddings"),
        "{train}"
    );
    assert!(!sample.contains("error"), "{sample}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn an_explicit_config_that_does_not_fit_names_both_sides_and_the_flag() {
    let dir = temp_dir("rgb-explicit");
    rgb_folder(&dir.join("data"), 4);
    let config = dir.join("tiny.json");
    std::fs::write(&config, tiny_config()).unwrap();
    let (out, data) = (dir.join("run"), dir.join("data"));
    let run = |extra: &[&str]| {
        let mut args = vec![
            "train",
            "--config",
            config.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend(extra);
        args.extend(SHORT);
        diffuse(&args)
    };
    let channels = stderr(&run(&[]));
    assert!(
        channels.contains("in_channels = 1")
            && channels.contains("3-channel images")
            && channels.contains("--channels 1"),
        "{channels}"
    );
    let size = stderr(&run(&["--channels", "1"]));
    assert!(
        size.contains("sample_size 28×28")
            && size.contains("16×16 images")
            && size.contains("--resolution 28"),
        "{size}"
    );
    let labels = stderr(&run(&["--channels", "1", "--resolution", "28"]));
    assert!(
        labels.contains("class-conditional") && labels.contains("has no labels"),
        "{labels}"
    );
    assert!(!out.exists(), "a refused run writes nothing");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_broken_image_stops_the_run_naming_the_file_before_anything_is_written() {
    let dir = temp_dir("rgb-broken");
    let data = dir.join("data");
    rgb_folder(&data, 4);
    std::fs::write(data.join("more/broken.png"), b"\x89PNG\r\n\x1a\nnot really").unwrap();
    let out = dir.join("run");
    let run = diffuse(&[
        "train",
        "--data",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    let err = stderr(&run);
    assert!(
        !run.status.success() && err.contains("more/broken.png") && err.contains("not a valid PNG"),
        "{err}"
    );
    assert!(!out.exists(), "a refused run writes nothing");
    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let err = stderr(&diffuse(&[
        "train",
        "--data",
        empty.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]));
    assert!(
        err.contains("holds no images") && err.contains(empty.to_str().unwrap()),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn the_default_train_command_finds_the_shipped_data_from_any_folder() {
    let dir = temp_dir("anywhere");
    let run = Command::new(env!("CARGO_BIN_EXE_diffuse"))
        .current_dir(&dir)
        .args([
            "train",
            "--steps",
            "1",
            "--batch-size",
            "2",
            "--grid-steps",
            "1",
            "--grid-columns",
            "1",
            "--checkpoint-every",
            "0",
            "--sample-every",
            "0",
        ])
        .output()
        .unwrap();
    let err = stderr(&run);
    assert!(run.status.success(), "{err}");
    assert!(
        err.contains("10000 images of 1×28×28") && err.contains("shipped"),
        "{err}"
    );
    assert!(dir.join("runs/fashion-small/samples/final.png").is_file());
    let _ = std::fs::remove_dir_all(dir);
}
