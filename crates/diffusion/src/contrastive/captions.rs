//! The caption of each training image: generated for Fashion-MNIST (class + measured attributes, a template drawn per
//! step) or fixed, from a `captions.txt` beside a folder of images.

use crate::data::captions::{
    fashion_attributes, fashion_caption, read_folder_captions, Attributes,
};
use crate::data::{Dataset, Split};
use crate::error::{Error, Result};
use crate::rng::SplitMix64;
use std::path::Path;

/// Where an image's caption comes from.
#[derive(Debug, Clone)]
pub enum ImageCaptions {
    /// Fashion-MNIST: each image's label and measured attributes; the template is drawn per use.
    Fashion(Vec<(u32, Attributes)>),
    /// One caption per image, read from the folder.
    Fixed(Vec<String>),
}

impl ImageCaptions {
    /// The captions of `data`, loaded from `dir` as [`Dataset::load`] loads `split`: the folder's `captions.txt` /
    /// `captions.csv` when it has one, else generated from Fashion-MNIST labels (0–9) and the pixels.
    pub fn for_dataset(dir: &Path, split: Split, data: &Dataset) -> Result<ImageCaptions> {
        let folder = match split {
            Split::Train if dir.join("train").is_dir() => dir.join("train"),
            Split::Train => dir.to_path_buf(),
            Split::Test => dir.join("test"),
        };
        if folder.is_dir() {
            if let Some(captions) = read_folder_captions(&folder)? {
                if captions.len() != data.len() {
                    return Err(Error::train(
                        folder.display().to_string(),
                        format!("{} captions for {} images", captions.len(), data.len()),
                    ));
                }
                return Ok(ImageCaptions::Fixed(captions));
            }
        }
        Self::from_labels(data, &dir.display().to_string())
    }

    /// Captions generated from the Fashion-MNIST labels (0–9) of `data` and its pixels; `source` names the data in
    /// the error when it has no such labels.
    pub fn from_labels(data: &Dataset, source: &str) -> Result<ImageCaptions> {
        let labels = data.labels.as_ref().filter(|_| data.num_classes <= 10).ok_or_else(|| {
            Error::train(
                source,
                "no captions: give the image folder a captions.txt of `filename,caption` lines, or Fashion-MNIST \
                 labels (0–9) to generate them from",
            )
        })?;
        let plane = data.height * data.width;
        let mut out = Vec::with_capacity(labels.len());
        for (i, &label) in labels.iter().enumerate() {
            let image = &data.images[i * data.image_len()..(i + 1) * data.image_len()];
            // Attributes are measured on the first channel's plane (Fashion-MNIST is grey).
            out.push((
                label,
                fashion_attributes(&image[..plane], label, data.height, data.width)?,
            ));
        }
        Ok(ImageCaptions::Fashion(out))
    }

    pub fn len(&self) -> usize {
        match self {
            ImageCaptions::Fashion(v) => v.len(),
            ImageCaptions::Fixed(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The caption of image `index` in `template` (generated captions only; fixed ones ignore it).
    pub fn caption(&self, index: usize, template: &str) -> Result<String> {
        match self {
            ImageCaptions::Fashion(v) => {
                let (label, attributes) = &v[index];
                Ok(fashion_caption(*label, attributes, template)?)
            }
            ImageCaptions::Fixed(v) => Ok(v[index].clone()),
        }
    }

    /// The caption of image `index` at training step `step`: the template is drawn from `templates` by
    /// SplitMix64(seed, step, position in the batch).
    pub fn training_caption(
        &self,
        index: usize,
        templates: &[&str],
        (seed, step, position): (u64, u64, usize),
    ) -> Result<String> {
        let mut rng = SplitMix64::new(
            seed ^ step.wrapping_mul(0x9E37_79B9_7F4A_7C15)
                ^ (position as u64).wrapping_mul(0xD1B5_4A32_D192_ED03),
        );
        let template = templates[rng.below(templates.len() as u64) as usize];
        self.caption(index, template)
    }
}
