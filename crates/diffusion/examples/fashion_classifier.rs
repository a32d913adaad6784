//! Trains the evaluation classifier (`diffuse_diffusion::eval::FashionClassifier`) on Fashion-MNIST and saves it.
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
//! - output: the test accuracy after every epoch, and the weights in `--out` (default
//!   `data/classifier/fashion-classifier.safetensors`).

use diffuse_autograd::Var;
use diffuse_diffusion::data::{Dataset, Split};
use diffuse_diffusion::eval::{cross_entropy, extract_features, FashionClassifier};
use diffuse_nn::AdamW;
use diffuse_tensor::{Device, Tensor};
use std::path::PathBuf;
use std::time::Instant;

const FULL_DATA: &str = "/usr/share/datasets/fashion-mnist";
const BATCH: usize = 128;
const WARMUP_STEPS: f64 = 100.0;

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

/// Fraction of `test` the classifier labels correctly.
fn accuracy(model: &FashionClassifier, test: &Dataset) -> Result<f64, Box<dyn std::error::Error>> {
    let images = Tensor::from_slice(&test.images, &[test.len(), 1, 28, 28], Device::Cpu)?;
    let predicted = extract_features(model, &images, 500)?.predicted();
    let labels = test.labels.as_ref().ok_or("the test set has no labels")?;
    let correct = predicted.iter().zip(labels).filter(|(p, y)| p == y).count();
    Ok(correct as f64 / labels.len() as f64)
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

    let model = FashionClassifier::new(args.seed, Device::Cpu)?;
    let params = model.store.params().into_iter().map(|(_, v)| v);
    let mut opt = AdamW::new(params, AdamW::default_config(args.lr))?;
    let steps_per_epoch = train.len() / BATCH;
    let total_steps = (steps_per_epoch * args.epochs) as f64;
    let start = Instant::now();
    for epoch in 0..args.epochs {
        let mut loss_sum = 0.0;
        for (i, indices) in train
            .epoch(BATCH, args.seed, epoch as u64, true)?
            .enumerate()
        {
            let step = (epoch * steps_per_epoch + i) as f64;
            let warmup = ((step + 1.0) / WARMUP_STEPS).min(1.0);
            let cosine = 0.5 * (1.0 + (std::f64::consts::PI * step / total_steps).cos());
            opt.config.lr = args.lr * (warmup * cosine) as f32;

            let flip_seed = args.seed ^ (step as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            let (images, labels) = train.batch(&indices, Some(flip_seed))?;
            let x = Var::constant(Tensor::from_vec(images, &[BATCH, 1, 28, 28], Device::Cpu)?);
            let loss = cross_entropy(&model.forward(&x)?.logits, &labels)?;
            loss_sum += f64::from(loss.tensor().to_scalar()?);
            opt.step(&loss.backward()?)?;
            if (i + 1) % 50 == 0 {
                println!(
                    "  epoch {} step {:4}/{steps_per_epoch}  loss {:.4}  {:.0} s",
                    epoch + 1,
                    i + 1,
                    loss_sum / (i + 1) as f64,
                    start.elapsed().as_secs_f64()
                );
            }
        }
        println!(
            "epoch {}: mean loss {:.4}, test accuracy {:.2}%, {:.0} s",
            epoch + 1,
            loss_sum / steps_per_epoch as f64,
            100.0 * accuracy(&model, &test)?,
            start.elapsed().as_secs_f64()
        );
    }
    if let Some(dir) = args.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    model.store.save(&args.out)?;
    println!("saved {}", args.out.display());
    Ok(())
}
