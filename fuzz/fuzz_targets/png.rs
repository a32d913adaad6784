//! One image file's bytes (PNG or JPEG) through the dataset reader's decoder. A decoded image must convert to 1 or 3
//! planar channels of its size, every value in [-1, 1].
#![no_main]

use diffuse_diffusion::data::decode_image;
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    if let Ok(image) = decode_image(data, Path::new("fuzz.png")) {
        for channels in [1, 3] {
            let values = image.planar(channels, None);
            assert_eq!(values.len(), channels * image.height() * image.width());
            assert!(values.iter().all(|v| (-1.0..=1.0).contains(v)));
        }
    }
});
