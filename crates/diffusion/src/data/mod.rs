//! Image datasets for training: readers for the IDX format and for folders of PNG files, and [`Dataset`], which holds
//! the images normalised to `[-1, 1]` in `N×C×H×W` order and hands out shuffled batches.

pub mod captions;
pub mod dataset;
pub mod error;
pub mod idx;
pub mod png_folder;
pub mod shuffle;

pub use captions::{
    class_prompt, fashion_attributes, fashion_caption, read_folder_captions, Attributes,
    FASHION_CLASSES, HELD_OUT_TEMPLATES, TRAIN_TEMPLATES,
};
pub use dataset::{Dataset, Split};
pub use error::{DataError, Result};
pub use idx::{
    parse_idx_u8, read_idx_images, read_idx_labels, read_idx_u8, write_idx_u8, IdxArray, IdxImages,
};
pub use png_folder::{decode_png_image, read_png_folder, PngFolder, PngImage};
pub use shuffle::EpochBatches;
