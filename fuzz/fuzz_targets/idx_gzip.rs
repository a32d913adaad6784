//! The IDX reader's gzip path on well-formed gzip streams of arbitrary contents: mutating compressed bytes directly
//! mostly breaks the CRC, so here the fuzzer mutates the plain bytes and the target compresses them. The result must
//! agree with reading the same bytes uncompressed.
#![no_main]

use diffuse_diffusion::data::parse_idx_u8;
use flate2::write::GzEncoder;
use flate2::Compression;
use libfuzzer_sys::fuzz_target;
use std::io::Write;
use std::path::Path;

fuzz_target!(|plain: &[u8]| {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
    encoder
        .write_all(plain)
        .expect("writing to a Vec cannot fail");
    let gz = encoder.finish().expect("writing to a Vec cannot fail");
    let source = Path::new("fuzz.idx.gz");
    let from_gz = parse_idx_u8(gz.as_slice(), source).map_err(|e| e.message);
    let from_plain = parse_idx_u8(plain, source).map_err(|e| e.message);
    // Plain bytes that happen to start with the gzip magic are themselves read as gzip; skip those.
    if !plain.starts_with(&[0x1f, 0x8b]) {
        assert_eq!(from_gz, from_plain);
    }
});
