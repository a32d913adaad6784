//! `Dataset`: loading rules, normalisation, batches with reproducible flips, and deterministic epochs.

mod common;

use std::collections::HashSet;

use common::TempDir;
use diffuse_diffusion::data::{write_idx_u8, Dataset, EpochBatches, Split};
use proptest::prelude::*;

/// Two 2×3 images with labels 5 and 2, written as IDX train files (images gzip, labels plain).
fn write_tiny_idx(dir: &std::path::Path) {
    let pixels: Vec<u8> = (0..12).map(|i| i * 20).collect();
    write_idx_u8(
        &dir.join("train-images-idx3-ubyte.gz"),
        &[2, 2, 3],
        &pixels,
        true,
    )
    .unwrap();
    write_idx_u8(&dir.join("train-labels-idx1-ubyte"), &[2], &[5, 2], false).unwrap();
}

#[test]
fn idx_dataset_normalises_bytes_to_minus_one_to_one() {
    let dir = TempDir::new("ds-idx");
    write_tiny_idx(dir.path());
    let ds = Dataset::load(dir.path(), Split::Train).unwrap();
    assert_eq!((ds.len(), ds.channels, ds.height, ds.width), (2, 1, 2, 3));
    assert_eq!(ds.labels, Some(vec![5, 2]));
    assert_eq!(ds.num_classes, 6);
    let expected: Vec<f32> = (0..12).map(|i| (i * 20) as f32 / 127.5 - 1.0).collect();
    assert_eq!(ds.images, expected);
    let from_bytes = Dataset::from_u8(&[0, 255], None, 1, 1, 1).unwrap();
    assert_eq!(from_bytes.images, [-1.0, 1.0]);
}

#[test]
fn image_and_label_count_mismatch_names_both_files() {
    let dir = TempDir::new("ds-mismatch");
    write_idx_u8(
        &dir.path().join("t10k-images-idx3-ubyte"),
        &[3, 1, 1],
        &[1, 2, 3],
        false,
    )
    .unwrap();
    write_idx_u8(
        &dir.path().join("t10k-labels-idx1-ubyte.gz"),
        &[2],
        &[0, 1],
        true,
    )
    .unwrap();
    let error = Dataset::load(dir.path(), Split::Test)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("t10k-labels-idx1-ubyte.gz") && error.contains("t10k-images-idx3-ubyte"),
        "{error}"
    );
    assert!(
        error.contains("2 labels") && error.contains("3 images"),
        "{error}"
    );
}

#[test]
fn missing_split_is_an_error_naming_what_was_looked_for() {
    let dir = TempDir::new("ds-missing");
    write_tiny_idx(dir.path());
    let error = Dataset::load(dir.path(), Split::Test)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("t10k-images-idx3-ubyte") && error.contains("test/"),
        "{error}"
    );

    let empty = TempDir::new("ds-empty");
    let error = Dataset::load(empty.path(), Split::Train)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("train-images-idx3-ubyte")
            && error.contains("holds no images (.png, .jpg or .jpeg"),
        "{error}"
    );
}

#[test]
fn idx_images_without_label_file_load_unlabelled() {
    let dir = TempDir::new("ds-unlabelled");
    write_idx_u8(
        &dir.path().join("train-images-idx3-ubyte"),
        &[2, 1, 2],
        &[0, 1, 2, 3],
        false,
    )
    .unwrap();
    let ds = Dataset::load(dir.path(), Split::Train).unwrap();
    assert_eq!(ds.labels, None);
    let (images, labels) = ds.batch(&[1, 0], None).unwrap();
    assert_eq!(images.len(), 4);
    assert!(labels.is_empty());
}

#[test]
fn batch_gathers_images_and_labels_in_index_order() {
    let dir = TempDir::new("ds-batch");
    write_tiny_idx(dir.path());
    let ds = Dataset::load(dir.path(), Split::Train).unwrap();
    let (images, labels) = ds.batch(&[1, 0, 1], None).unwrap();
    assert_eq!(labels, [2, 5, 2]);
    assert_eq!(&images[..6], &ds.images[6..]);
    assert_eq!(&images[6..12], &ds.images[..6]);
    assert_eq!(&images[12..], &ds.images[6..]);
    let error = ds.batch(&[0, 2], None).unwrap_err().to_string();
    assert!(
        error.contains("batch index 2 is out of range for a dataset of 2 images"),
        "{error}"
    );
}

#[test]
fn flipped_batch_mirrors_rows_and_is_reproducible_from_the_seed() {
    // One 2-channel 2×3 image, so a flip reverses each of the four rows.
    let pixels: Vec<u8> = (0..12).collect();
    let ds = Dataset::from_u8(&pixels, None, 2, 2, 3).unwrap();
    let indices = vec![0; 64];
    let (a, _) = ds.batch(&indices, Some(42)).unwrap();
    let (b, _) = ds.batch(&indices, Some(42)).unwrap();
    assert_eq!(a, b, "same seed, same flips");
    let mirrored: Vec<f32> = ds
        .images
        .chunks(3)
        .flat_map(|row| row.iter().rev().copied())
        .collect();
    let mut flipped = 0;
    for image in a.chunks(12) {
        if image == mirrored.as_slice() {
            flipped += 1;
        } else {
            assert_eq!(
                image,
                ds.images.as_slice(),
                "an image is either untouched or mirrored"
            );
        }
    }
    // 64 fair coins: P(fewer than 16 or more than 48 heads) < 1e-4, and the seed is fixed anyway.
    assert!((16..=48).contains(&flipped), "{flipped} of 64 flipped");
    let (c, _) = ds.batch(&indices, Some(43)).unwrap();
    assert_ne!(a, c, "another seed, other flips");
}

#[test]
fn epochs_are_permutations_reproducible_from_seed_and_epoch() {
    let a: Vec<Vec<usize>> = EpochBatches::new(10, 4, 7, 0, false).unwrap().collect();
    let b: Vec<Vec<usize>> = EpochBatches::new(10, 4, 7, 0, false).unwrap().collect();
    assert_eq!(a, b);
    assert_eq!(a.iter().map(Vec::len).collect::<Vec<_>>(), [4, 4, 2]);
    let next_epoch: Vec<usize> = EpochBatches::new(10, 4, 7, 1, false)
        .unwrap()
        .flatten()
        .collect();
    assert_ne!(a.concat(), next_epoch);
    let dropped: Vec<Vec<usize>> = EpochBatches::new(10, 4, 7, 0, true).unwrap().collect();
    assert_eq!(dropped, a[..2]);
    assert!(EpochBatches::new(10, 0, 7, 0, false).is_err());
    assert_eq!(EpochBatches::new(0, 3, 7, 0, false).unwrap().count(), 0);
}

#[test]
fn shuffle_moves_every_position_about_uniformly() {
    // 4000 epochs of 5 items: each of the 25 (item, position) cells expects 800 hits, sd ≈ 25; ±150 is 6 sd.
    let mut counts = [[0u32; 5]; 5];
    for epoch in 0..4000 {
        let order = EpochBatches::new(5, 5, 123, epoch, false).unwrap();
        for (position, &item) in order.order().iter().enumerate() {
            counts[item][position] += 1;
        }
    }
    for row in counts {
        for count in row {
            assert!((650..=950).contains(&count), "{counts:?}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn every_epoch_visits_each_index_exactly_once(
        len in 0usize..200, batch_size in 1usize..40, seed: u64, epoch in 0u64..1000
    ) {
        let batches: Vec<Vec<usize>> = EpochBatches::new(len, batch_size, seed, epoch, false).unwrap().collect();
        let all: Vec<usize> = batches.concat();
        prop_assert_eq!(all.len(), len);
        let unique: HashSet<usize> = all.iter().copied().collect();
        prop_assert_eq!(unique.len(), len);
        prop_assert!(all.iter().all(|&i| i < len));
        for batch in &batches[..batches.len().saturating_sub(1)] {
            prop_assert_eq!(batch.len(), batch_size);
        }
    }
}
