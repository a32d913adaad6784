//! PNG folders: decoding grey and colour images to planar bytes, labels files, and the errors for bad folders.

mod common;

use std::path::Path;

use common::TempDir;
use diffuse_diffusion::data::png_folder::MAX_DECODED_BYTES;
use diffuse_diffusion::data::{decode_png_image, read_png_folder, Dataset};

/// Writes an 8-bit PNG with interleaved `samples` (row-major, `color` samples per pixel).
fn write_png(path: &Path, width: u32, height: u32, color: png::ColorType, samples: &[u8]) {
    let file = std::fs::File::create(path).unwrap();
    let mut encoder = png::Encoder::new(std::io::BufWriter::new(file), width, height);
    encoder.set_color(color);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().unwrap();
    writer.write_image_data(samples).unwrap();
}

fn grey_ramp(offset: u8, width: u32, height: u32) -> Vec<u8> {
    (0..width * height)
        .map(|i| offset.wrapping_add(i as u8))
        .collect()
}

#[test]
fn grey_png_folder_loads_in_file_name_order_with_labels() {
    let dir = TempDir::new("png-grey");
    // Written out of order: the folder must come back sorted by name.
    write_png(
        &dir.path().join("b.png"),
        3,
        2,
        png::ColorType::Grayscale,
        &grey_ramp(100, 3, 2),
    );
    write_png(
        &dir.path().join("a.png"),
        3,
        2,
        png::ColorType::Grayscale,
        &grey_ramp(0, 3, 2),
    );
    std::fs::write(
        dir.path().join("labels.csv"),
        "filename,label\n# comment\nb.png, 4\n\na.png,1\n",
    )
    .unwrap();
    let folder = read_png_folder(dir.path()).unwrap();
    assert_eq!(folder.files, ["a.png", "b.png"]);
    assert_eq!((folder.channels, folder.height, folder.width), (1, 2, 3));
    assert_eq!(
        folder.pixels,
        [0, 1, 2, 3, 4, 5, 100, 101, 102, 103, 104, 105]
    );
    assert_eq!(folder.labels, Some(vec![1, 4]));
}

#[test]
fn rgba_png_becomes_planar_rgb_and_alpha_is_dropped() {
    let dir = TempDir::new("png-rgba");
    // Two pixels: (10, 20, 30, 255) and (40, 50, 60, 0).
    write_png(
        &dir.path().join("x.png"),
        2,
        1,
        png::ColorType::Rgba,
        &[10, 20, 30, 255, 40, 50, 60, 0],
    );
    let folder = read_png_folder(dir.path()).unwrap();
    assert_eq!(folder.channels, 3);
    assert_eq!(folder.pixels, [10, 40, 20, 50, 30, 60]);
    assert_eq!(folder.labels, None);
}

#[test]
fn rgb_png_folder_becomes_a_three_channel_dataset_in_minus_one_to_one() {
    let dir = TempDir::new("png-dataset");
    write_png(
        &dir.path().join("p.png"),
        1,
        1,
        png::ColorType::Rgb,
        &[0, 255, 51],
    );
    let dataset = Dataset::from_png_folder(dir.path()).unwrap();
    assert_eq!(
        (
            dataset.len(),
            dataset.channels,
            dataset.height,
            dataset.width
        ),
        (1, 3, 1, 1)
    );
    assert_eq!(dataset.images, [-1.0, 1.0, 51.0 / 127.5 - 1.0]);
    assert_eq!(dataset.labels, None);
    assert_eq!(dataset.num_classes, 0);
}

#[test]
fn bad_png_folders_are_rejected_naming_the_file() {
    struct Case {
        name: &'static str,
        build: fn(&Path),
        names_file: &'static str,
        reason: &'static str,
    }
    let cases = [
        Case {
            name: "empty folder",
            build: |_| {},
            names_file: "",
            reason: "no .png files",
        },
        Case {
            name: "different sizes",
            build: |d| {
                write_png(&d.join("a.png"), 2, 2, png::ColorType::Grayscale, &[0; 4]);
                write_png(&d.join("b.png"), 3, 2, png::ColorType::Grayscale, &[0; 6]);
            },
            names_file: "b.png",
            reason: "image is 1×2×3",
        },
        Case {
            name: "grey mixed with colour",
            build: |d| {
                write_png(&d.join("a.png"), 1, 1, png::ColorType::Grayscale, &[0]);
                write_png(&d.join("b.png"), 1, 1, png::ColorType::Rgb, &[0; 3]);
            },
            names_file: "b.png",
            reason: "image is 3×1×1",
        },
        Case {
            name: "not a png",
            build: |d| std::fs::write(d.join("fake.png"), b"hello").unwrap(),
            names_file: "fake.png",
            reason: "not a valid PNG",
        },
        Case {
            name: "missing label",
            build: |d| {
                write_png(&d.join("a.png"), 1, 1, png::ColorType::Grayscale, &[0]);
                write_png(&d.join("b.png"), 1, 1, png::ColorType::Grayscale, &[0]);
                std::fs::write(d.join("labels.txt"), "a.png,3\n").unwrap();
            },
            names_file: "labels.txt",
            reason: "image \"b.png\" has no label",
        },
        Case {
            name: "label not a number",
            build: |d| {
                write_png(&d.join("a.png"), 1, 1, png::ColorType::Grayscale, &[0]);
                std::fs::write(d.join("labels.txt"), "a.png,cat\n").unwrap();
            },
            names_file: "labels.txt",
            reason: "line 1: label \"cat\"",
        },
        Case {
            name: "label for unknown file",
            build: |d| {
                write_png(&d.join("a.png"), 1, 1, png::ColorType::Grayscale, &[0]);
                std::fs::write(d.join("labels.txt"), "a.png,1\nz.png,2\n").unwrap();
            },
            names_file: "labels.txt",
            reason: "line 2: \"z.png\" is not a .png file",
        },
        Case {
            name: "duplicate label",
            build: |d| {
                write_png(&d.join("a.png"), 1, 1, png::ColorType::Grayscale, &[0]);
                std::fs::write(d.join("labels.txt"), "a.png,1\na.png,2\n").unwrap();
            },
            names_file: "labels.txt",
            reason: "labelled twice",
        },
        Case {
            name: "line without comma",
            build: |d| {
                write_png(&d.join("a.png"), 1, 1, png::ColorType::Grayscale, &[0]);
                std::fs::write(d.join("labels.txt"), "a.png 1\n").unwrap();
            },
            names_file: "labels.txt",
            reason: "expected `filename,label`",
        },
        Case {
            name: "two label files",
            build: |d| {
                write_png(&d.join("a.png"), 1, 1, png::ColorType::Grayscale, &[0]);
                std::fs::write(d.join("labels.txt"), "a.png,1\n").unwrap();
                std::fs::write(d.join("labels.csv"), "a.png,1\n").unwrap();
            },
            names_file: "",
            reason: "both labels.txt and labels.csv",
        },
    ];
    for case in cases {
        let dir = TempDir::new("png-bad");
        (case.build)(dir.path());
        let error = read_png_folder(dir.path())
            .expect_err(case.name)
            .to_string();
        assert!(
            error.contains(case.reason),
            "{}: {error:?} should mention {:?}",
            case.name,
            case.reason
        );
        let expected_path = dir.path().join(case.names_file);
        let expected_path = expected_path.display().to_string();
        assert!(
            error.contains(expected_path.trim_end_matches('/')),
            "{}: {error:?} should name {expected_path}",
            case.name
        );
    }
}

#[test]
fn sixteen_bit_png_is_rejected() {
    let dir = TempDir::new("png-16bit");
    let path = dir.path().join("deep.png");
    let file = std::fs::File::create(&path).unwrap();
    let mut encoder = png::Encoder::new(std::io::BufWriter::new(file), 1, 1);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Sixteen);
    encoder
        .write_header()
        .unwrap()
        .write_image_data(&[1, 2])
        .unwrap();
    let error = read_png_folder(dir.path()).unwrap_err().to_string();
    assert!(
        error.contains("deep.png") && error.contains("16-bit"),
        "{error}"
    );
}

/// Found by the `png` fuzz target: a 395-byte file whose header claims 28 × 4 294 967 044 grey pixels made the reader
/// allocate 120 GB for the decoded image before reading any data. The size is now checked against a limit first.
#[test]
fn png_whose_header_claims_a_huge_image_is_refused_before_allocating() {
    let fixture =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/png_header_claims_120_gb.png");
    let bytes = std::fs::read(&fixture).unwrap();
    let error = decode_png_image(bytes.as_slice(), &fixture)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("28×4294967044") && error.contains(&MAX_DECODED_BYTES.to_string()),
        "{error}"
    );
    let dir = TempDir::new("png-huge-header");
    std::fs::write(dir.path().join("huge.png"), &bytes).unwrap();
    let error = read_png_folder(dir.path()).unwrap_err().to_string();
    assert!(
        error.contains("huge.png") && error.contains("pixels"),
        "{error}"
    );
}
