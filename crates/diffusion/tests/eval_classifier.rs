//! The shipped evaluation classifier and `evaluate_samples` on real Fashion-MNIST images.

use diffuse_diffusion::data::{Dataset, Split};
use diffuse_diffusion::eval::{
    classifier_accuracy, evaluate_samples, train_classifier, ClassifierConfig, ClassifierTraining,
    EvalReport, ImageClassifier, ReferenceFeatures,
};
use diffuse_tensor::{Device, Tensor};
use std::path::PathBuf;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn classifier() -> ImageClassifier {
    ImageClassifier::load(
        root().join("data/classifier/fashion-classifier.safetensors"),
        ClassifierConfig::fashion_mnist(),
        Device::Cpu,
    )
    .unwrap()
}

/// The first `count` images of a split of the shipped data, as (count, 1, 28, 28), with their labels.
fn images(split: Split, count: usize) -> (Tensor, Vec<u32>) {
    let data = Dataset::load(&root().join("data/fashion-mnist"), split).unwrap();
    let pixels = &data.images[..count * data.image_len()];
    let labels = data.labels.unwrap()[..count].to_vec();
    (
        Tensor::from_slice(pixels, &[count, 1, 28, 28], Device::Cpu).unwrap(),
        labels,
    )
}

#[test]
fn shipped_classifier_labels_1000_test_images_at_least_88_percent_right() {
    // Its accuracy on all 10,000 test images is in data/classifier/README.md (above 91%); on 1000 of them the
    // binomial standard deviation is under 1%, so 88% leaves three of them.
    let (x, labels) = images(Split::Test, 1000);
    let report = evaluate_samples(&classifier(), &x, Some(&labels), &reference(500)).unwrap();
    let accuracy = report.accuracy.unwrap();
    assert!(accuracy >= 0.88, "accuracy {accuracy}");
    assert_eq!(report.per_class_accuracy.unwrap().len(), 10);
}

fn reference(count: usize) -> ReferenceFeatures {
    ReferenceFeatures::from_images(&classifier(), &images(Split::Test, count).0).unwrap()
}

#[test]
fn a_set_scored_against_itself_has_zero_distance_and_full_precision_and_recall() {
    let (x, _) = images(Split::Test, 300);
    let reference = ReferenceFeatures::from_images(&classifier(), &x).unwrap();
    let report = evaluate_samples(&classifier(), &x, None, &reference).unwrap();
    assert!(report.fd_fashion_classifier < 1e-6, "{report:?}");
    assert_eq!((report.precision, report.recall), (1.0, 1.0));
    assert!(report.accuracy.is_none() && report.bpd.is_none());
    // 10 classes, each confidently predicted and about equally frequent: the score approaches 10.
    assert!(
        report.inception_score > 5.0 && report.inception_score <= 10.0,
        "{report:?}"
    );
}

#[test]
fn held_out_real_images_score_close_and_the_report_round_trips_through_json() {
    let (x, labels) = images(Split::Train, 400);
    let report = evaluate_samples(&classifier(), &x, Some(&labels), &reference(400)).unwrap();
    assert!(report.fd_fashion_classifier > 0.0, "{report:?}");
    assert!(report.precision > 0.5 && report.recall > 0.5, "{report:?}");
    let json = serde_json::to_string(&report).unwrap();
    assert!(json.contains("\"fd_fashion_classifier\":"), "{json}");
    let back: EvalReport = serde_json::from_str(&json).unwrap();
    // serde_json's default float parsing may be one ulp off the printed shortest representation.
    let numbers = |r: &EvalReport| -> Vec<f64> {
        let mut v = vec![
            r.fd_fashion_classifier,
            r.inception_score,
            r.precision,
            r.recall,
            r.accuracy.unwrap(),
        ];
        v.extend(r.per_class_accuracy.iter().flatten().map(|a| a.unwrap()));
        v
    };
    assert_eq!(
        (back.samples, back.reference_samples, &back.extractor),
        (report.samples, report.reference_samples, &report.extractor)
    );
    for (a, b) in numbers(&back).into_iter().zip(numbers(&report)) {
        assert!((a - b).abs() <= 1e-15 * b.abs(), "{a} vs {b}");
    }
}

/// `count` 3×6×5 images of three classes: class c is bright in colour channel c, dark elsewhere, with
/// deterministic noise of amplitude 0.3 on top.
fn coloured(count: usize, labels: bool) -> Dataset {
    let (c, h, w) = (3, 6, 5);
    let mut state = 0x9e37_79b9_u32;
    let mut noise = || {
        state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        (state >> 8) as f32 / (1 << 24) as f32 * 0.6 - 0.3
    };
    let mut images = Vec::new();
    for i in 0..count {
        for channel in 0..c {
            let base = if channel == i % 3 { 0.6 } else { -0.6 };
            images.extend((0..h * w).map(|_| base + noise()));
        }
    }
    Dataset {
        images,
        labels: labels.then(|| (0..count as u32).map(|i| i % 3).collect()),
        num_classes: if labels { 3 } else { 0 },
        channels: c,
        height: h,
        width: w,
        summary: "synthetic".into(),
    }
}

#[test]
fn a_classifier_trained_on_a_small_colour_dataset_separates_its_classes() {
    let train = coloured(60, true);
    // 90 steps at a peak rate of 1e-2: most of them still inside the 100-step warm-up.
    let options = ClassifierTraining {
        epochs: 30,
        batch_size: 20,
        lr: 1e-2,
        seed: 1,
        hflip: true,
    };
    let mut steps = Vec::new();
    let model = train_classifier(&train, "coloured", &options, |s| steps.push(s)).unwrap();
    assert_eq!(steps.len(), 90, "3 batches of 20 per epoch, 30 epochs");
    assert!(steps.iter().all(|s| s.total == 90 && s.loss.is_finite()));
    assert_eq!(
        model.config(),
        &ClassifierConfig {
            name: "coloured".into(),
            in_channels: 3,
            height: 6,
            width: 5,
            num_classes: 3,
        }
    );
    // The classes differ by 1.2 in mean value per channel against noise of ±0.3: a trained classifier gets nearly
    // every held-out image right (chance is 1/3).
    let accuracy = classifier_accuracy(&model, &coloured(30, true)).unwrap();
    assert!(accuracy.overall >= 0.9, "{accuracy:?}");
    // The same seed trains the same weights.
    let again = train_classifier(&train, "coloured", &options, |_| {}).unwrap();
    let weights = |m: &ImageClassifier| -> Vec<Vec<f32>> {
        m.store
            .params()
            .iter()
            .map(|(_, v)| v.tensor().to_vec().unwrap())
            .collect()
    };
    assert!(weights(&model) == weights(&again));
}

#[test]
fn training_a_classifier_on_unlabelled_images_is_refused_by_name() {
    let options = ClassifierTraining {
        epochs: 1,
        batch_size: 4,
        lr: 1e-3,
        seed: 0,
        hflip: false,
    };
    let message = train_classifier(&coloured(8, false), "x", &options, |_| {})
        .err()
        .unwrap()
        .to_string();
    assert!(message.contains("no labels"), "{message}");
}
