//! Image datasets for training: readers for the IDX format and for folders of PNG and JPEG files, and [`Dataset`], which holds
//! the images normalised to `[-1, 1]` in `N×C×H×W` order and hands out shuffled batches.

pub mod augment;
pub mod captions;
pub mod dataset;
pub mod error;
pub mod idx;
pub mod image_file;
pub mod image_folder;
pub mod shuffle;

pub use augment::random_translate;
pub use captions::{
    class_prompt, fashion_attributes, fashion_caption, read_folder_captions, Attributes,
    FASHION_CLASSES, HELD_OUT_TEMPLATES, TRAIN_TEMPLATES,
};
pub use dataset::{Dataset, Split};
pub use error::{DataError, Result};
pub use idx::{
    parse_idx_u8, read_idx_images, read_idx_labels, read_idx_u8, write_idx_u8, IdxArray, IdxImages,
};
pub use image_file::{decode_image, read_image, DecodedImage};
pub use image_folder::{read_image_folder, FolderOptions, FolderSummary, ImageFolder};
pub use shuffle::EpochBatches;
