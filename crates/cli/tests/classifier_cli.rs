//! `diffuse classifier train|eval` and `diffuse eval --classifier DIR` on tiny RGB folders: the classifier folder is
//! written whole, scores its own test split, gives `diffuse eval` a feature space for 3×16×16 images, labelled or
//! not, and unlabelled data, a classifier that cannot read the images, a folder without held-out images and a
//! measure that needs labels the data lacks are refused with what fixes them.

use std::path::Path;

mod common;
use common::{diffuse, failure, success, temp_dir, tiny_unet_config};

/// Three 16×16 RGB classes in sub-folders (`red`, `green`, `blue`: that channel bright, the others dark, with a
/// per-image pattern), `count` images each, under `dir/train` and `dir/test`.
fn labelled_rgb(dir: &Path, count: u32) {
    for (split, offset) in [("train", 0), ("test", 100)] {
        for (c, class) in ["red", "green", "blue"].into_iter().enumerate() {
            let folder = dir.join(split).join(class);
            std::fs::create_dir_all(&folder).unwrap();
            for i in 0..count {
                let image = image::RgbImage::from_fn(16, 16, |x, y| {
                    let wiggle = ((x * 7 + y * 3 + (i + offset) * 11) % 40) as u8;
                    let mut pixel = [wiggle; 3];
                    pixel[c] = 200 + wiggle;
                    image::Rgb(pixel)
                });
                image.save(folder.join(format!("{i}.png"))).unwrap();
            }
        }
    }
}

/// 16×16 RGB images without labels, `count` in each of `dir/train` and `dir/test` (one folder each, no labels file):
/// a smooth colour gradient with a per-image offset.
fn unlabelled_rgb(dir: &Path, count: u32) {
    for (split, offset) in [("train", 0), ("test", 50)] {
        let folder = dir.join(split);
        std::fs::create_dir_all(&folder).unwrap();
        for i in 0..count {
            let image = image::RgbImage::from_fn(16, 16, |x, y| {
                let k = i + offset;
                image::Rgb([(x * 15) as u8, (y * 15) as u8, ((k * 37) % 256) as u8])
            });
            image.save(folder.join(format!("{i}.png"))).unwrap();
        }
    }
}

/// The tiny UNet for 3×16×16 images of three classes (plus the null class), or unconditional.
fn rgb_config(conditional: bool) -> String {
    tiny_unet_config(16, 3, 3, conditional.then_some(4))
}

/// Trains the classifier of `labelled_rgb(data, …)` into `out` (a few epochs: the tests need its feature space, not
/// its accuracy); the log.
fn train_rgb_classifier(data: &Path, out: &Path) -> String {
    success(diffuse(&[
        "classifier",
        "train",
        "--data",
        s(data),
        "--out",
        s(out),
        "--epochs",
        "6",
        "--batch-size",
        "6",
    ]))
}

/// Two steps of the model of `config` (a config.json's text) on `data`, into `run`, with no grid or checkpoint in
/// between.
fn train_tiny(config: &str, data: &Path, run: &Path) {
    let config_file = run.with_extension("json");
    std::fs::write(&config_file, config).unwrap();
    success(diffuse(&[
        "train",
        "--config",
        s(&config_file),
        "--data",
        s(data),
        "--out",
        s(run),
        "--steps",
        "2",
        "--batch-size",
        "4",
        "--sample-every",
        "0",
        "--checkpoint-every",
        "0",
        "--grid-steps",
        "1",
        "--grid-columns",
        "1",
        "--num-train-timesteps",
        "50",
    ]));
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn a_classifier_trained_on_a_labelled_folder_gives_eval_its_feature_space() {
    let dir = temp_dir("classifier");
    let data = dir.join("data");
    labelled_rgb(&data, 6);
    let classifier = dir.join("rgb-classifier");
    let log = train_rgb_classifier(&data, &classifier);
    assert!(
        log.contains("3 classes") && log.contains("test split: accuracy"),
        "{log}"
    );
    assert!(classifier.join("config.json").is_file());
    assert!(classifier.join("model.safetensors").is_file());
    assert!(
        !dir.join(".tmp-rgb-classifier").exists(),
        "no temporary left behind"
    );
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(classifier.join("config.json")).unwrap())
            .unwrap();
    assert_eq!(config["_class_name"], "DiffuseImageClassifier");
    assert_eq!(config["name"], "rgb-classifier");
    assert_eq!(
        (
            &config["in_channels"],
            &config["height"],
            &config["width"],
            &config["num_classes"]
        ),
        (&3.into(), &16.into(), &16.into(), &3.into())
    );
    let scored = diffuse(&[
        "classifier",
        "eval",
        "--classifier",
        s(&classifier),
        "--data",
        s(&data),
    ]);
    assert!(scored.status.success(), "{}", stderr(&scored));
    let line = String::from_utf8_lossy(&scored.stdout).into_owned();
    assert!(
        line.contains("rgb-classifier on the test split") && line.contains("on 18 images"),
        "{line}"
    );

    // A tiny class-conditional model of the same images, scored in the classifier's feature space.
    let run = dir.join("run");
    train_tiny(&rgb_config(true), &data, &run);
    let json = dir.join("eval.json");
    let eval = |classifier: Option<&Path>| {
        let mut args = vec![
            "eval",
            "--checkpoint",
            s(&run),
            "--data",
            s(&data),
            "--num",
            "6",
            "--batch",
            "6",
            "--steps",
            "1",
            "--json",
            s(&json),
        ];
        if let Some(c) = classifier {
            args.extend(["--classifier", s(c)]);
        }
        diffuse(&args)
    };
    success(eval(Some(&classifier)));
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let report = &v["report"];
    assert_eq!(report["extractor"], "rgb-classifier");
    assert_eq!(report["reference_samples"], 18);
    assert!(report["fd_fashion_classifier"].as_f64().unwrap() >= 0.0);
    for key in ["precision", "recall", "accuracy"] {
        assert!(
            (0.0..=1.0).contains(&report[key].as_f64().unwrap()),
            "{key}"
        );
    }
    assert_eq!(report["per_class_accuracy"].as_array().unwrap().len(), 3);

    // The shipped classifier reads 1×28×28 images only: the error says how to get a classifier for these.
    let err = failure(eval(None));
    assert!(
        err.contains("3×16×16") && err.contains("diffuse classifier train"),
        "{err}"
    );
}

#[test]
fn a_classifier_needs_labels() {
    let dir = temp_dir("classifier-unlabelled");
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    for i in 0..4u8 {
        image::RgbImage::from_pixel(8, 8, image::Rgb([i * 50, 0, 0]))
            .save(data.join(format!("{i}.png")))
            .unwrap();
    }
    let err = failure(diffuse(&[
        "classifier",
        "train",
        "--data",
        s(&data),
        "--out",
        s(&dir.join("c")),
    ]));
    assert!(
        err.contains("has no labels") && err.contains("--classifier"),
        "{err}"
    );
    assert!(!dir.join("c").exists(), "nothing written");
}

#[test]
fn eval_scores_an_unlabelled_folder_in_a_supplied_classifier_and_refuses_what_needs_labels() {
    let dir = temp_dir("classifier-eval-unlabelled");
    let labelled = dir.join("labelled");
    labelled_rgb(&labelled, 4);
    let classifier = dir.join("rgb-classifier");
    train_rgb_classifier(&labelled, &classifier);
    let plain = dir.join("plain");
    unlabelled_rgb(&plain, 8);
    let run = dir.join("unconditional");
    train_tiny(&rgb_config(false), &plain, &run);
    let json = dir.join("eval.json");
    let eval = |checkpoint: &Path, data: &Path, extra: &[&str]| {
        let mut args = vec![
            "eval",
            "--checkpoint",
            s(checkpoint),
            "--data",
            s(data),
            "--num",
            "6",
            "--batch",
            "6",
            "--steps",
            "1",
            "--json",
            s(&json),
        ];
        args.extend(extra);
        diffuse(&args)
    };

    // With the classifier the user brings: FD and precision/recall in its feature space; accuracy, which needs
    // samples of requested classes, is said not to be scored.
    let out = eval(&run, &plain, &["--classifier", s(&classifier)]);
    let log = stderr(&out);
    assert!(out.status.success(), "{log}");
    assert!(
        log.contains("reference: 8 test images")
            && log.contains("accuracy")
            && log.contains("is not"),
        "{log}"
    );
    let table = String::from_utf8_lossy(&out.stdout).into_owned();
    for row in ["FD (rgb-classifier)", "precision", "recall"] {
        assert!(table.contains(row), "{row}: {table}");
    }
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let report = &v["report"];
    assert_eq!(report["extractor"], "rgb-classifier");
    assert_eq!(
        (
            report["samples"].as_u64(),
            report["reference_samples"].as_u64()
        ),
        (Some(6), Some(8))
    );
    let fd = report["fd_fashion_classifier"].as_f64().unwrap();
    assert!(fd.is_finite() && fd >= 0.0, "{fd}");
    for key in ["precision", "recall"] {
        let value = report[key].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&value), "{key} {value}");
    }
    assert!(report["accuracy"].is_null() && report["per_class_accuracy"].is_null());

    // Neither labels to train a classifier on nor an extractor that reads 3×16×16 images: the error says both ways
    // out, and that unlabelled data needs a classifier from elsewhere.
    let err = stderr(&eval(&run, &plain, &[]));
    assert!(
        err.contains("3×16×16")
            && err.contains("diffuse classifier train")
            && err.contains("unlabelled data"),
        "{err}"
    );

    // A folder without held-out images: eval says where to put them.
    let flat = plain.join("train");
    let err = stderr(&eval(&run, &flat, &["--classifier", s(&classifier)]));
    assert!(
        err.contains("put them in") && err.contains(&flat.join("test").display().to_string()),
        "{err}"
    );

    // A measure that needs the reference images' labels: the bound of a class-conditional model on unlabelled test
    // images is refused before anything is sampled.
    let conditional = dir.join("conditional");
    train_tiny(&rgb_config(true), &labelled, &conditional);
    let err = failure(eval(
        &conditional,
        &plain,
        &["--classifier", s(&classifier), "--bpd", "2"],
    ));
    assert!(
        err.contains("needs the test images' labels") && err.contains("--bpd 0"),
        "{err}"
    );
}
