//! The shipped evaluation classifier and `evaluate_samples` on real Fashion-MNIST images.

use diffuse_diffusion::data::{Dataset, Split};
use diffuse_diffusion::eval::{evaluate_samples, EvalReport, FashionClassifier, ReferenceFeatures};
use diffuse_tensor::{Device, Tensor};
use std::path::PathBuf;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn classifier() -> FashionClassifier {
    FashionClassifier::load(
        root().join("data/classifier/fashion-classifier.safetensors"),
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
