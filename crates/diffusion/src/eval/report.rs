//! One evaluation of a set of samples against reference images, in the classifier's feature space:
//!
//! ```text
//! FD        = frechet_distance(stats(φ(samples)), stats(φ(reference)))
//! accuracy  = class_accuracy(argmax p(y|sample), requested labels)        (class-conditional samples only)
//! IS        = inception_score(p(y|samples))
//! P, R      = precision_recall(φ(reference), φ(samples)), k = 3
//! ```
//!
//! The reference side ([`ReferenceFeatures`]: features, their statistics and k-NN radii) is computed once and reused
//! for every set of samples. Computing the same report for held-out real images (the training set against the test
//! set) gives the floor a perfect generator would reach with that many samples.

use super::accuracy::class_accuracy;
use super::bound::BitsPerDim;
use super::classifier::ImageClassifier;
use super::features::{extract_features, ClassifierFeatures, DEFAULT_BATCH};
use super::frechet::{frechet_distance, FeatureStatistics};
use super::inception_score::inception_score;
use super::precision_recall::{fraction_inside, knn_squared_radii, DEFAULT_K};
use crate::error::Result;
use diffuse_tensor::Tensor;
use serde::{Deserialize, Serialize};

/// The reference set as the metrics need it.
#[derive(Clone, Debug, PartialEq)]
pub struct ReferenceFeatures {
    pub features: ClassifierFeatures,
    pub statistics: FeatureStatistics,
    /// Squared distance of each reference feature vector to its k-th nearest neighbour among the others.
    pub squared_radii: Vec<f32>,
    pub k: usize,
}

impl ReferenceFeatures {
    /// Statistics and k-NN radii (k = 3) of already extracted features.
    pub fn new(features: ClassifierFeatures) -> Result<ReferenceFeatures> {
        let dim = features.feature_dim;
        Ok(ReferenceFeatures {
            statistics: FeatureStatistics::from_features(&features.features, dim)?,
            squared_radii: knn_squared_radii(&features.features, dim, DEFAULT_K)?,
            k: DEFAULT_K,
            features,
        })
    }

    /// Runs the classifier over `images` (N, C, H, W, the shape it reads) in [−1, 1] and summarises them.
    pub fn from_images(classifier: &ImageClassifier, images: &Tensor) -> Result<ReferenceFeatures> {
        ReferenceFeatures::new(extract_features(classifier, images, DEFAULT_BATCH)?)
    }
}

/// Mean and standard error of the bound, bits/dim.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct BpdSummary {
    pub mean: f64,
    pub std_error: f64,
}

impl From<&BitsPerDim> for BpdSummary {
    fn from(b: &BitsPerDim) -> Self {
        BpdSummary {
            mean: b.mean,
            std_error: b.std_error,
        }
    }
}

/// Every metric of one set of samples.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    /// The feature extractor (`fashion_classifier` for the shipped one, else the classifier's own name).
    pub extractor: String,
    pub samples: usize,
    pub reference_samples: usize,
    /// Fréchet distance in the extractor's 128-dimensional feature space (the field keeps the name it had when the
    /// shipped classifier was the only extractor; `extractor` says which one it is).
    pub fd_fashion_classifier: f64,
    /// Fraction of class-conditional samples classified as their requested class.
    pub accuracy: Option<f64>,
    /// The same per requested class (`null` for a class no sample asked for).
    pub per_class_accuracy: Option<Vec<Option<f64>>>,
    /// exp E[KL(p(y|x) ‖ p(y))] of the samples.
    pub inception_score: f64,
    pub precision: f64,
    pub recall: f64,
    /// The variational bound, when a denoiser was evaluated ([`super::variational_bound`]).
    pub bpd: Option<BpdSummary>,
}

/// The report of `samples` (N, C, H, W, the shape the classifier reads) in [−1, 1], generated for the classes `labels` when conditional.
pub fn evaluate_samples(
    classifier: &ImageClassifier,
    samples: &Tensor,
    labels: Option<&[u32]>,
    reference: &ReferenceFeatures,
) -> Result<EvalReport> {
    evaluate_features(
        &extract_features(classifier, samples, DEFAULT_BATCH)?,
        labels,
        reference,
    )
}

/// The report of samples whose features are already extracted.
pub fn evaluate_features(
    samples: &ClassifierFeatures,
    labels: Option<&[u32]>,
    reference: &ReferenceFeatures,
) -> Result<EvalReport> {
    let dim = samples.feature_dim;
    let statistics = FeatureStatistics::from_features(&samples.features, dim)?;
    let accuracy = labels
        .map(|labels| class_accuracy(&samples.predicted(), labels, samples.num_classes))
        .transpose()?;
    let sample_radii = knn_squared_radii(&samples.features, dim, reference.k)?;
    let real = &reference.features.features;
    Ok(EvalReport {
        extractor: samples.extractor.clone(),
        samples: samples.len(),
        reference_samples: reference.features.len(),
        fd_fashion_classifier: frechet_distance(&statistics, &reference.statistics)?,
        accuracy: accuracy.as_ref().map(|a| a.overall),
        per_class_accuracy: accuracy.map(|a| a.per_class),
        inception_score: inception_score(&samples.probs, samples.num_classes)?,
        precision: fraction_inside(&samples.features, real, &reference.squared_radii, dim)?,
        recall: fraction_inside(real, &samples.features, &sample_radii, dim)?,
        bpd: None,
    })
}
