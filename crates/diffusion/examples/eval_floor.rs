//! The floor of the evaluation metrics: real held-out images scored as if they were samples. Prints the
//! `EvalReport` (JSON) of the training images (with their labels as the "requested" classes) against the test set,
//! or with `--halves` of the first half of the test set against the second (images the classifier never saw on both
//! sides).
//!
//! ```text
//! cargo run --release -p diffuse-diffusion --example eval_floor -- [--weights FILE] [--data DIR] [--count N] [--halves]
//! ```
//!
//! Defaults: the shipped classifier `data/classifier/fashion-classifier.safetensors`, the first N = 10,000 training
//! images of `data/fashion-mnist` against its 10,000 test images.

use diffuse_diffusion::data::{Dataset, Split};
use diffuse_diffusion::eval::{
    evaluate_samples, ClassifierConfig, ImageClassifier, ReferenceFeatures,
};
use diffuse_tensor::{Device, Tensor};
use std::path::PathBuf;
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut weights = root.join("data/classifier/fashion-classifier.safetensors");
    let mut data = root.join("data/fashion-mnist");
    let mut count = 10_000;
    let mut halves = false;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "--halves" {
            halves = true;
            continue;
        }
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--weights" => weights = PathBuf::from(value),
            "--data" => data = PathBuf::from(value),
            "--count" => count = value.parse()?,
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    let start = Instant::now();
    let classifier =
        ImageClassifier::load(&weights, ClassifierConfig::fashion_mnist(), Device::Cpu)?;
    let train = Dataset::load(&data, Split::Train)?;
    let test = Dataset::load(&data, Split::Test)?;
    let image_len = train.image_len();
    let as_tensor = |data: &Dataset, range: std::ops::Range<usize>| {
        let pixels = &data.images[range.start * image_len..range.end * image_len];
        Tensor::from_slice(pixels, &[range.len(), 1, 28, 28], Device::Cpu)
    };
    let (samples_from, samples, labels, reference_images) = if halves {
        let half = test.len() / 2;
        let labels = test.labels.as_ref().map(|l| &l[..half]);
        (
            "the first half of the test set",
            as_tensor(&test, 0..half)?,
            labels,
            as_tensor(&test, half..test.len())?,
        )
    } else {
        let count = count.min(train.len());
        let labels = train.labels.as_ref().map(|l| &l[..count]);
        (
            "the training set",
            as_tensor(&train, 0..count)?,
            labels,
            as_tensor(&test, 0..test.len())?,
        )
    };
    let reference = ReferenceFeatures::from_images(&classifier, &reference_images)?;
    let report = evaluate_samples(&classifier, &samples, labels, &reference)?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    eprintln!(
        "{} images of {samples_from} against {} test images ({}), {:.1} s",
        report.samples,
        report.reference_samples,
        data.display(),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
