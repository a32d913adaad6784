//! The evaluation that `diffuse eval` and `diffuse train --eval-every` share, so both report the same numbers for the
//! same weights and settings:
//!
//! ```text
//! reference  = ReferenceFeatures(classifier, test split)          once per command
//! classes    = 0, 1, …, K−1, 0, 1, …  (class-conditional models)
//! samples    = `num` samples, `batch` at a time; batch b starts from the noise of seed b of SplitMix64(seed)
//!              (a latent model's samples decoded into images)
//! report     = evaluate_samples(classifier, samples, classes if K = 10, reference)
//! ```
//!
//! The classifier is the shipped Fashion-MNIST one, its weights file, or a folder `diffuse classifier train` wrote
//! for another dataset; it must read the images being scored. Accuracy is scored only when the model's classes are
//! the classifier's.

use crate::cascade::Upscaler;
use crate::consistency::ConsistencyRequest;
use crate::datasets::{shipped_classifier, DataSource, SHIPPED_CLASSIFIER};
use crate::latent::LatentDecoder;
use crate::sampling::{draw, GridRequest};
use crate::score::{AnySampler, ScoreRequest, ScoreView};
use diffuse_diffusion::data::{Dataset, FolderOptions, Split};
use diffuse_diffusion::eval::{
    evaluate_samples, ClassifierConfig, EvalReport, ImageClassifier, ReferenceFeatures,
};
use diffuse_diffusion::rng::SplitMix64;
use diffuse_models::Backbone;
use diffuse_tensor::{Device, Tensor};
use indicatif::ProgressBar;
use std::path::Path;

/// Where the classifier weights are unless `--classifier` says otherwise (compiled into the binary as well).
pub const DEFAULT_CLASSIFIER: &str = SHIPPED_CLASSIFIER;

/// Samples per model batch unless `--batch` says otherwise.
pub const SAMPLE_BATCH: usize = 250;

/// The command that trains a classifier for another dataset.
const TRAIN_CLASSIFIER: &str = "diffuse classifier train --data DIR --out CLASSIFIER";

/// The classifier `--classifier` names, on the CPU.
pub fn load_classifier(path: &Path) -> Result<ImageClassifier, String> {
    load_classifier_on(path, Device::Cpu)
}

/// The classifier `--classifier path` names on `device`: a folder of `diffuse classifier train`, a Fashion-MNIST
/// weights file, or the shipped one (compiled in) for the default path.
pub fn load_classifier_on(path: &Path, device: Device) -> Result<ImageClassifier, String> {
    if let Some(shipped) = shipped_classifier(path, device) {
        return shipped;
    }
    if path.is_dir() {
        return ImageClassifier::open_folder(path, device).map_err(|e| e.to_string());
    }
    if !path.is_file() {
        return Err(format!(
            "no classifier at {}: pass --classifier with a folder written by `{TRAIN_CLASSIFIER}`, or leave it out \
             for the shipped Fashion-MNIST classifier",
            path.display()
        ));
    }
    ImageClassifier::load(path, ClassifierConfig::fashion_mnist(), device)
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// Checks that images of `channels×height×width` (from `source`) are what `classifier` reads.
pub fn check_image_shape(
    classifier: &ImageClassifier,
    source: &str,
    (channels, height, width): (usize, usize, usize),
) -> Result<(), String> {
    let c = classifier.config();
    if (channels, height, width) != (c.in_channels, c.height, c.width) {
        return Err(format!(
            "{source} holds {channels}×{height}×{width} images, and the classifier {} reads {}×{}×{} images. FD and \
             precision/recall compare images in the feature space of a classifier that reads them: train one on \
             labelled images of this kind (class sub-folders or a labels file) with `{TRAIN_CLASSIFIER}` and pass \
             --classifier CLASSIFIER (for unlabelled data, train it on a labelled dataset of the same size and \
             channels, or pass a classifier you have)",
            c.name, c.in_channels, c.height, c.width
        ));
    }
    Ok(())
}

/// One split of the dataset `source`, in the shape `classifier` reads: as stored when it fits, else (an image folder)
/// resized and converted to the classifier's size and channels, as `--resolution` and `--channels` would.
pub fn load_split(
    source: &DataSource,
    split: Split,
    classifier: &ImageClassifier,
) -> Result<Dataset, String> {
    let fits = |data: &Dataset| {
        check_image_shape(
            classifier,
            &source.to_string(),
            (data.channels, data.height, data.width),
        )
    };
    let stored = source.load(split, &FolderOptions::default());
    if let Ok(data) = &stored {
        if fits(data).is_ok() {
            return stored;
        }
    }
    let c = classifier.config();
    if let (DataSource::Folder(_), true) = (source, c.height == c.width) {
        let shaped = FolderOptions {
            resolution: Some(c.height),
            channels: Some(c.in_channels),
        };
        if let Ok(data) = source.load(split, &shaped) {
            if fits(&data).is_ok() {
                return Ok(data);
            }
        }
    }
    let data = stored?;
    fits(&data)?;
    Ok(data)
}

/// `count` images (or all there are) of `data`, from the first, as an (N, C, H, W) tensor, with their labels.
pub fn first_images(data: &Dataset, count: usize) -> Result<(Tensor, Option<Vec<u32>>), String> {
    let count = count.min(data.len());
    let pixels = &data.images[..count * data.image_len()];
    let shape = [count, data.channels, data.height, data.width];
    let images = Tensor::from_slice(pixels, &shape, Device::Cpu).map_err(|e| e.to_string())?;
    Ok((images, data.labels.as_ref().map(|l| l[..count].to_vec())))
}

/// A denoising network to sample.
pub struct SampleModel<'a> {
    pub unet: &'a Backbone,
    /// The null class of a class-conditional model, which is also its number of real classes.
    pub null_class: Option<u32>,
    /// The model as a score model, for the score samplers (or why it is not one).
    pub score: &'a Result<ScoreView, String>,
    /// Decodes the samples of a latent model into images.
    pub decoder: Option<&'a LatentDecoder>,
    /// The super-resolution stage that upsamples the (decoded) samples: a cascade.
    pub upscale: Option<&'a Upscaler>,
}

impl SampleModel<'_> {
    /// Whether its classes are `classifier`'s, so that class accuracy means something.
    pub fn scores_accuracy(&self, classifier: &ImageClassifier) -> bool {
        self.null_class == Some(classifier.config().num_classes as u32)
    }

    /// The class of each of `num` samples: 0, 1, …, K−1, 0, … (`None` for an unconditional model).
    pub fn requested_classes(&self, num: usize) -> Option<Vec<u32>> {
        self.null_class
            .map(|k| (0..num).map(|i| i as u32 % k.max(1)).collect())
    }
}

/// How to draw the samples of one evaluation.
#[derive(Clone, Debug)]
pub struct Sampling {
    /// The sampler: a discrete-time one with its options (steps, thresholding, …) and training schedule, or a
    /// score sampler.
    pub sampler: AnySampler,
    pub guidance: f64,
    pub num: usize,
    pub batch: usize,
    pub seed: u64,
}

/// Draws `sampling.num` samples of `model` for `classes`, `sampling.batch` at a time, advancing `bar` per batch;
/// with a score sampler, also the model evaluations per batch (averaged over the batches).
pub fn generate(
    model: &SampleModel,
    sampling: &Sampling,
    classes: Option<&[u32]>,
    bar: &ProgressBar,
) -> Result<(Tensor, Option<f64>), String> {
    let mut seeds = SplitMix64::new(sampling.seed);
    let mut pixels = Vec::new();
    let mut image_shape = Vec::new();
    let (mut evaluations, mut batches) = (0, 0);
    let mut sampler = sampling.sampler.clone();
    for start in (0..sampling.num).step_by(sampling.batch.max(1)) {
        let count = sampling.batch.min(sampling.num - start);
        let (seed, classes) = (seeds.next_u64(), classes.map(|c| &c[start..start + count]));
        let images = match &mut sampler {
            AnySampler::Discrete(scheduler) => {
                scheduler.options.seed = seed;
                let request = GridRequest {
                    scheduler,
                    classes,
                    count,
                    guidance: sampling.guidance,
                    null_class: model.null_class,
                    prompts: None,
                };
                draw(model.unet, &request, None)?
            }
            AnySampler::Consistency(sampler) => {
                let request = ConsistencyRequest {
                    sampler,
                    seed,
                    classes,
                    count,
                    guidance: sampling.guidance,
                    null_class: model.null_class,
                };
                crate::consistency::draw_with(model.unet, &request, None, |d, sample| sample(d))?
            }
            AnySampler::Score(sampler) => {
                let request = ScoreRequest {
                    sampler: *sampler,
                    seed,
                    classes,
                    count,
                    guidance: sampling.guidance,
                    null_class: model.null_class,
                    pixels: model.decoder.is_none(),
                };
                let view = model.score.as_ref().map_err(String::clone)?;
                let (images, nfe) = crate::score::draw(model.unet, view, &request)?;
                (evaluations, batches) = (evaluations + nfe, batches + 1);
                images
            }
        };
        let images = match model.decoder {
            Some(decoder) => decoder.decode(&images)?,
            None => images,
        };
        let images = match model.upscale {
            Some(upscaler) => upscaler.apply(&images, seed)?,
            None => images,
        };
        image_shape = images.shape()[1..].to_vec();
        pixels.extend(images.to_vec().map_err(|e| e.to_string())?);
        bar.inc(count as u64);
    }
    let shape: Vec<usize> = std::iter::once(sampling.num).chain(image_shape).collect();
    let images = Tensor::from_vec(pixels, &shape, Device::Cpu).map_err(|e| e.to_string())?;
    Ok((
        images,
        (batches > 0).then(|| evaluations as f64 / batches as f64),
    ))
}

/// The classifier and the reference set's features: what every evaluation of one command compares against.
pub struct Scorer {
    pub classifier: ImageClassifier,
    pub reference: ReferenceFeatures,
}

impl Scorer {
    /// Runs `classifier` over every image of `reference` (the test split) once.
    pub fn new(classifier: ImageClassifier, reference: &Dataset) -> Result<Scorer, String> {
        let images = first_images(reference, reference.len())?.0;
        let reference =
            ReferenceFeatures::from_images(&classifier, &images).map_err(|e| e.to_string())?;
        Ok(Scorer {
            classifier,
            reference,
        })
    }

    /// The report of `samples` generated for `classes` (accuracy only when `model` scores it).
    pub fn score(
        &self,
        model: &SampleModel,
        samples: &Tensor,
        classes: Option<&[u32]>,
    ) -> Result<EvalReport, String> {
        let scored = classes.filter(|_| model.scores_accuracy(&self.classifier));
        evaluate_samples(&self.classifier, samples, scored, &self.reference)
            .map_err(|e| e.to_string())
    }

    /// Draws the samples `sampling` describes and scores them; with a score sampler, also the model evaluations
    /// per batch.
    pub fn evaluate(
        &self,
        model: &SampleModel,
        sampling: &Sampling,
        bar: &ProgressBar,
    ) -> Result<(EvalReport, Option<f64>), String> {
        let classes = model.requested_classes(sampling.num);
        let (samples, evaluations) = generate(model, sampling, classes.as_deref(), bar)?;
        Ok((
            self.score(model, &samples, classes.as_deref())?,
            evaluations,
        ))
    }
}
