//! Captions for images: generated for Fashion-MNIST from the class and three attributes measured on the pixels, or
//! read from a `captions.txt` / `captions.csv` file beside a folder of PNG images.
//!
//! ## The measured attributes
//!
//! On the grey value `v = (x + 1) / 2 ∈ [0, 1]` of an image (the channel mean for colour images), the *ink* is the set
//! of pixels with `v > 0.1` (Fashion-MNIST's background is 0), and
//!
//! ```text
//! tone     = mean of v over the ink                                   dark  if tone     < the class's threshold, else light
//! coverage = |ink| / (H·W)                                            slim  if coverage < the class's threshold, else wide
//! texture  = mean |v_a − v_b| over horizontally and vertically        plain if texture  < the class's threshold, else patterned
//!            adjacent pairs (a, b) with both pixels in the ink
//! ```
//!
//! Each threshold is the median of that measure over the class's images in the shipped training subset (the first
//! 10,000 Fashion-MNIST training images), rounded to three decimals ([`FASHION_THRESHOLDS`]), so within every class
//! each attribute splits the images about in half: "a dark coat" is dark *for a coat*. A trouser is narrower than any
//! coat; a global threshold would make "slim" a synonym of the trouser class and teach the text encoder nothing.
//!
//! ## Templates
//!
//! [`TRAIN_TEMPLATES`] are the sentences training draws from; [`HELD_OUT_TEMPLATES`] are never used in training, so a
//! text encoder can be tested on phrasings it has not seen. `{tone}`, `{build}`, `{texture}` and `{class}` are filled
//! in, and `{a}` becomes "a" or "an" to suit the word after it.

use std::fs;
use std::path::Path;

use super::error::{DataError, Result};
use super::image_folder::image_file_names;

/// Fashion-MNIST's class names as captions spell them, by label.
pub const FASHION_CLASSES: [&str; 10] = [
    "t-shirt",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle boot",
];

/// Per class (by label): the (tone, coverage, texture) thresholds, the training subset's medians (see the module
/// documentation; `make_subset.py`'s first 10,000 training images).
pub const FASHION_THRESHOLDS: [[f32; 3]; 10] = [
    [0.641, 0.538, 0.079],
    [0.699, 0.319, 0.120],
    [0.664, 0.608, 0.087],
    [0.690, 0.388, 0.101],
    [0.729, 0.575, 0.093],
    [0.515, 0.245, 0.171],
    [0.598, 0.588, 0.089],
    [0.586, 0.283, 0.135],
    [0.692, 0.538, 0.091],
    [0.700, 0.429, 0.108],
];

/// The grey value above which a pixel counts as ink.
pub const INK_THRESHOLD: f32 = 0.1;

/// The sentences captions are drawn from in training.
pub const TRAIN_TEMPLATES: [&str; 6] = [
    "{a} {tone} {build} {texture} {class}",
    "a photo of {a} {tone} {class}",
    "{a} {build} {class}, {texture}",
    "{a} {texture} {class} that is {tone}",
    "a {tone} and {build} {class}",
    "an image of {a} {build} {texture} {tone} {class}",
];

/// Sentences kept out of training, for testing a text encoder on unseen phrasings.
pub const HELD_OUT_TEMPLATES: [&str; 3] = [
    "a picture of {a} {texture} {tone} {class}",
    "this {class} is {build} and {tone}",
    "{a} {class}: {tone}, {texture}, {build}",
];

/// The zero-shot prompt of a class: "a photo of a {class}" (with "an" before a vowel).
pub fn class_prompt(class: &str) -> String {
    fill("a photo of {a} {class}", class, None)
}

/// The three measures of one image (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Measures {
    pub tone: f32,
    pub coverage: f32,
    pub texture: f32,
}

/// The attributes of one image, each a word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attributes {
    /// "dark" or "light".
    pub tone: &'static str,
    /// "slim" or "wide".
    pub build: &'static str,
    /// "plain" or "patterned".
    pub texture: &'static str,
}

/// Measures one image of `channels × height × width` values in `[-1, 1]` (planar, as [`super::Dataset`] holds them).
pub fn measure(image: &[f32], channels: usize, height: usize, width: usize) -> Result<Measures> {
    let plane = height * width;
    if plane == 0 || channels == 0 || image.len() != channels * plane {
        return Err(DataError::new(format!(
            "an image of {} values is not {channels}×{height}×{width}",
            image.len()
        )));
    }
    let grey: Vec<f32> = (0..plane)
        .map(|p| {
            let sum: f32 = (0..channels).map(|c| image[c * plane + p]).sum();
            (sum / channels as f32 + 1.0) / 2.0
        })
        .collect();
    let ink = |p: usize| grey[p] > INK_THRESHOLD;
    let (mut ink_count, mut ink_sum) = (0usize, 0f64);
    let (mut pairs, mut differences) = (0usize, 0f64);
    for y in 0..height {
        for x in 0..width {
            let p = y * width + x;
            if !ink(p) {
                continue;
            }
            ink_count += 1;
            ink_sum += f64::from(grey[p]);
            for q in [
                (x + 1 < width).then(|| p + 1),
                (y + 1 < height).then(|| p + width),
            ]
            .into_iter()
            .flatten()
            {
                if ink(q) {
                    pairs += 1;
                    differences += f64::from((grey[p] - grey[q]).abs());
                }
            }
        }
    }
    Ok(Measures {
        tone: if ink_count == 0 {
            0.0
        } else {
            (ink_sum / ink_count as f64) as f32
        },
        coverage: ink_count as f32 / plane as f32,
        texture: if pairs == 0 {
            0.0
        } else {
            (differences / pairs as f64) as f32
        },
    })
}

/// The attribute words of measures `m` against one class's `[tone, coverage, texture]` thresholds.
pub fn attributes(m: &Measures, [tone, coverage, texture]: [f32; 3]) -> Attributes {
    Attributes {
        tone: if m.tone < tone { "dark" } else { "light" },
        build: if m.coverage < coverage {
            "slim"
        } else {
            "wide"
        },
        texture: if m.texture < texture {
            "plain"
        } else {
            "patterned"
        },
    }
}

/// The attributes of a Fashion-MNIST image of class `label`, or an error for a label outside 0–9.
pub fn fashion_attributes(
    image: &[f32],
    label: u32,
    height: usize,
    width: usize,
) -> Result<Attributes> {
    let thresholds = FASHION_THRESHOLDS.get(label as usize).ok_or_else(|| {
        DataError::new(format!(
            "label {label} is not a Fashion-MNIST class (0–9); give the folder a captions.txt instead"
        ))
    })?;
    Ok(attributes(&measure(image, 1, height, width)?, *thresholds))
}

/// `template` with `{class}` = `class` and, when given, the attribute words; `{a}` becomes "a" or "an" after the rest
/// is filled in.
pub fn fill(template: &str, class: &str, attributes: Option<&Attributes>) -> String {
    let mut text = template.replace("{class}", class);
    if let Some(a) = attributes {
        text = text
            .replace("{tone}", a.tone)
            .replace("{build}", a.build)
            .replace("{texture}", a.texture);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(at) = rest.find("{a}") {
        out.push_str(&rest[..at]);
        rest = &rest[at + 3..];
        let next = rest.trim_start().chars().next();
        out.push_str(if next.is_some_and(|c| "aeiou".contains(c)) {
            "an"
        } else {
            "a"
        });
    }
    out.push_str(rest);
    out
}

/// The caption of a Fashion-MNIST image: class `label`, attributes `attributes`, sentence `template`.
pub fn fashion_caption(label: u32, attributes: &Attributes, template: &str) -> Result<String> {
    let class = FASHION_CLASSES.get(label as usize).ok_or_else(|| {
        DataError::new(format!("label {label} is not a Fashion-MNIST class (0–9)"))
    })?;
    Ok(fill(template, class, Some(attributes)))
}

/// The captions of the PNG images of `dir`, in the folder reader's (file-name) order, from `captions.txt` or
/// `captions.csv` there, or `None` when the folder has neither.
///
/// Each line is `filename,caption`: the file name ends at the first comma, so a caption may hold commas; a caption in
/// double quotes has them removed. Blank lines, `#` comments and a `filename,caption` header are skipped; every image
/// needs exactly one caption.
pub fn read_folder_captions(dir: &Path) -> Result<Option<Vec<String>>> {
    let candidates: Vec<_> = ["captions.txt", "captions.csv"]
        .iter()
        .map(|name| dir.join(name))
        .filter(|path| path.is_file())
        .collect();
    let path = match candidates.as_slice() {
        [] => return Ok(None),
        [one] => one,
        _ => {
            return Err(DataError::at(
                dir,
                "both captions.txt and captions.csv exist; keep only one",
            ))
        }
    };
    let files = image_file_names(dir)?;
    let text =
        fs::read_to_string(path).map_err(|e| DataError::at(path, format!("cannot read: {e}")))?;
    let mut captions: Vec<Option<String>> = vec![None; files.len()];
    for (index, raw_line) in text.lines().enumerate() {
        let line = raw_line.trim();
        if line.is_empty() || line.starts_with('#') || line.eq_ignore_ascii_case("filename,caption")
        {
            continue;
        }
        let line_error =
            |message: String| DataError::at(path, format!("line {}: {message}", index + 1));
        let (name, caption) = line
            .split_once(',')
            .ok_or_else(|| line_error(format!("expected `filename,caption`, found {line:?}")))?;
        let (name, caption) = (name.trim(), caption.trim());
        let caption = caption
            .strip_prefix('"')
            .and_then(|c| c.strip_suffix('"'))
            .unwrap_or(caption);
        let slot = files
            .binary_search_by(|f| f.as_str().cmp(name))
            .map_err(|_| line_error(format!("{name:?} is not an image file in the folder")))?;
        if captions[slot].replace(caption.to_string()).is_some() {
            return Err(line_error(format!("{name:?} has two captions")));
        }
    }
    files
        .iter()
        .zip(captions)
        .map(|(name, caption)| {
            caption.ok_or_else(|| DataError::at(path, format!("image {name:?} has no caption")))
        })
        .collect::<Result<Vec<_>>>()
        .map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn articles_follow_the_next_word() {
        assert_eq!(class_prompt("ankle boot"), "a photo of an ankle boot");
        assert_eq!(class_prompt("coat"), "a photo of a coat");
        let a = Attributes {
            tone: "dark",
            build: "wide",
            texture: "plain",
        };
        assert_eq!(
            fashion_caption(9, &a, TRAIN_TEMPLATES[3]).unwrap(),
            "a plain ankle boot that is dark"
        );
        assert_eq!(
            fashion_caption(1, &a, HELD_OUT_TEMPLATES[2]).unwrap(),
            "a trouser: dark, plain, wide"
        );
        assert!(fashion_caption(10, &a, TRAIN_TEMPLATES[0]).is_err());
    }

    #[test]
    fn measures_of_a_known_image() {
        // 2×3 image, grey values [[0, 0.5, 1], [0.5, 0.5, 0]]: ink = four pixels, tone = 2.5 / 4,
        // pairs (0,1)-(0,2) |0.5−1| and (0,1)-(1,1) 0 and (1,0)-(1,1) 0 → texture 0.5 / 3.
        let grey = [0.0f32, 0.5, 1.0, 0.5, 0.5, 0.0];
        let image: Vec<f32> = grey.iter().map(|v| v * 2.0 - 1.0).collect();
        let m = measure(&image, 1, 2, 3).unwrap();
        assert!((m.tone - 0.625).abs() < 1e-6);
        assert!((m.coverage - 4.0 / 6.0).abs() < 1e-6);
        assert!((m.texture - 0.5 / 3.0).abs() < 1e-6);
        assert!(measure(&image, 1, 3, 3).is_err());
        let blank = measure(&[-1.0; 4], 1, 2, 2).unwrap();
        assert_eq!((blank.tone, blank.coverage, blank.texture), (0.0, 0.0, 0.0));
    }
}
