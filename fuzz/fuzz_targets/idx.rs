//! The IDX reader on arbitrary bytes, plain or gzip-compressed (the reader sniffs the gzip magic itself).
//! A parsed array must hold exactly as many bytes as its dimensions announce.
#![no_main]

use diffuse_diffusion::data::parse_idx_u8;
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    if let Ok(array) = parse_idx_u8(data, Path::new("fuzz.idx")) {
        assert_eq!(array.data.len(), array.dims.iter().product::<usize>());
    }
});
