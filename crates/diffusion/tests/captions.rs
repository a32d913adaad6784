//! Captions: the Fashion-MNIST attribute thresholds split every class of the shipped data about in half, generated
//! captions are deterministic, and a PNG folder's captions file is read in the folder's order with clear errors.

mod common;

use std::path::{Path, PathBuf};

use common::TempDir;
use diffuse_diffusion::data::{
    fashion_attributes, fashion_caption, read_folder_captions, Dataset, Split, HELD_OUT_TEMPLATES,
    TRAIN_TEMPLATES,
};

fn shipped_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data/fashion-mnist")
}

/// The thresholds are the training subset's per-class medians (to three decimals), so on that subset each attribute
/// holds for 45–55 % of every class; on the test set, drawn from the same distribution, for 40–60 %.
#[test]
fn attributes_split_every_class_about_in_half() {
    for (split, slack) in [(Split::Train, 0.05), (Split::Test, 0.10)] {
        let ds = Dataset::load(&shipped_dir(), split).unwrap();
        let labels = ds.labels.as_ref().unwrap();
        let mut counts = [[0usize; 4]; 10]; // per class: images, dark, slim, plain
        for (i, &label) in labels.iter().enumerate() {
            let image = &ds.images[i * 784..(i + 1) * 784];
            let a = fashion_attributes(image, label, 28, 28).unwrap();
            let c = &mut counts[label as usize];
            c[0] += 1;
            c[1] += usize::from(a.tone == "dark");
            c[2] += usize::from(a.build == "slim");
            c[3] += usize::from(a.texture == "plain");
        }
        for (class, c) in counts.iter().enumerate() {
            for (k, name) in ["dark", "slim", "plain"].iter().enumerate() {
                let share = c[k + 1] as f64 / c[0] as f64;
                assert!(
                    (share - 0.5).abs() <= slack,
                    "{split:?} class {class}: {name} holds for {share:.3}"
                );
            }
        }
    }
}

#[test]
fn captions_are_deterministic_and_name_the_class_and_attributes() {
    let ds = Dataset::load(&shipped_dir(), Split::Test).unwrap();
    let label = ds.labels.as_ref().unwrap()[0];
    let a = fashion_attributes(&ds.images[..784], label, 28, 28).unwrap();
    assert_eq!(
        a,
        fashion_attributes(&ds.images[..784], label, 28, 28).unwrap()
    );
    for template in TRAIN_TEMPLATES.iter().chain(&HELD_OUT_TEMPLATES) {
        let caption = fashion_caption(label, &a, template).unwrap();
        assert!(!caption.contains('{'), "{caption}");
        assert!(caption.contains("ankle boot"), "{caption}");
        // A template may name only some attributes, never a wrong one.
        let opposite = |word: &str| match word {
            "dark" => "light",
            "light" => "dark",
            "slim" => "wide",
            "wide" => "slim",
            "plain" => "patterned",
            _ => "plain",
        };
        for word in [a.tone, a.build, a.texture] {
            assert!(
                !caption.contains(opposite(word)),
                "{caption} contradicts {word}"
            );
        }
    }
    assert!(fashion_attributes(&ds.images[..784], 10, 28, 28).is_err());
}

fn write_grey_png(path: &Path) {
    let file = std::fs::File::create(path).unwrap();
    let mut encoder = png::Encoder::new(std::io::BufWriter::new(file), 2, 2);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    encoder
        .write_header()
        .unwrap()
        .write_image_data(&[0, 64, 128, 255])
        .unwrap();
}

#[test]
fn folder_captions_come_in_file_name_order() {
    let dir = TempDir::new("captions");
    assert_eq!(read_folder_captions(dir.path()).unwrap(), None);
    write_grey_png(&dir.path().join("b.png"));
    write_grey_png(&dir.path().join("a.png"));
    std::fs::write(
        dir.path().join("captions.csv"),
        "filename,caption\n# comment\nb.png, \"a red hat, small\"\n\na.png,two shoes\n",
    )
    .unwrap();
    assert_eq!(
        read_folder_captions(dir.path()).unwrap(),
        Some(vec![
            "two shoes".to_string(),
            "a red hat, small".to_string()
        ])
    );
}

#[test]
fn bad_captions_files_are_refused_with_the_reason() {
    let dir = TempDir::new("captions-bad");
    write_grey_png(&dir.path().join("a.png"));
    write_grey_png(&dir.path().join("b.png"));
    let file = dir.path().join("captions.txt");
    for (text, expected) in [
        ("a.png,x\n", "image \"b.png\" has no caption"),
        (
            "a.png,x\nb.png,y\na.png,z\n",
            "line 3: \"a.png\" has two captions",
        ),
        (
            "a.png,x\nc.png,y\n",
            "line 2: \"c.png\" is not an image file",
        ),
        ("a.png x\n", "line 1: expected `filename,caption`"),
    ] {
        std::fs::write(&file, text).unwrap();
        let message = read_folder_captions(dir.path()).unwrap_err().to_string();
        assert!(message.contains(expected), "{message}");
    }
    std::fs::write(dir.path().join("captions.csv"), "a.png,x\nb.png,y\n").unwrap();
    let message = read_folder_captions(dir.path()).unwrap_err().to_string();
    assert!(message.contains("keep only one"), "{message}");
}
