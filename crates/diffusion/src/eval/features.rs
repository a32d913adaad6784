//! Running the classifier over a set of images: per image, the penultimate features φ(x) ∈ ℝ^128 and the class
//! probabilities p(y|x) = softmax(logits). Inference only ([`no_grad`]), in batches so memory stays bounded.

use super::classifier::ImageClassifier;
use crate::error::Result;
use diffuse_autograd::{no_grad, Var};
use diffuse_tensor::{Error as TensorError, Tensor};

/// Images in this many per forward pass unless the caller says otherwise.
pub const DEFAULT_BATCH: usize = 250;

/// Features and class probabilities of `len()` images, row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct ClassifierFeatures {
    /// The name of the classifier that extracted them.
    pub extractor: String,
    /// `len() × feature_dim` penultimate activations.
    pub features: Vec<f32>,
    pub feature_dim: usize,
    /// `len() × num_classes` probabilities p(y|x), each row summing to 1.
    pub probs: Vec<f32>,
    pub num_classes: usize,
}

impl ClassifierFeatures {
    /// The number of images.
    pub fn len(&self) -> usize {
        self.features
            .len()
            .checked_div(self.feature_dim)
            .unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most probable class of every image (the first on ties).
    pub fn predicted(&self) -> Vec<u32> {
        if self.num_classes == 0 {
            return Vec::new();
        }
        self.probs
            .chunks_exact(self.num_classes)
            .map(|p| {
                let best = p
                    .iter()
                    .enumerate()
                    .fold(0, |best, (j, &q)| if q > p[best] { j } else { best });
                best as u32
            })
            .collect()
    }
}

/// Runs `classifier` over `images` (N, C, H, W, the shape it reads) with values in [−1, 1], `batch_size` images at
/// a time.
pub fn extract_features(
    classifier: &ImageClassifier,
    images: &Tensor,
    batch_size: usize,
) -> Result<ClassifierFeatures> {
    if images.rank() != 4 || batch_size == 0 {
        return Err(TensorError::shape(
            "extract_features",
            format!(
                "images have shape {:?} (expected (N, C, H, W)) and batch size {batch_size} (expected ≥ 1)",
                images.shape()
            ),
        )
        .into());
    }
    let n = images.shape()[0];
    let mut out = ClassifierFeatures {
        extractor: classifier.config().name.clone(),
        features: Vec::new(),
        feature_dim: 0,
        probs: Vec::new(),
        num_classes: 0,
    };
    no_grad(|| -> Result<()> {
        for start in (0..n).step_by(batch_size) {
            let len = batch_size.min(n - start);
            let x = Var::constant(images.narrow(0, start, len)?.contiguous()?);
            let y = classifier.forward(&x)?;
            out.feature_dim = y.features.shape()[1];
            out.num_classes = y.logits.shape()[1];
            out.features.extend(y.features.tensor().to_vec()?);
            out.probs.extend(y.logits.tensor().softmax(1)?.to_vec()?);
        }
        Ok(())
    })?;
    Ok(out)
}
