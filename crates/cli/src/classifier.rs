//! `diffuse classifier train|eval`: the feature extractor of the metrics for a dataset other than Fashion-MNIST.
//!
//! `train` fits a small CNN ([`diffuse_diffusion::eval::ImageClassifier`]) to the labels of any dataset `--data`
//! reads, at its size and channels (or `--resolution` / `--channels`), with the recipe of the shipped classifier
//! ([`diffuse_diffusion::eval::classifier_training`]), and writes it as a folder (`config.json` +
//! `model.safetensors`, atomically). `diffuse eval --classifier DIR` then computes FD and precision/recall in its
//! feature space, and class accuracy when the model's classes are the classifier's. `eval` measures a classifier's
//! accuracy on a split.

use crate::datasets::{DataSource, SHIPPED_DATA};
use crate::scoring::{load_classifier, load_split, DEFAULT_CLASSIFIER};
use clap::{Args, Subcommand};
use diffuse_diffusion::data::{Dataset, FolderOptions, Split};
use diffuse_diffusion::eval::{classifier_accuracy, train_classifier, ClassifierTraining};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::PathBuf;

#[derive(Subcommand, Debug)]
pub enum ClassifierCommand {
    /// Train a classifier on the labelled images of a dataset and save it as a folder for `diffuse eval
    /// --classifier`.
    Train(ClassifierTrainArgs),
    /// Measure a classifier's accuracy on a split of a labelled dataset.
    Eval(ClassifierEvalArgs),
}

#[derive(Args, Debug)]
pub struct ClassifierTrainArgs {
    /// Labelled dataset: a folder of images with one sub-folder per class (or a labels file), a folder of IDX
    /// files, or `fashion-mnist` (the shipped subset).
    #[arg(long, default_value = SHIPPED_DATA)]
    data: String,
    /// Resize each image of an image folder so that its short side is N, then keep the centred N×N square.
    /// [default: images must share one size]
    #[arg(long, value_name = "N")]
    resolution: Option<usize>,
    /// Classify 1 (grey) or 3 (RGB) channels, converting the images.  [default: 1 if every image is grey, else 3]
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=3))]
    channels: Option<u8>,
    /// Output folder (config.json and model.safetensors, replaced whole).
    #[arg(long, default_value = "runs/classifier")]
    out: PathBuf,
    /// Passes over the training images.
    #[arg(long, default_value_t = 5)]
    epochs: usize,
    /// Images per step.
    #[arg(long, default_value_t = 128)]
    batch_size: usize,
    /// Peak learning rate (linear warm-up over 100 steps, cosine decay to 0).
    #[arg(long, default_value_t = 2e-3)]
    lr: f32,
    /// Seeds the initial weights, the data order and the flips.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Mirror training images left-to-right at random (for classes that look the same mirrored).
    #[arg(long)]
    hflip: bool,
}

#[derive(Args, Debug)]
pub struct ClassifierEvalArgs {
    /// The classifier: a folder written by `diffuse classifier train`, or a Fashion-MNIST weights file (the default
    /// path is the shipped classifier, compiled in).
    #[arg(long, default_value = DEFAULT_CLASSIFIER)]
    classifier: PathBuf,
    /// The labelled dataset (its images are resized and converted to what the classifier reads).
    #[arg(long, default_value = SHIPPED_DATA)]
    data: String,
    /// The split to score.
    #[arg(long, default_value = "test", value_parser = ["test", "train"])]
    split: String,
}

pub fn run(command: &ClassifierCommand) -> Result<(), String> {
    match command {
        ClassifierCommand::Train(args) => train(args),
        ClassifierCommand::Eval(args) => eval(args),
    }
}

/// The one-line accuracy summary of `classifier` on `data`.
fn accuracy_line(
    classifier: &diffuse_diffusion::eval::ImageClassifier,
    data: &Dataset,
) -> Result<String, String> {
    let accuracy = classifier_accuracy(classifier, data).map_err(|e| e.to_string())?;
    let per_class: Vec<String> = accuracy
        .per_class
        .iter()
        .enumerate()
        .filter_map(|(c, a)| a.map(|a| format!("{c}: {:.1}%", 100.0 * a)))
        .collect();
    Ok(format!(
        "accuracy {:.2}% on {} images (per class {})",
        100.0 * accuracy.overall,
        data.len(),
        per_class.join(", ")
    ))
}

fn train(args: &ClassifierTrainArgs) -> Result<(), String> {
    crate::launch::refuse_several_ranks(
        "classifier train",
        "the classifier's training loop has no batch sharding or gradient all-reduce (it trains in minutes on one \
         process); only `diffuse train`, `diffuse vae train` and `diffuse clip train` are data parallel",
    )?;
    let source = DataSource::named(&args.data)?;
    let options = FolderOptions {
        resolution: args.resolution,
        channels: args.channels.map(usize::from),
    };
    let data = source.load(Split::Train, &options)?;
    eprintln!("{}", data.summary);
    if data.labels.is_none() {
        return Err(format!(
            "{source} has no labels: a classifier learns classes from labelled images (one sub-folder per class, or \
             a labels file). Train it on a labelled dataset of the same size and channels, or pass diffuse eval a \
             classifier you have with --classifier"
        ));
    }
    let name = args
        .out
        .file_name()
        .map_or("classifier".into(), |n| n.to_string_lossy().into_owned());
    let training = ClassifierTraining {
        epochs: args.epochs,
        batch_size: args.batch_size,
        lr: args.lr,
        seed: args.seed,
        hflip: args.hflip,
    };
    eprintln!(
        "training a classifier of {} classes on {} images of {}×{}×{} for {} epochs",
        data.num_classes,
        data.len(),
        data.channels,
        data.height,
        data.width,
        args.epochs
    );
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} {msg} ETA {eta}")
            .map_err(|e| e.to_string())?,
    );
    let classifier = train_classifier(&data, &name, &training, |step| {
        bar.set_length(step.total as u64);
        bar.set_position(step.step as u64);
        bar.set_message(format!("loss {:.4}", step.loss));
    })
    .map_err(|e| e.to_string())?;
    bar.finish_and_clear();
    classifier
        .save_folder(&args.out)
        .map_err(|e| e.to_string())?;
    match source.load(Split::Test, &options) {
        Ok(test) if test.labels.is_some() => {
            eprintln!("test split: {}", accuracy_line(&classifier, &test)?)
        }
        _ => eprintln!(
            "no labelled test split: training {}",
            accuracy_line(&classifier, &data)?
        ),
    }
    println!(
        "classifier in {}\nnext: diffuse eval --checkpoint RUN --data {} --classifier {}",
        args.out.display(),
        args.data,
        args.out.display()
    );
    Ok(())
}

fn eval(args: &ClassifierEvalArgs) -> Result<(), String> {
    let classifier = load_classifier(&args.classifier)?;
    let source = DataSource::named(&args.data)?;
    let split = if args.split == "train" {
        Split::Train
    } else {
        Split::Test
    };
    let data = load_split(&source, split, &classifier)?;
    println!(
        "{} on the {} split of {source}: {}",
        classifier.config().name,
        args.split,
        accuracy_line(&classifier, &data)?
    );
    Ok(())
}
