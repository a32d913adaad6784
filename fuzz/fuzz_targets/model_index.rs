//! Arbitrary text as a diffusers pipeline's `model_index.json`. An index that reads must write back as text that
//! reads to the same index.
#![no_main]

use diffuse_diffusion::pipeline::ModelIndex;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(index) = ModelIndex::from_json_str(text) else {
        return;
    };
    let again =
        ModelIndex::from_json_str(&index.to_json_string()).expect("a written index reads back");
    assert_eq!(again, index);
});
