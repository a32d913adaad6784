//! `diffuse classifier train|eval` and `diffuse eval --classifier DIR` on a tiny labelled RGB folder: the classifier
//! folder is written whole, scores its own test split, gives `diffuse eval` a feature space for 3×16×16 images, and
//! unlabelled data or a classifier that cannot read the images is refused with the command that fixes it.

use std::path::Path;

mod common;
use common::{diffuse, temp_dir};

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

/// Two levels of 8 and 16 channels for 3×16×16 images of three classes plus the null class.
const RGB_CONFIG: &str = r#"{
  "_class_name": "UNet2DModel",
  "sample_size": 16, "in_channels": 3, "out_channels": 3,
  "block_out_channels": [8, 16], "layers_per_block": 1,
  "down_block_types": ["DownBlock2D", "DownBlock2D"],
  "up_block_types": ["UpBlock2D", "UpBlock2D"],
  "norm_num_groups": 4, "num_class_embeds": 4
}"#;

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
    let train = diffuse(&[
        "classifier",
        "train",
        "--data",
        s(&data),
        "--out",
        s(&classifier),
        "--epochs",
        "6",
        "--batch-size",
        "6",
    ]);
    let log = stderr(&train);
    assert!(train.status.success(), "{log}");
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
    let config = dir.join("rgb.json");
    std::fs::write(&config, RGB_CONFIG).unwrap();
    let run = dir.join("run");
    let trained = diffuse(&[
        "train",
        "--config",
        s(&config),
        "--data",
        s(&data),
        "--out",
        s(&run),
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
    ]);
    assert!(trained.status.success(), "{}", stderr(&trained));
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
    let out = eval(Some(&classifier));
    assert!(out.status.success(), "{}", stderr(&out));
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
    let out = eval(None);
    assert!(!out.status.success());
    let err = stderr(&out);
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
    let out = diffuse(&[
        "classifier",
        "train",
        "--data",
        s(&data),
        "--out",
        s(&dir.join("c")),
    ]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("has no labels") && err.contains("--classifier"),
        "{err}"
    );
    assert!(!dir.join("c").exists(), "nothing written");
}
