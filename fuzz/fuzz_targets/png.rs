//! One PNG file's bytes through the dataset reader's decoder. A decoded image must be 1 or 3 planar channels whose
//! byte count matches its size.
#![no_main]

use diffuse_diffusion::data::decode_png_image;
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    if let Ok(image) = decode_png_image(data, Path::new("fuzz.png")) {
        assert!(image.channels == 1 || image.channels == 3);
        assert_eq!(
            image.planar.len(),
            image.channels * image.height * image.width
        );
    }
});
