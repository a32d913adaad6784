//! Image folders: PNG (8 and 16 bit) and JPEG, grey and colour, nested folders, resizing and centre-cropping, channel
//! conversion, labels files and sub-folder classes, the summary line, and the errors for bad folders, each naming the
//! file. Every image is generated here.

mod common;

use std::path::Path;

use common::TempDir;
use diffuse_diffusion::data::image_file::MAX_DECODED_BYTES;
use diffuse_diffusion::data::{decode_image, read_image_folder, Dataset, FolderOptions, Split};
use image::{GrayImage, ImageBuffer, Luma, Rgb, RgbImage, Rgba, RgbaImage};

fn save(path: &Path, image: impl Into<image::DynamicImage>) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    image.into().save(path).unwrap();
}

fn grey(width: u32, height: u32, offset: u8) -> GrayImage {
    GrayImage::from_fn(width, height, |x, y| {
        Luma([offset.wrapping_add((y * width + x) as u8)])
    })
}

fn defaults() -> FolderOptions {
    FolderOptions::default()
}

#[test]
fn grey_folder_loads_in_path_order_with_labels_and_exact_values() {
    let dir = TempDir::new("img-grey");
    // Written out of order: the folder must come back sorted by path.
    save(&dir.path().join("b.png"), grey(3, 2, 100));
    save(&dir.path().join("a.png"), grey(3, 2, 0));
    std::fs::write(
        dir.path().join("labels.csv"),
        "filename,label\n# comment\nb.png, 4\n\na.png,1\n",
    )
    .unwrap();
    let folder = read_image_folder(dir.path(), &defaults()).unwrap();
    assert_eq!(folder.files, ["a.png", "b.png"]);
    assert_eq!((folder.channels, folder.height, folder.width), (1, 2, 3));
    let bytes = [0u8, 1, 2, 3, 4, 5, 100, 101, 102, 103, 104, 105];
    let expected: Vec<f32> = bytes.iter().map(|&b| f32::from(b) / 127.5 - 1.0).collect();
    assert_eq!(folder.values, expected);
    assert_eq!(folder.labels, Some(vec![1, 4]));
    let summary = folder.summary.to_string();
    assert!(
        summary.contains("2 images (2 × 3×2 grey 8-bit PNG)"),
        "{summary}"
    );
    assert!(
        summary.contains("5 classes from") && summary.contains("labels.csv"),
        "{summary}"
    );
    assert!(summary.contains("as 1×2×3"), "{summary}");
}

#[test]
fn rgba_becomes_planar_rgb_and_alpha_is_dropped() {
    let dir = TempDir::new("img-rgba");
    let mut image = RgbaImage::new(2, 1);
    image.put_pixel(0, 0, Rgba([10, 20, 30, 255]));
    image.put_pixel(1, 0, Rgba([40, 50, 60, 0]));
    save(&dir.path().join("x.png"), image);
    let folder = read_image_folder(dir.path(), &defaults()).unwrap();
    assert_eq!(folder.channels, 3);
    let expected: Vec<f32> = [10u8, 40, 20, 50, 30, 60]
        .iter()
        .map(|&b| f32::from(b) / 127.5 - 1.0)
        .collect();
    assert_eq!(folder.values, expected);
    assert_eq!(folder.labels, None);
}

#[test]
fn sixteen_bit_png_keeps_its_precision() {
    let dir = TempDir::new("img-16");
    let image: ImageBuffer<Luma<u16>, Vec<u16>> =
        ImageBuffer::from_raw(3, 1, vec![0, 1, 65535]).unwrap();
    save(&dir.path().join("deep.png"), image);
    let folder = read_image_folder(dir.path(), &defaults()).unwrap();
    assert_eq!(folder.values, [-1.0, 1.0 / 32767.5 - 1.0, 1.0]);
    assert!(folder.summary.to_string().contains("grey 16-bit PNG"));
}

/// Mixed formats, modes, sizes and nesting: JPEG and PNG, grey and RGB, 8 and 16 bit, three sizes, two folder levels.
fn mixed_folder(dir: &Path) {
    save(
        &dir.join("cats/a.png"),
        RgbImage::from_pixel(12, 8, Rgb([200, 10, 10])),
    );
    save(
        &dir.join("cats/deeper/b.jpg"),
        RgbImage::from_pixel(8, 8, Rgb([200, 10, 10])),
    );
    save(
        &dir.join("dogs/c.JPEG"),
        GrayImage::from_pixel(8, 16, Luma([90])),
    );
    let deep: ImageBuffer<Rgb<u16>, Vec<u16>> = ImageBuffer::from_pixel(8, 8, Rgb([0, 65535, 0]));
    save(&dir.join("dogs/d.png"), deep);
    std::fs::write(dir.join("dogs/notes.txt"), "not an image").unwrap();
}

#[test]
fn mixed_folder_is_resized_centre_cropped_and_labelled_by_subfolder() {
    let dir = TempDir::new("img-mixed");
    mixed_folder(dir.path());
    let options = FolderOptions {
        resolution: Some(4),
        channels: None,
    };
    let data = Dataset::load_with(dir.path(), Split::Train, &options).unwrap();
    assert_eq!(
        (data.len(), data.channels, data.height, data.width),
        (4, 3, 4, 4)
    );
    // Path order: cats/a.png, cats/deeper/b.jpg, dogs/c.JPEG, dogs/d.png.
    assert_eq!(data.labels, Some(vec![0, 0, 1, 1]));
    assert_eq!(data.num_classes, 2);
    // A flat colour stays flat through resizing (CatmullRom's weights sum to one; f32 on [0, 1], a few ulps) and JPEG
    // (whose flat blocks decode within a grey level or two).
    let image = |i: usize| &data.images[i * 48..(i + 1) * 48];
    let near = |values: &[f32], expected: f32, tolerance: f32| {
        values.iter().all(|v| (v - expected).abs() <= tolerance)
    };
    let red = 200.0 / 127.5 - 1.0;
    assert!(near(&image(0)[..16], red, 1e-5), "{:?}", image(0));
    assert!(near(&image(1)[..16], red, 3.0 / 127.5), "{:?}", image(1));
    // Grey JPEG expanded to RGB: three equal planes.
    assert!(
        near(image(2), 90.0 / 127.5 - 1.0, 3.0 / 127.5),
        "{:?}",
        image(2)
    );
    assert!(near(&image(3)[16..32], 1.0, 1e-5) && near(&image(3)[..16], -1.0, 1e-5));
    let summary = &data.summary;
    for part in [
        "4 images",
        "1 × 8×8 RGB 8-bit JPEG",
        "1 × 8×8 RGB 16-bit PNG",
        "1 × 8×16 grey 8-bit JPEG",
        "1 × 12×8 RGB 8-bit PNG",
        "1 other files skipped",
        "2 classes from the sub-folders cats, dogs",
        "resized and centre-cropped to 3×4×4",
    ] {
        assert!(summary.contains(part), "{summary:?} should say {part:?}");
    }
}

#[test]
fn channels_option_converts_colour_to_grey_and_grey_to_colour() {
    let dir = TempDir::new("img-channels");
    save(
        &dir.path().join("a.png"),
        RgbImage::from_pixel(2, 2, Rgb([255, 255, 255])),
    );
    save(
        &dir.path().join("b.png"),
        GrayImage::from_pixel(2, 2, Luma([0])),
    );
    let grey_options = FolderOptions {
        resolution: None,
        channels: Some(1),
    };
    let folder = read_image_folder(dir.path(), &grey_options).unwrap();
    assert_eq!(folder.channels, 1);
    assert_eq!(folder.values, [[1.0; 4], [-1.0; 4]].concat());
    let colour = read_image_folder(dir.path(), &defaults()).unwrap();
    assert_eq!(colour.channels, 3);
    assert_eq!(colour.values, [[1.0; 12], [-1.0; 12]].concat());
}

#[test]
fn centre_crop_keeps_the_middle_of_the_long_side() {
    let dir = TempDir::new("img-crop");
    // 6×2, columns 0-1 and 4-5 black, 2-3 white: resized to 3×1, the centre pixel is the white middle.
    let image = GrayImage::from_fn(6, 2, |x, _| {
        Luma([if (2..4).contains(&x) { 255 } else { 0 }])
    });
    save(&dir.path().join("wide.png"), image);
    let options = FolderOptions {
        resolution: Some(1),
        channels: None,
    };
    let folder = read_image_folder(dir.path(), &options).unwrap();
    assert_eq!((folder.height, folder.width), (1, 1));
    assert!(folder.values[0] > 0.5, "{:?}", folder.values);
}

#[test]
fn bad_folders_are_rejected_naming_the_file() {
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
            reason: "holds no images",
        },
        Case {
            name: "only other files",
            build: |d| std::fs::write(d.join("readme.txt"), "hi").unwrap(),
            names_file: "",
            reason: "holds no images",
        },
        Case {
            name: "different sizes without --resolution",
            build: |d| {
                save(&d.join("a.png"), grey(2, 2, 0));
                save(&d.join("sub/b.png"), grey(3, 2, 0));
            },
            names_file: "sub/b.png",
            reason: "is 3×2 (width×height) but a.png is 2×2; pass --resolution N",
        },
        Case {
            name: "not an image",
            build: |d| std::fs::write(d.join("fake.png"), b"hello").unwrap(),
            names_file: "fake.png",
            reason: "not a PNG or JPEG image",
        },
        Case {
            // Unreadable whoever runs the test (a file without read permission is readable by root): a link to a
            // file that is gone.
            name: "unreadable file",
            build: |d| {
                save(&d.join("ok.png"), grey(2, 2, 0));
                std::fs::create_dir_all(d.join("sub")).unwrap();
                std::os::unix::fs::symlink(d.join("gone.png"), d.join("sub/lost.png")).unwrap();
            },
            names_file: "sub/lost.png",
            reason: "cannot read",
        },
        Case {
            name: "truncated PNG in a sub-folder",
            build: |d| {
                save(&d.join("deep/ok.png"), grey(8, 8, 0));
                let bytes = std::fs::read(d.join("deep/ok.png")).unwrap();
                std::fs::write(d.join("deep/cut.png"), &bytes[..bytes.len() / 2]).unwrap();
            },
            names_file: "deep/cut.png",
            reason: "not a valid PNG",
        },
        Case {
            name: "truncated JPEG",
            build: |d| {
                save(
                    &d.join("ok.jpg"),
                    RgbImage::from_pixel(16, 16, Rgb([1, 2, 3])),
                );
                let bytes = std::fs::read(d.join("ok.jpg")).unwrap();
                std::fs::write(d.join("cut.jpg"), &bytes[..40]).unwrap();
            },
            names_file: "cut.jpg",
            reason: "not a valid JPEG",
        },
        Case {
            name: "missing label",
            build: |d| {
                save(&d.join("a.png"), grey(1, 1, 0));
                save(&d.join("b.png"), grey(1, 1, 0));
                std::fs::write(d.join("labels.txt"), "a.png,3\n").unwrap();
            },
            names_file: "labels.txt",
            reason: "image \"b.png\" has no label",
        },
        Case {
            name: "label not a number",
            build: |d| {
                save(&d.join("a.png"), grey(1, 1, 0));
                std::fs::write(d.join("labels.txt"), "a.png,cat\n").unwrap();
            },
            names_file: "labels.txt",
            reason: "line 1: label \"cat\"",
        },
        Case {
            name: "label for unknown file",
            build: |d| {
                save(&d.join("a.png"), grey(1, 1, 0));
                std::fs::write(d.join("labels.txt"), "a.png,1\nz.png,2\n").unwrap();
            },
            names_file: "labels.txt",
            reason: "line 2: \"z.png\" is not an image file",
        },
        Case {
            name: "duplicate label",
            build: |d| {
                save(&d.join("a.png"), grey(1, 1, 0));
                std::fs::write(d.join("labels.txt"), "a.png,1\na.png,2\n").unwrap();
            },
            names_file: "labels.txt",
            reason: "labelled twice",
        },
        Case {
            name: "line without comma",
            build: |d| {
                save(&d.join("a.png"), grey(1, 1, 0));
                std::fs::write(d.join("labels.txt"), "a.png 1\n").unwrap();
            },
            names_file: "labels.txt",
            reason: "expected `filename,label`",
        },
        Case {
            name: "two label files",
            build: |d| {
                save(&d.join("a.png"), grey(1, 1, 0));
                std::fs::write(d.join("labels.txt"), "a.png,1\n").unwrap();
                std::fs::write(d.join("labels.csv"), "a.png,1\n").unwrap();
            },
            names_file: "",
            reason: "both labels.txt and labels.csv",
        },
    ];
    for case in cases {
        let dir = TempDir::new("img-bad");
        (case.build)(dir.path());
        let error = read_image_folder(dir.path(), &defaults())
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
fn bad_options_are_refused() {
    let dir = TempDir::new("img-options");
    save(&dir.path().join("a.png"), grey(2, 2, 0));
    for (options, reason) in [
        (
            FolderOptions {
                resolution: None,
                channels: Some(2),
            },
            "--channels 2",
        ),
        (
            FolderOptions {
                resolution: Some(0),
                channels: None,
            },
            "--resolution 0",
        ),
    ] {
        let error = read_image_folder(dir.path(), &options)
            .unwrap_err()
            .to_string();
        assert!(error.contains(reason), "{error}");
    }
}

/// Found by the `png` fuzz target: a 395-byte file whose header claims 28 × 4 294 967 044 grey pixels made the reader
/// allocate 120 GB for the decoded image before reading any data. The size is checked against a limit first.
#[test]
fn png_whose_header_claims_a_huge_image_is_refused_before_allocating() {
    let fixture =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/png_header_claims_120_gb.png");
    let bytes = std::fs::read(&fixture).unwrap();
    let error = decode_image(&bytes, &fixture).unwrap_err().to_string();
    assert!(
        error.contains("28×4294967044") && error.contains(&MAX_DECODED_BYTES.to_string()),
        "{error}"
    );
    let dir = TempDir::new("img-huge-header");
    std::fs::write(dir.path().join("huge.png"), &bytes).unwrap();
    let error = read_image_folder(dir.path(), &defaults())
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("huge.png") && error.contains("pixels"),
        "{error}"
    );
}
