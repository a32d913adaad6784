//! Evaluation of generated images, in the feature space of a small image classifier (the shipped Fashion-MNIST one
//! or one trained on another dataset), and of a denoiser's likelihood.
//!
//! - [`classifier`]: the CNN whose penultimate layer is the feature extractor (the shipped one trained by the
//!   `fashion_classifier` example, weights in `data/classifier/`).
//! - [`classifier_training`]: training it on any labelled dataset, and its accuracy.
//! - [`features`]: running it over a set of images: features and class probabilities.
//! - [`frechet`]: Fréchet distance between feature Gaussians, with the symmetric eigensolver of [`jacobi`].
//! - [`accuracy`]: per-class and overall accuracy of class-conditional samples.
//! - [`mod@inception_score`]: exp E[KL(p(y|x) ‖ p(y))].
//! - [`mod@precision_recall`]: k-NN manifold precision and recall.
//! - [`reconstruction`]: PSNR and SSIM of an autoencoder's reconstructions.
//! - [`bound`]: the variational bound in bits per dimension, with the Gaussian helpers of [`normal`].
//! - [`report`]: all of the above for a set of samples against reference features, as one JSON-serialisable
//!   [`EvalReport`].

pub mod accuracy;
pub mod bound;
pub mod classifier;
pub mod classifier_training;
pub mod features;
pub mod frechet;
pub mod inception_score;
pub mod jacobi;
pub mod normal;
pub mod precision_recall;
pub mod reconstruction;
pub mod report;

pub use accuracy::{class_accuracy, ClassAccuracy};
pub use bound::{variational_bound, BitsPerDim, BoundOptions, BoundTerms, DdpmVariance};
pub use classifier::{cross_entropy, ClassifierConfig, ImageClassifier};
pub use classifier_training::{classifier_accuracy, train_classifier, ClassifierTraining};
pub use features::{extract_features, ClassifierFeatures};
pub use frechet::{frechet_distance, FeatureStatistics};
pub use inception_score::inception_score;
pub use precision_recall::{precision_recall, PrecisionRecall};
pub use report::{evaluate_features, evaluate_samples, BpdSummary, EvalReport, ReferenceFeatures};

/// The error of an evaluation argument that does not fit: `op` names the function, `message` what disagreed.
fn invalid(op: &'static str, message: impl Into<String>) -> crate::error::Error {
    diffuse_tensor::Error::argument(op, message).into()
}
