//! Training an [`ImageClassifier`] on a labelled dataset, so that datasets other than Fashion-MNIST get a feature
//! space for their metrics, and its accuracy.
//!
//! ```text
//! for epoch e, batch i (the shuffled batches of Dataset::epoch(batch, seed, e), the last partial one dropped):
//!     s        = e · batches_per_epoch + i
//!     lr(s)    = lr · min(1, (s + 1)/100) · ½(1 + cos(π s / total))      linear warm-up, cosine decay to 0
//!     x, y     = the batch, each image mirrored with probability ½ when hflip (coins from seed ^ s·0x9E37…)
//!     AdamW (β = 0.9, 0.999, weight decay 0.01) step on cross_entropy(classifier(x), y)
//! ```
//!
//! This is the recipe the shipped classifier was trained with (the `fashion_classifier` example runs it with
//! hflip on). Everything is drawn from `seed`, so a run is reproducible.

use super::accuracy::{class_accuracy, ClassAccuracy};
use super::classifier::{cross_entropy, ClassifierConfig, ImageClassifier};
use super::features::extract_features;
use crate::data::Dataset;
use crate::error::Result;
use diffuse_autograd::Var;
use diffuse_nn::AdamW;
use diffuse_tensor::{Device, Error as TensorError, Tensor};

/// Steps of the linear learning-rate warm-up.
const WARMUP_STEPS: f64 = 100.0;
/// Images per forward pass when scoring.
const SCORE_BATCH: usize = 500;

/// How to train.
#[derive(Clone, Debug, PartialEq)]
pub struct ClassifierTraining {
    pub epochs: usize,
    /// Images per step (the dataset's size when it has fewer).
    pub batch_size: usize,
    /// Peak learning rate.
    pub lr: f32,
    /// Seeds the initial weights, the data order and the flips.
    pub seed: u64,
    /// Mirror training images left-to-right at random (for classes that are symmetric, as clothes are).
    pub hflip: bool,
}

/// What one optimiser step reports to the caller's progress display.
#[derive(Clone, Copy, Debug)]
pub struct ClassifierStep {
    pub step: usize,
    pub total: usize,
    pub loss: f64,
}

/// Trains a classifier named `name` on the CPU for the images and labels of `data` (C×H×W images,
/// `data.num_classes` classes), calling `on_step` after every step.
pub fn train_classifier(
    data: &Dataset,
    name: &str,
    options: &ClassifierTraining,
    mut on_step: impl FnMut(ClassifierStep),
) -> Result<ImageClassifier> {
    let invalid = |message: String| TensorError::argument("train_classifier", message);
    if data.labels.is_none() {
        return Err(invalid(format!(
            "the dataset ({}) has no labels: a classifier learns from labelled images (class sub-folders or a \
             labels file)",
            data.summary
        ))
        .into());
    }
    if data.is_empty() || options.batch_size == 0 || options.epochs == 0 {
        return Err(invalid(format!(
            "{} images, batch size {}, {} epochs: each must be at least 1",
            data.len(),
            options.batch_size,
            options.epochs
        ))
        .into());
    }
    let config = ClassifierConfig {
        name: name.into(),
        in_channels: data.channels,
        height: data.height,
        width: data.width,
        num_classes: data.num_classes,
    };
    let model = ImageClassifier::new(config, options.seed, Device::Cpu)?;
    let params = model.store.params().into_iter().map(|(_, v)| v);
    let mut opt = AdamW::new(params, AdamW::default_config(options.lr))?;
    let batch = options.batch_size.min(data.len());
    let steps_per_epoch = data.len() / batch;
    let total = steps_per_epoch * options.epochs;
    for epoch in 0..options.epochs {
        for (i, indices) in data
            .epoch(batch, options.seed, epoch as u64, true)?
            .enumerate()
        {
            let step = epoch * steps_per_epoch + i;
            let s = step as f64;
            let warmup = ((s + 1.0) / WARMUP_STEPS).min(1.0);
            let cosine = 0.5 * (1.0 + (std::f64::consts::PI * s / total as f64).cos());
            opt.config.lr = options.lr * (warmup * cosine) as f32;
            let flip_seed = options.seed ^ (step as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            let (images, labels) = data.batch(&indices, options.hflip.then_some(flip_seed))?;
            let shape = [indices.len(), data.channels, data.height, data.width];
            let x = Var::constant(Tensor::from_vec(images, &shape, Device::Cpu)?);
            let loss = cross_entropy(&model.forward(&x)?.logits, &labels)?;
            let value = f64::from(loss.tensor().to_scalar()?);
            opt.step(&loss.backward()?)?;
            on_step(ClassifierStep {
                step: step + 1,
                total,
                loss: value,
            });
        }
    }
    Ok(model)
}

/// Overall and per-class accuracy of `classifier` on the labelled `data`.
pub fn classifier_accuracy(classifier: &ImageClassifier, data: &Dataset) -> Result<ClassAccuracy> {
    let labels = data.labels.as_ref().ok_or_else(|| {
        TensorError::argument(
            "classifier_accuracy",
            format!(
                "the dataset ({}) has no labels to score against",
                data.summary
            ),
        )
    })?;
    let shape = [data.len(), data.channels, data.height, data.width];
    let images = Tensor::from_slice(&data.images, &shape, Device::Cpu)?;
    let predicted = extract_features(classifier, &images, SCORE_BATCH)?.predicted();
    class_accuracy(&predicted, labels, classifier.config().num_classes)
}
