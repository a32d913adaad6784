//! `diffuse sample --init-image` end to end on a tiny pixel model: SDEdit prints the level it starts from and at
//! strength 0 returns the image, RePaint keeps the unmasked pixels exactly, `eval-edit` scores both, and every bad
//! input is refused by name.

use std::path::Path;

mod common;
use common::{diffuse, fails, ok, read_samples, repo, synthetic_data, temp_dir, tiny_config};

/// Writes an 8-bit PNG of `channels` (1 or 3) planes of `side`×`side` from `value(channel, y, x)`.
fn write_png(path: &Path, channels: usize, side: usize, value: impl Fn(usize, usize, usize) -> u8) {
    let mut bytes = Vec::new();
    let mut encoder = png::Encoder::new(&mut bytes, side as u32, side as u32);
    encoder.set_color(if channels == 1 {
        png::ColorType::Grayscale
    } else {
        png::ColorType::Rgb
    });
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().unwrap();
    let data: Vec<u8> = (0..side * side)
        .flat_map(|i| (0..channels).map(move |c| (c, i)))
        .map(|(c, i)| value(c, i / side, i % side))
        .collect();
    writer.write_image_data(&data).unwrap();
    writer.finish().unwrap();
    std::fs::write(path, bytes).unwrap();
}

/// Owned arguments as `&str`s.
fn args(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// The test image's grey level at (y, x).
fn grey(y: usize, x: usize) -> u8 {
    ((y * 28 + x) * 7 % 256) as u8
}

#[test]
fn sdedit_and_repaint_edit_images_and_bad_input_is_refused() {
    let dir = temp_dir("edit");
    let data = dir.join("data");
    synthetic_data(&data, 16, true);
    let config = dir.join("tiny.json");
    std::fs::write(&config, tiny_config()).unwrap();
    let run = dir.join("run");
    let p = |name: &str| dir.join(name).to_str().unwrap().to_string();
    ok(&[
        "train",
        "--config",
        config.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--out",
        run.to_str().unwrap(),
        "--steps",
        "2",
        "--batch-size",
        "4",
        "--checkpoint-every",
        "2",
        "--sample-every",
        "0",
        "--num-train-timesteps",
        "50",
    ]);
    let run = run.to_str().unwrap();
    write_png(&dir.join("image.png"), 1, 28, |_, y, x| grey(y, x));
    // White (fill) on the left half.
    write_png(
        &dir.join("mask.png"),
        1,
        28,
        |_, _, x| if x < 14 { 255 } else { 0 },
    );
    write_png(&dir.join("small-mask.png"), 1, 14, |_, _, _| 255);
    write_png(&dir.join("colour.png"), 3, 28, |c, y, x| {
        grey(y, x) ^ (c as u8)
    });
    let image = p("image.png");
    let base = [
        "sample",
        "--checkpoint",
        run,
        "--steps",
        "10",
        "--count",
        "2",
    ];
    let with = |extra: &[&str]| -> Vec<String> {
        base.iter().chain(extra).map(|s| s.to_string()).collect()
    };

    // SDEdit: the level reached is printed; the grid is written.
    let v = with(&[
        "--init-image",
        &image,
        "--strength",
        "0.5",
        "--sampler",
        "ddim",
        "--out",
        &p("sdedit.png"),
    ]);
    let stderr = ok(&args(&v));
    assert!(
        stderr.contains("SDEdit: strength 0.5 keeps 5 of 10 steps, from step 5: timestep")
            && stderr.contains("ᾱ = ")
            && stderr.contains("x_t = √ᾱ·x0 + √(1−ᾱ)·ε"),
        "{stderr}"
    );
    assert!(dir.join("sdedit.png").exists());
    let v = with(&[
        "--init-image",
        &image,
        "--strength",
        "0.5",
        "--sampler",
        "euler",
        "--out",
        &p("euler.png"),
    ]);
    assert!(ok(&args(&v)).contains("(x = x0 + σ·ε)"));

    // Strength 0: the image itself, to the rounding of its 8-bit levels.
    let v = with(&[
        "--init-image",
        &image,
        "--strength",
        "0",
        "--out",
        &p("zero.png"),
        "--out-tensor",
        &p("zero.safetensors"),
    ]);
    ok(&args(&v));
    let (values, shape) = read_samples(&dir.join("zero.safetensors"));
    assert_eq!(shape, [2, 1, 28, 28]);
    for (i, v) in values.iter().enumerate() {
        let want = f32::from(grey(i % 784 / 28, i % 28)) / 127.5 - 1.0;
        assert_eq!(*v, want);
    }

    // RePaint: the kept (black) half exactly as given, the filled half changed.
    let v = with(&[
        "--init-image",
        &image,
        "--mask",
        &p("mask.png"),
        "--jump-length",
        "3",
        "--jump-n-sample",
        "2",
        "--class",
        "3",
        "--guidance",
        "2",
        "--out",
        &p("repaint.png"),
        "--out-tensor",
        &p("repaint.safetensors"),
    ]);
    let stderr = ok(&args(&v));
    assert!(
        stderr.contains("RePaint: 10 steps, jumps of 3 levels, 2 passes each"),
        "{stderr}"
    );
    let (values, _) = read_samples(&dir.join("repaint.safetensors"));
    let mut changed = 0;
    for (i, v) in values.iter().enumerate() {
        let (y, x) = (i % 784 / 28, i % 28);
        let given = f32::from(grey(y, x)) / 127.5 - 1.0;
        if x >= 14 {
            assert_eq!(*v, given, "kept pixel ({y}, {x})");
        } else if *v != given {
            changed += 1;
        }
    }
    assert!(changed > 700, "only {changed} filled pixels changed");

    // Bad input, each named.
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            with(&["--init-image", &image, "--strength", "1.5"]),
            "--strength: ",
        ),
        (
            with(&["--init-image", &image, "--strength=-0.2"]),
            "outside [0, 1]",
        ),
        (
            with(&["--init-image", &image, "--mask", &p("small-mask.png")]),
            "14×14 pixels, but the images are 28×28",
        ),
        (
            with(&["--init-image", &p("colour.png")]),
            "the images have 3 channels but the model takes 1: give greyscale images",
        ),
        (
            with(&["--strength", "0.5"]),
            "--strength edits an image: give it with --init-image",
        ),
        (
            with(&[
                "--init-image",
                &image,
                "--mask",
                &p("mask.png"),
                "--strength",
                "0.5",
            ]),
            "RePaint (--mask) starts from pure noise",
        ),
        (
            with(&["--init-image", &image, "--sampler", "pc"]),
            "is a score sampler",
        ),
        (
            with(&["--init-image", &image, "--guidance", "2"]),
            "--guidance other than 1 needs --class",
        ),
    ];
    for (v, want) in cases {
        let stderr = fails(&args(&v));
        assert!(stderr.contains(want), "{v:?}: {stderr}");
    }

    // eval-edit: SDEdit rows (strength 0 is the guides themselves) and a RePaint row, scored with the classifier.
    let classifier = repo("data/classifier/fashion-classifier.safetensors");
    let data = data.to_str().unwrap();
    let measure = |extra: &[&str]| -> Vec<String> {
        let common = [
            "eval-edit",
            "--checkpoint",
            run,
            "--steps",
            "2",
            "--num",
            "8",
            "--batch",
            "4",
            "--data",
            data,
            "--classifier",
            &classifier,
        ];
        common.iter().chain(extra).map(|s| s.to_string()).collect()
    };
    let json = p("edit.json");
    let v = measure(&[
        "--strengths",
        "0,1",
        "--mask",
        &p("mask.png"),
        "--json",
        &json,
    ]);
    let run_out = diffuse(&args(&v));
    let stdout = String::from_utf8_lossy(&run_out.stdout).into_owned();
    assert!(
        run_out.status.success(),
        "{}",
        String::from_utf8_lossy(&run_out.stderr)
    );
    assert!(
        stdout.contains("| SDEdit, strength 0 | 0.0000 |"),
        "{stdout}"
    );
    assert!(stdout.contains("| SDEdit, strength 1 |"), "{stdout}");
    assert!(
        stdout.contains("| RePaint, jumps of 10 levels × 1 passes |"),
        "{stdout}"
    );
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(report["rows"].as_array().unwrap().len(), 3);
    assert_eq!(report["guide_split"], "train");
    // --guides test: strength 0 returns the guides, so it scores the first test images against the test split: FD 0
    // where they are the whole split. On a dataset whose test split is the training split inverted, the training
    // images score far from it.
    let inverted = dir.join("inverted");
    synthetic_data(&inverted, 8, true);
    let train_images = std::fs::read(inverted.join("train-images-idx3-ubyte")).unwrap();
    let (header, pixels) = train_images.split_at(16);
    let test_images: Vec<u8> = header
        .iter()
        .copied()
        .chain(pixels.iter().map(|&v| 255 - v))
        .collect();
    std::fs::write(inverted.join("t10k-images-idx3-ubyte"), test_images).unwrap();
    let fd_of_strength_0 = |split: &str| -> f64 {
        let json = p(&format!("edit-{split}.json"));
        let mut v = measure(&["--strengths", "0", "--guides", split, "--json", &json]);
        let at = v.iter().position(|a| a == "--data").unwrap();
        v[at + 1] = inverted.to_str().unwrap().to_string();
        ok(&args(&v));
        let report: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
        assert_eq!(report["guide_split"], split);
        report["rows"][0]["report"]["fd_fashion_classifier"]
            .as_f64()
            .unwrap()
    };
    let (fd_test, fd_train) = (fd_of_strength_0("test"), fd_of_strength_0("train"));
    assert!(
        fd_test.abs() < 1e-3 && fd_train > 1.0,
        "test guides {fd_test}, train guides {fd_train}"
    );
    for (v, want) in [
        (measure(&[]), "nothing to measure"),
        (measure(&["--strengths", "0.5,2"]), "--strengths: "),
        (
            measure(&["--strengths", "0.5", "--guidance", "2"]),
            "needs --conditional",
        ),
    ] {
        let stderr = fails(&args(&v));
        assert!(stderr.contains(want), "{v:?}: {stderr}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
