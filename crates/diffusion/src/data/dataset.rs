//! [`Dataset`]: images as `f32` in `[-1, 1]`, `N×C×H×W`, with optional class labels, and batches drawn from it.
//!
//! Pixel bytes map linearly, `x ↦ x / 127.5 − 1`, so 0 becomes −1 and 255 becomes +1 exactly: the range in which DDPM
//! (Ho et al. 2020) trains and in which its samplers clip.

use std::path::{Path, PathBuf};

use crate::rng::SplitMix64;

use super::error::{DataError, Result};
use super::idx::{idx_images, idx_labels, parse_idx_u8, read_idx_u8, IdxArray};
use super::image_folder::{read_image_folder, FolderOptions};
use super::shuffle::EpochBatches;

/// Which half of a dataset to load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    Train,
    Test,
}

impl Split {
    /// The MNIST-family file-name prefix of this split.
    fn idx_prefix(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Test => "t10k",
        }
    }

    /// The sub-folder name used for image-folder datasets.
    fn folder_name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Test => "test",
        }
    }
}

/// An image dataset held in memory.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// `len() × channels × height × width` values in `[-1, 1]`.
    pub images: Vec<f32>,
    /// One class per image, when the source has labels.
    pub labels: Option<Vec<u32>>,
    /// `1 + the largest label`, or 0 without labels.
    pub num_classes: usize,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    /// One line on what was read (counts per size and mode, where the labels came from), for the user.
    pub summary: String,
}

impl Dataset {
    /// Loads one split from `dir`, trying in turn:
    /// 1. IDX files `{train,t10k}-images-idx3-ubyte[.gz]`, with `{train,t10k}-labels-idx1-ubyte[.gz]` if present;
    /// 2. a sub-folder `train/` or `test/` of images (see [`read_image_folder`]);
    /// 3. for [`Split::Train`] only, the images in `dir`.
    pub fn load(dir: &Path, split: Split) -> Result<Self> {
        Self::load_with(dir, split, &FolderOptions::default())
    }

    /// [`Dataset::load`], with `options` shaping the images of an image folder (IDX files must already fit them).
    pub fn load_with(dir: &Path, split: Split, options: &FolderOptions) -> Result<Self> {
        let prefix = split.idx_prefix();
        if let Some(images) = existing_variant(dir, &format!("{prefix}-images-idx3-ubyte")) {
            let labels = existing_variant(dir, &format!("{prefix}-labels-idx1-ubyte"));
            let data = Self::from_idx(&images, labels.as_deref())?;
            return data.check_fits(options, &images);
        }
        let sub_folder = dir.join(split.folder_name());
        if sub_folder.is_dir() {
            return Self::from_image_folder(&sub_folder, options);
        }
        if split == Split::Train {
            return Self::from_image_folder(dir, options).map_err(|e| match e.path.as_deref() {
                Some(path) if path == dir => DataError::at(
                    dir,
                    format!("found neither {prefix}-images-idx3-ubyte[.gz], a train/ folder, nor images: {}", e.message),
                ),
                _ => e,
            });
        }
        Err(DataError::at(
            dir,
            format!(
                "found neither {prefix}-images-idx3-ubyte[.gz] nor a {}/ folder",
                split.folder_name()
            ),
        ))
    }

    /// Loads an IDX image file and, optionally, the IDX label file that goes with it.
    pub fn from_idx(images_path: &Path, labels_path: Option<&Path>) -> Result<Self> {
        let images = read_idx_u8(images_path)?;
        let labels = labels_path
            .map(|path| Ok((read_idx_u8(path)?, path)))
            .transpose()?;
        Self::from_idx_arrays(images, images_path, labels)
    }

    /// Images and optional labels from IDX bytes already read (plain or gzip-compressed), e.g. files embedded in a
    /// program; `images_path` and the labels' path name them in errors and in the summary.
    pub fn from_idx_bytes(
        images: &[u8],
        images_path: &Path,
        labels: Option<(&[u8], &Path)>,
    ) -> Result<Self> {
        let images = parse_idx_u8(images, images_path)?;
        let labels = labels
            .map(|(bytes, path)| Ok((parse_idx_u8(bytes, path)?, path)))
            .transpose()?;
        Self::from_idx_arrays(images, images_path, labels)
    }

    fn from_idx_arrays(
        images: IdxArray,
        images_path: &Path,
        labels: Option<(IdxArray, &Path)>,
    ) -> Result<Self> {
        let images = idx_images(images, images_path)?;
        let labels = match labels {
            Some((array, path)) => {
                let labels = idx_labels(array, path)?;
                if labels.len() != images.count {
                    return Err(DataError::at(
                        path,
                        format!(
                            "has {} labels but {} has {} images",
                            labels.len(),
                            images_path.display(),
                            images.count
                        ),
                    ));
                }
                Some(labels.into_iter().map(u32::from).collect())
            }
            None => None,
        };
        let mut data =
            Self::from_u8(&images.pixels, labels, 1, images.rows, images.cols).map_err(|e| {
                DataError {
                    path: Some(images_path.to_path_buf()),
                    ..e
                }
            })?;
        let labels = match data.num_classes {
            0 => "no labels".to_string(),
            n => format!("{n} classes"),
        };
        data.summary = format!(
            "{}: {} images of 1×{}×{} (IDX); {labels}",
            images_path.display(),
            data.len(),
            data.height,
            data.width
        );
        Ok(data)
    }

    /// IDX images cannot be resized: an error unless `options` asks for what they are.
    fn check_fits(self, options: &FolderOptions, path: &Path) -> Result<Self> {
        let side_fits = options
            .resolution
            .is_none_or(|side| (side, side) == (self.height, self.width));
        if !side_fits || options.channels.is_some_and(|c| c != self.channels) {
            return Err(DataError::at(
                path,
                format!(
                    "IDX images are {}×{}×{} and are not resized or converted; leave out --resolution and --channels, \
                     or use a folder of images",
                    self.channels, self.height, self.width
                ),
            ));
        }
        Ok(self)
    }

    /// Loads a folder of images (see [`read_image_folder`]).
    pub fn from_image_folder(dir: &Path, options: &FolderOptions) -> Result<Self> {
        let folder = read_image_folder(dir, options)?;
        let num_classes = folder.summary.num_classes;
        Ok(Self {
            images: folder.values,
            labels: folder.labels,
            num_classes,
            channels: folder.channels,
            height: folder.height,
            width: folder.width,
            summary: folder.summary.to_string(),
        })
    }

    /// Builds a dataset from planar `N×C×H×W` bytes, normalising each byte `x` to `x / 127.5 − 1`.
    pub fn from_u8(
        pixels: &[u8],
        labels: Option<Vec<u32>>,
        channels: usize,
        height: usize,
        width: usize,
    ) -> Result<Self> {
        let image_len = channels
            .checked_mul(height)
            .and_then(|n| n.checked_mul(width))
            .filter(|&n| n > 0)
            .ok_or_else(|| {
                DataError::new(format!(
                    "image shape {channels}×{height}×{width} is empty or overflows"
                ))
            })?;
        if pixels.is_empty() || !pixels.len().is_multiple_of(image_len) {
            return Err(DataError::new(format!(
                "{} pixel bytes do not make a positive whole number of {channels}×{height}×{width} images",
                pixels.len()
            )));
        }
        let count = pixels.len() / image_len;
        if let Some(labels) = &labels {
            if labels.len() != count {
                return Err(DataError::new(format!(
                    "{} labels for {count} images",
                    labels.len()
                )));
            }
        }
        let num_classes = labels
            .as_ref()
            .and_then(|labels| labels.iter().max())
            .map_or(0, |&max| max as usize + 1);
        let images = pixels
            .iter()
            .map(|&byte| f32::from(byte) / 127.5 - 1.0)
            .collect();
        Ok(Self {
            images,
            labels,
            num_classes,
            channels,
            height,
            width,
            summary: String::new(),
        })
    }

    /// The number of images.
    pub fn len(&self) -> usize {
        self.images.len().checked_div(self.image_len()).unwrap_or(0)
    }

    /// Whether the dataset holds no images (never true for a loaded dataset).
    pub fn is_empty(&self) -> bool {
        self.images.is_empty()
    }

    /// Values per image: `channels × height × width`.
    pub fn image_len(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// Gathers the images (`indices.len() × C×H×W`) and labels at `indices`. The labels are empty for an unlabelled
    /// dataset. With `flip_seed`, each image is mirrored left-to-right with probability ½, the coin for the `k`-th index
    /// being the `k`-th draw of `SplitMix64::new(seed)`, so the same seed reproduces the same batch.
    pub fn batch(&self, indices: &[usize], flip_seed: Option<u64>) -> Result<(Vec<f32>, Vec<u32>)> {
        let len = self.len();
        if let Some(&bad) = indices.iter().find(|&&i| i >= len) {
            return Err(DataError::new(format!(
                "batch index {bad} is out of range for a dataset of {len} images"
            )));
        }
        let image_len = self.image_len();
        if image_len == 0 || !self.images.len().is_multiple_of(image_len) {
            return Err(DataError::new(format!(
                "{} values do not make whole {}×{}×{} images",
                self.images.len(),
                self.channels,
                self.height,
                self.width
            )));
        }
        let mut coins = flip_seed.map(SplitMix64::new);
        let mut images = Vec::with_capacity(indices.len() * image_len);
        for &index in indices {
            let image = &self.images[index * image_len..(index + 1) * image_len];
            let flip = coins.as_mut().is_some_and(SplitMix64::next_bool);
            if flip {
                for row in image.chunks_exact(self.width) {
                    images.extend(row.iter().rev());
                }
            } else {
                images.extend_from_slice(image);
            }
        }
        let labels = match &self.labels {
            Some(labels) => indices
                .iter()
                .map(|&i| labels.get(i).copied())
                .collect::<Option<Vec<u32>>>()
                .ok_or_else(|| {
                    DataError::new(format!("{} labels for {len} images", labels.len()))
                })?,
            None => Vec::new(),
        };
        Ok((images, labels))
    }

    /// The shuffled batches of epoch `epoch` under `seed` (see [`EpochBatches`]).
    pub fn epoch(
        &self,
        batch_size: usize,
        seed: u64,
        epoch: u64,
        drop_last: bool,
    ) -> Result<EpochBatches> {
        EpochBatches::new(self.len(), batch_size, seed, epoch, drop_last)
    }
}

/// `dir/name` or `dir/name.gz`, whichever exists first.
fn existing_variant(dir: &Path, name: &str) -> Option<PathBuf> {
    [dir.join(name), dir.join(format!("{name}.gz"))]
        .into_iter()
        .find(|path| path.is_file())
}
