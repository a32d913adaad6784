//! The Fashion-MNIST subset shipped in `data/fashion-mnist/` loads with the right counts, labels and pixels.

use std::path::PathBuf;

use diffuse_diffusion::data::{Dataset, Split};

fn shipped_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data/fashion-mnist")
}

fn histogram(labels: &[u32]) -> Vec<usize> {
    let mut counts = vec![0; 10];
    for &label in labels {
        counts[label as usize] += 1;
    }
    counts
}

/// Sum of the raw bytes, recovered exactly from the normalised values (`x = 127.5 (v + 1)`).
fn byte_sum(images: &[f32]) -> u64 {
    images
        .iter()
        .map(|&v| (127.5 * (f64::from(v) + 1.0)).round() as u64)
        .sum()
}

#[test]
fn shipped_train_subset_has_10000_labelled_28x28_images() {
    let ds = Dataset::load(&shipped_dir(), Split::Train).unwrap();
    assert_eq!(
        (ds.len(), ds.channels, ds.height, ds.width, ds.num_classes),
        (10_000, 1, 28, 28, 10)
    );
    let labels = ds.labels.as_ref().unwrap();
    assert_eq!(&labels[..10], &[9, 0, 0, 3, 0, 2, 7, 2, 5, 5]);
    assert_eq!(
        histogram(labels),
        [942, 1027, 1016, 1019, 974, 989, 1021, 1022, 990, 1000]
    );
    assert_eq!(byte_sum(&ds.images), 572_388_787);
    assert!(ds.images.iter().all(|v| (-1.0..=1.0).contains(v)));
}

#[test]
fn shipped_test_set_has_1000_images_per_class() {
    let ds = Dataset::load(&shipped_dir(), Split::Test).unwrap();
    assert_eq!(
        (ds.len(), ds.channels, ds.height, ds.width, ds.num_classes),
        (10_000, 1, 28, 28, 10)
    );
    let labels = ds.labels.as_ref().unwrap();
    assert_eq!(&labels[..10], &[9, 2, 1, 1, 6, 1, 4, 6, 5, 7]);
    assert_eq!(histogram(labels), [1000; 10]);
    assert_eq!(byte_sum(&ds.images), 573_469_082);
}
