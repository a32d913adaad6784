//! Trains the shipped evaluation classifier (`diffuse_diffusion::eval::ImageClassifier`, Fashion-MNIST's 1×28×28
//! images of 10 classes) with `diffuse_diffusion::eval::train_classifier` and saves its weights file. (`diffuse
//! classifier train` trains one for any labelled dataset and saves it as a folder.)
//!
//! ```text
//! cargo run --release -p diffuse-diffusion --example fashion_classifier -- [--full] [--epochs N (5)] [--out FILE]
//! ```
//!
//! - training data: the 10,000-image subset shipped in `data/fashion-mnist`, or with `--full` the 60,000 images of
//!   the Debian package `dataset-fashion-mnist` (`/usr/share/datasets/fashion-mnist`); `--data DIR` names another
//!   folder. The test set is always the 10,000 images of `data/fashion-mnist`.
//! - optimisation: AdamW (β = 0.9, 0.999, weight decay 0.01), batch 128, learning rate `--lr` (default 2e-3) with a
//!   linear warm-up over the first 100 steps and cosine decay to 0, random horizontal flips.
//! - output: the test accuracy at the end, and the weights in `--out` (default
//!   `data/classifier/fashion-classifier.safetensors`).

use diffuse_diffusion::data::{Dataset, Split};
use diffuse_diffusion::eval::classifier::NAME;
use diffuse_diffusion::eval::{classifier_accuracy, train_classifier, ClassifierTraining};
use std::path::PathBuf;
use std::time::Instant;

const FULL_DATA: &str = "/usr/share/datasets/fashion-mnist";
const BATCH: usize = 128;

struct Args {
    data: PathBuf,
    epochs: usize,
    lr: f32,
    seed: u64,
    out: PathBuf,
}

fn parse_args() -> Result<Args, String> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut args = Args {
        data: root.join("data/fashion-mnist"),
        epochs: 5,
        lr: 2e-3,
        seed: 0,
        out: root.join("data/classifier/fashion-classifier.safetensors"),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--full" => args.data = PathBuf::from(FULL_DATA),
            "--data" => args.data = PathBuf::from(value()?),
            "--epochs" => args.epochs = value()?.parse().map_err(|e| format!("--epochs: {e}"))?,
            "--lr" => args.lr = value()?.parse().map_err(|e| format!("--lr: {e}"))?,
            "--seed" => args.seed = value()?.parse().map_err(|e| format!("--seed: {e}"))?,
            "--out" => args.out = PathBuf::from(value()?),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(args)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args()?;
    let train = Dataset::load(&args.data, Split::Train)?;
    let test_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data/fashion-mnist");
    let test = Dataset::load(&test_dir, Split::Test)?;
    println!(
        "training on {} images from {} for {} epochs; testing on {} images",
        train.len(),
        args.data.display(),
        args.epochs,
        test.len()
    );
    let options = ClassifierTraining {
        epochs: args.epochs,
        batch_size: BATCH,
        lr: args.lr,
        seed: args.seed,
        hflip: true,
    };
    let start = Instant::now();
    let mut loss_sum = 0.0;
    let model = train_classifier(&train, NAME, &options, |s| {
        loss_sum += s.loss;
        if s.step % 50 == 0 || s.step == s.total {
            println!(
                "  step {:5}/{}  mean loss {:.4}  {:.0} s",
                s.step,
                s.total,
                loss_sum / s.step as f64,
                start.elapsed().as_secs_f64()
            );
        }
    })?;
    println!(
        "test accuracy {:.2}%, {:.0} s",
        100.0 * classifier_accuracy(&model, &test)?.overall,
        start.elapsed().as_secs_f64()
    );
    if let Some(dir) = args.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    model.store.save(&args.out)?;
    println!("saved {}", args.out.display());
    Ok(())
}
