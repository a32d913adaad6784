//! What `--data` and `--classifier` name, wherever the command runs. The shipped Fashion-MNIST subset (10,000
//! training and 10,000 test images, 8.4 MB gzip-compressed) and the shipped classifier (1.8 MB) are compiled into the
//! binary, so an installed `diffuse` has its main job without the repository: `--data fashion-mnist` (the default) and
//! the default `--classifier` read them. A value that names an existing path is that path, so `--data
//! data/fashion-mnist` in the repository reads the same files from disk.

use diffuse_diffusion::data::{Dataset, FolderOptions, Split};
use diffuse_diffusion::eval::{ClassifierConfig, ImageClassifier};
use diffuse_diffusion::image_condition::downsample_box;
use diffuse_tensor::Device;
use std::path::{Path, PathBuf};

/// `--data`'s default: the Fashion-MNIST subset shipped in `data/fashion-mnist` and compiled into the binary.
pub const SHIPPED_DATA: &str = "fashion-mnist";

/// `--data fashion-mnist-full`: the 60,000-image training set of Debian's `dataset-fashion-mnist` package.
const FULL_FASHION_MNIST: &str = "/usr/share/datasets/fashion-mnist";

/// `--classifier`'s default: the shipped Fashion-MNIST classifier, compiled into the binary.
pub const SHIPPED_CLASSIFIER: &str = "data/classifier/fashion-classifier.safetensors";

macro_rules! shipped {
    ($file:literal) => {
        include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../", $file))
    };
}

/// One shipped split: its IDX files' contents, with the paths they were compiled from (for messages).
struct ShippedSplit {
    split: Split,
    images_path: &'static str,
    images: &'static [u8],
    labels_path: &'static str,
    labels: &'static [u8],
}

const SHIPPED_SPLITS: [ShippedSplit; 2] = [
    ShippedSplit {
        split: Split::Train,
        images_path: "data/fashion-mnist/train-images-idx3-ubyte.gz",
        images: shipped!("data/fashion-mnist/train-images-idx3-ubyte.gz"),
        labels_path: "data/fashion-mnist/train-labels-idx1-ubyte.gz",
        labels: shipped!("data/fashion-mnist/train-labels-idx1-ubyte.gz"),
    },
    ShippedSplit {
        split: Split::Test,
        images_path: "data/fashion-mnist/t10k-images-idx3-ubyte.gz",
        images: shipped!("data/fashion-mnist/t10k-images-idx3-ubyte.gz"),
        labels_path: "data/fashion-mnist/t10k-labels-idx1-ubyte.gz",
        labels: shipped!("data/fashion-mnist/t10k-labels-idx1-ubyte.gz"),
    },
];

const SHIPPED_CLASSIFIER_BYTES: &[u8] = shipped!("data/classifier/fashion-classifier.safetensors");

/// Where `--data NAME` is read from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DataSource {
    /// The Fashion-MNIST subset compiled into the binary.
    Shipped,
    Folder(PathBuf),
}

impl DataSource {
    /// What `--data name` means: an existing path, `fashion-mnist` (shipped) or `fashion-mnist-full` (installed).
    pub fn named(name: &str) -> Result<DataSource, String> {
        let path = Path::new(name);
        if path.exists() {
            return Ok(DataSource::Folder(path.to_path_buf()));
        }
        match name {
            SHIPPED_DATA => Ok(DataSource::Shipped),
            "fashion-mnist-full" => {
                let dir = PathBuf::from(FULL_FASHION_MNIST);
                if dir.is_dir() {
                    Ok(DataSource::Folder(dir))
                } else {
                    Err(format!(
                        "the full Fashion-MNIST is not installed at {FULL_FASHION_MNIST}; run `apt install \
                         dataset-fashion-mnist`"
                    ))
                }
            }
            _ => Err(format!(
                "--data {name}: no such folder; pass a folder of images (PNG or JPEG, any depth of sub-folders) or of \
                 IDX files, `{SHIPPED_DATA}` (the shipped subset) or `fashion-mnist-full`"
            )),
        }
    }

    /// One split, images shaped by `options` (which the shipped IDX images must already fit).
    pub fn load(&self, split: Split, options: &FolderOptions) -> Result<Dataset, String> {
        match self {
            DataSource::Folder(dir) => {
                Dataset::load_with(dir, split, options).map_err(|e| e.to_string())
            }
            DataSource::Shipped => {
                let shipped = SHIPPED_SPLITS
                    .iter()
                    .find(|entry| entry.split == split)
                    .expect("both splits are shipped");
                let side = options.resolution.filter(|&side| side != 28);
                if options.channels.is_some_and(|c| c != 1)
                    || side.is_some_and(|n| !28usize.is_multiple_of(n))
                {
                    return Err(format!(
                        "--data {SHIPPED_DATA}: the shipped images are 1×28×28; they are not converted, and only \
                         box-averaged to a side that divides 28 (--resolution 14, 7, 4 or 2)"
                    ));
                }
                let labels = Some((shipped.labels, Path::new(shipped.labels_path)));
                let mut data =
                    Dataset::from_idx_bytes(shipped.images, Path::new(shipped.images_path), labels)
                        .map_err(|e| e.to_string())?;
                data.summary = format!("{} (shipped, in the binary)", data.summary);
                if let Some(side) = side {
                    data.images = downsample_box(&data.images, data.len(), (28, 28), 28 / side)
                        .map_err(|e| e.to_string())?;
                    (data.height, data.width) = (side, side);
                    data.summary = format!(
                        "{}; box-averaged to 1×{side}×{side} (each {f}×{f} block's mean)",
                        data.summary,
                        f = 28 / side
                    );
                }
                Ok(data)
            }
        }
    }
}

impl std::fmt::Display for DataSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DataSource::Shipped => write!(f, "the shipped Fashion-MNIST"),
            DataSource::Folder(dir) => write!(f, "{}", dir.display()),
        }
    }
}

/// The shipped classifier on `device` when `--classifier path` is the default path and no file is there (`None`:
/// read the file).
pub fn shipped_classifier(path: &Path, device: Device) -> Option<Result<ImageClassifier, String>> {
    (path == Path::new(SHIPPED_CLASSIFIER) && !path.is_file()).then(|| {
        ImageClassifier::from_bytes(
            SHIPPED_CLASSIFIER_BYTES,
            path,
            ClassifierConfig::fashion_mnist(),
            device,
        )
        .map_err(|e| e.to_string())
    })
}
