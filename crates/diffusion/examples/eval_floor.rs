//! The floor of the evaluation metrics: real held-out images scored as if they were samples. Prints the
//! `EvalReport` (JSON) of the training images (with their labels as the "requested" classes) against the test set.
//!
//! ```text
//! cargo run --release -p diffuse-diffusion --example eval_floor -- [--weights FILE] [--data DIR] [--count N]
//! ```
//!
//! Defaults: the shipped classifier `data/classifier/fashion-classifier.safetensors`, the first N = 10,000 training
//! images of `data/fashion-mnist` against its 10,000 test images.

use diffuse_diffusion::data::{Dataset, Split};
use diffuse_diffusion::eval::{evaluate_samples, FashionClassifier, ReferenceFeatures};
use diffuse_tensor::{Device, Tensor};
use std::path::PathBuf;
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut weights = root.join("data/classifier/fashion-classifier.safetensors");
    let mut data = root.join("data/fashion-mnist");
    let mut count = 10_000;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--weights" => weights = PathBuf::from(value),
            "--data" => data = PathBuf::from(value),
            "--count" => count = value.parse()?,
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    let start = Instant::now();
    let classifier = FashionClassifier::load(&weights, Device::Cpu)?;
    let train = Dataset::load(&data, Split::Train)?;
    let test = Dataset::load(&data, Split::Test)?;
    let count = count.min(train.len());
    let image_len = train.image_len();
    let samples = Tensor::from_slice(
        &train.images[..count * image_len],
        &[count, 1, 28, 28],
        Device::Cpu,
    )?;
    let labels = train.labels.as_ref().map(|l| &l[..count]);
    let reference_images = Tensor::from_slice(&test.images, &[test.len(), 1, 28, 28], Device::Cpu)?;
    let reference = ReferenceFeatures::from_images(&classifier, &reference_images)?;
    let report = evaluate_samples(&classifier, &samples, labels, &reference)?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    eprintln!(
        "{count} training images of {} against {} test images, {:.1} s",
        data.display(),
        test.len(),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
