//! The IDX reader: round trips, and every malformed file rejected with an error that names the file and the problem.

mod common;

use std::io::Write;

use common::TempDir;
use diffuse_diffusion::data::{read_idx_images, read_idx_labels, read_idx_u8, write_idx_u8};

fn sample_images() -> (Vec<usize>, Vec<u8>) {
    let dims = vec![3, 4, 5];
    let data = (0..60u8).map(|i| i.wrapping_mul(37)).collect();
    (dims, data)
}

#[test]
fn idx_round_trip_preserves_dims_and_bytes_plain_and_gzip() {
    let dir = TempDir::new("idx-roundtrip");
    let (dims, data) = sample_images();
    for gzip in [false, true] {
        let path = dir.path().join(format!("images-{gzip}"));
        write_idx_u8(&path, &dims, &data, gzip).unwrap();
        let raw = std::fs::read(&path).unwrap();
        assert_eq!(
            raw.starts_with(&[0x1f, 0x8b]),
            gzip,
            "gzip magic present iff compressed"
        );
        let back = read_idx_u8(&path).unwrap();
        assert_eq!(back.dims, dims);
        assert_eq!(back.data, data);
        let images = read_idx_images(&path).unwrap();
        assert_eq!((images.count, images.rows, images.cols), (3, 4, 5));
        assert_eq!(images.pixels, data);
    }
}

#[test]
fn idx_labels_round_trip_and_plain_file_has_the_mnist_layout() {
    let dir = TempDir::new("idx-labels");
    let path = dir.path().join("labels");
    write_idx_u8(&path, &[4], &[7, 0, 9, 3], false).unwrap();
    assert_eq!(
        std::fs::read(&path).unwrap(),
        [0, 0, 8, 1, 0, 0, 0, 4, 7, 0, 9, 3]
    );
    assert_eq!(read_idx_labels(&path).unwrap(), vec![7, 0, 9, 3]);
}

#[test]
fn gzip_writer_is_deterministic() {
    let dir = TempDir::new("idx-deterministic");
    let (dims, data) = sample_images();
    let a = dir.path().join("a.gz");
    let b = dir.path().join("b.gz");
    write_idx_u8(&a, &dims, &data, true).unwrap();
    write_idx_u8(&b, &dims, &data, true).unwrap();
    assert_eq!(std::fs::read(a).unwrap(), std::fs::read(b).unwrap());
}

/// A header for u8 data of the given dims.
fn header(dims: &[u32]) -> Vec<u8> {
    let mut bytes = vec![0, 0, 8, dims.len() as u8];
    for d in dims {
        bytes.extend_from_slice(&d.to_be_bytes());
    }
    bytes
}

fn with_body(mut bytes: Vec<u8>, body_len: usize) -> Vec<u8> {
    bytes.extend(std::iter::repeat_n(5u8, body_len));
    bytes
}

fn gzipped(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

#[test]
fn malformed_idx_files_are_rejected_with_the_file_name_and_the_reason() {
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty file", vec![], "truncated header"),
        ("truncated magic", vec![0, 0, 8], "truncated header"),
        (
            "wrong magic",
            with_body(vec![0x12, 0x34, 8, 1, 0, 0, 0, 1], 1),
            "not an IDX file",
        ),
        ("png file", b"\x89PNG\r\n\x1a\n".to_vec(), "not an IDX file"),
        (
            "f32 dtype",
            vec![0, 0, 0x0D, 1, 0, 0, 0, 1, 0, 0, 0, 0],
            "0x0d (f32) is not supported",
        ),
        (
            "unknown dtype",
            vec![0, 0, 0x42, 1, 0, 0, 0, 0],
            "0x42 (unknown type)",
        ),
        ("zero dims", vec![0, 0, 8, 0], "zero dimensions"),
        (
            "truncated dims",
            vec![0, 0, 8, 3, 0, 0, 0, 2, 0, 0],
            "dimension 1 of 3 is cut off",
        ),
        (
            "dims overflow",
            header(&[u32::MAX, u32::MAX, u32::MAX]),
            "overflow",
        ),
        (
            "truncated body",
            with_body(header(&[2, 3, 3]), 17),
            "truncated body",
        ),
        (
            "huge claim, no body",
            header(&[60_000, 60_000, 60_000]),
            "truncated body",
        ),
        (
            "trailing bytes",
            with_body(header(&[2, 3, 3]), 19),
            "longer than dims",
        ),
    ];
    let dir = TempDir::new("idx-malformed");
    for (name, bytes, expected) in cases {
        for gzip in [false, true] {
            let path = dir
                .path()
                .join(format!("{}-{gzip}", name.replace(' ', "-")));
            let contents = if gzip { gzipped(&bytes) } else { bytes.clone() };
            std::fs::write(&path, contents).unwrap();
            let error = read_idx_u8(&path).expect_err(name).to_string();
            assert!(
                error.contains(expected),
                "{name} (gzip: {gzip}): error {error:?} should mention {expected:?}"
            );
            assert!(
                error.contains(&path.display().to_string()),
                "{name}: {error:?} names no file"
            );
        }
    }
}

#[test]
fn corrupt_gzip_stream_is_an_error_not_a_panic() {
    let dir = TempDir::new("idx-corrupt-gzip");
    let path = dir.path().join("broken.gz");
    let mut bytes = gzipped(&with_body(header(&[4, 4, 4]), 64));
    let middle = bytes.len() / 2;
    bytes.truncate(middle);
    std::fs::write(&path, bytes).unwrap();
    let error = read_idx_u8(&path).unwrap_err().to_string();
    assert!(error.contains("broken.gz"), "{error}");
}

#[test]
fn wrong_rank_for_images_or_labels_is_an_error() {
    let dir = TempDir::new("idx-rank");
    let labels = dir.path().join("labels");
    write_idx_u8(&labels, &[4], &[1, 2, 3, 4], false).unwrap();
    let error = read_idx_images(&labels).unwrap_err().to_string();
    assert!(error.contains("needs 3 dimensions"), "{error}");

    let images = dir.path().join("images");
    write_idx_u8(&images, &[1, 2, 2], &[1, 2, 3, 4], false).unwrap();
    let error = read_idx_labels(&images).unwrap_err().to_string();
    assert!(error.contains("needs 1 dimension"), "{error}");

    let empty_rows = dir.path().join("empty-rows");
    write_idx_u8(&empty_rows, &[3, 0, 5], &[], false).unwrap();
    let error = read_idx_images(&empty_rows).unwrap_err().to_string();
    assert!(error.contains("empty"), "{error}");
}

#[test]
fn writer_rejects_data_that_does_not_match_the_dims() {
    let dir = TempDir::new("idx-writer");
    let path = dir.path().join("bad");
    let error = write_idx_u8(&path, &[2, 2], &[1, 2, 3], false)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("hold 4 elements but the data has 3"),
        "{error}"
    );
    let error = write_idx_u8(&path, &[], &[], false)
        .unwrap_err()
        .to_string();
    assert!(error.contains("1 to 255 dimensions"), "{error}");
}

#[test]
fn missing_file_is_an_error_naming_it() {
    let dir = TempDir::new("idx-missing");
    let path = dir.path().join("nope-idx3-ubyte");
    let error = read_idx_u8(&path).unwrap_err().to_string();
    assert!(
        error.contains("nope-idx3-ubyte") && error.contains("cannot open"),
        "{error}"
    );
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        #[test]
        fn any_u8_array_round_trips(
            dims in proptest::collection::vec(0usize..6, 1..4), gzip: bool, seed: u8
        ) {
            let dir = TempDir::new("idx-prop-roundtrip");
            let len: usize = dims.iter().product();
            let data: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect();
            let path = dir.path().join("array");
            write_idx_u8(&path, &dims, &data, gzip).unwrap();
            let back = read_idx_u8(&path).unwrap();
            prop_assert_eq!(back.dims, dims);
            prop_assert_eq!(back.data, data);
        }

        #[test]
        fn every_proper_prefix_of_a_valid_file_is_rejected(cut_fraction in 0.0f64..1.0, gzip: bool) {
            let dir = TempDir::new("idx-prop-prefix");
            let full = dir.path().join("full");
            write_idx_u8(&full, &[3, 2, 2], &[9; 12], false).unwrap();
            let bytes = std::fs::read(&full).unwrap();
            let cut = (cut_fraction * bytes.len() as f64) as usize;
            let prefix = &bytes[..cut];
            let path = dir.path().join("prefix");
            std::fs::write(&path, if gzip { gzipped(prefix) } else { prefix.to_vec() }).unwrap();
            prop_assert!(read_idx_u8(&path).is_err());
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let dir = TempDir::new("idx-prop-fuzz");
            let path = dir.path().join("noise");
            std::fs::write(&path, &bytes).unwrap();
            let _ = read_idx_u8(&path);
            let _ = read_idx_images(&path);
            let _ = read_idx_labels(&path);
        }
    }
}
