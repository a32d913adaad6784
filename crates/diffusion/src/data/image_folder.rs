//! A folder of images as a dataset: every `.png`, `.jpg` or `.jpeg` file inside the folder or any folder below it
//! (names starting with `.` are skipped), in path order, decoded by [`super::image_file`].
//!
//! - Channels: `--channels 1|3`, or by default 1 when every image is grey and 3 when any is in colour.
//! - Size: `--resolution N` resizes each image's short side to N and keeps the centred N×N square; without it every
//!   image must already have the size of the first.
//! - Labels: `labels.txt` or `labels.csv` in the folder, one `path,label` line per image, the path relative to the
//!   folder with `/` between folder names (blank lines, `#` comments and a `filename,label` header are skipped; with a
//!   labels file every image needs exactly one label). Without one, when every image lies in a sub-folder and there
//!   are at least two sub-folders, each sub-folder is a class, numbered in name order. Otherwise no labels.
//!
//! A file that cannot be read or decoded, an image of the wrong size and an empty folder are errors naming the file
//! or folder. [`ImageFolder::summary`] says what was found, for a line before training.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::error::{DataError, Result};
use super::image_file::read_image;

/// The file extensions read, in any letter case.
pub const IMAGE_EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];

/// How to turn a folder's images into one shape.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FolderOptions {
    /// Resize the short side to this and centre-crop to a square.
    pub resolution: Option<usize>,
    /// 1 (grey) or 3 (RGB); `None`: 1 if every image is grey, else 3.
    pub channels: Option<usize>,
}

/// Where the labels came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LabelSource {
    None,
    File(PathBuf),
    /// The class names, in label order.
    Subfolders(Vec<String>),
}

/// What a folder held: image counts per stored size and mode, and where the labels came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderSummary {
    pub dir: PathBuf,
    /// (width, height, mode such as `RGB 8-bit PNG`) → images.
    pub kinds: BTreeMap<(usize, usize, String), usize>,
    /// Files skipped because their extension is not an image's.
    pub skipped: usize,
    pub labels: LabelSource,
    pub num_classes: usize,
    /// The shape every image was made: channels, height, width.
    pub shape: (usize, usize, usize),
    pub resized: bool,
}

impl fmt::Display for FolderSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count: usize = self.kinds.values().sum();
        // The most common kinds by name; the rest counted together, so that a folder of photos of a hundred sizes
        // still gives one line.
        let mut by_count: Vec<_> = self.kinds.iter().collect();
        by_count.sort_by_key(|&(_, n)| std::cmp::Reverse(*n));
        let mut kinds: Vec<String> = by_count
            .iter()
            .take(SUMMARY_KINDS)
            .map(|((w, h, mode), n)| format!("{n} × {w}×{h} {mode}"))
            .collect();
        if by_count.len() > SUMMARY_KINDS {
            let rest = &by_count[SUMMARY_KINDS..];
            let images: usize = rest.iter().map(|&(_, n)| n).sum();
            kinds.push(format!("{images} of {} other sizes and modes", rest.len()));
        }
        write!(
            f,
            "{}: {count} images ({})",
            self.dir.display(),
            kinds.join(", ")
        )?;
        if self.skipped > 0 {
            write!(f, ", {} other files skipped", self.skipped)?;
        }
        match &self.labels {
            LabelSource::None => write!(f, "; no labels")?,
            LabelSource::File(path) => {
                write!(f, "; {} classes from {}", self.num_classes, path.display())?
            }
            LabelSource::Subfolders(names) => write!(
                f,
                "; {} classes from the sub-folders {}",
                names.len(),
                names.join(", ")
            )?,
        }
        let (c, h, w) = self.shape;
        let how = if self.resized {
            "resized and centre-cropped to"
        } else {
            "as"
        };
        write!(f, "; {how} {c}×{h}×{w}")
    }
}

/// Kinds (size and mode) named one by one in the summary.
const SUMMARY_KINDS: usize = 4;

/// The decoded contents of an image folder.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageFolder {
    /// Paths relative to the folder, `/`-separated, in the order the images are stored.
    pub files: Vec<String>,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    /// `files.len() × channels × height × width` values in `[-1, 1]`, planar per image.
    pub values: Vec<f32>,
    /// One label per file when the folder has labels.
    pub labels: Option<Vec<u32>>,
    pub summary: FolderSummary,
}

/// Reads every image in `dir` and below, shaped by `options`, with its labels if it has any.
pub fn read_image_folder(dir: &Path, options: &FolderOptions) -> Result<ImageFolder> {
    if let Some(channels) = options.channels.filter(|&c| c != 1 && c != 3) {
        return Err(DataError::new(format!(
            "--channels {channels}: expected 1 (grey) or 3 (RGB)"
        )));
    }
    if options.resolution == Some(0) {
        return Err(DataError::new(
            "--resolution 0: expected a side of at least one pixel",
        ));
    }
    let listing = list_images(dir)?;
    // Decoded and converted one at a time (a folder of large photos is never held decoded); without --channels as
    // RGB, reduced to one plane below when every image turns out grey (whose RGB planes are equal).
    let converted: Vec<Converted> = listing
        .files
        .par_iter()
        .map(|name| {
            let image = read_image(&dir.join(name))?;
            Ok(Converted {
                width: image.width(),
                height: image.height(),
                mode: image.mode(),
                has_color: image.has_color(),
                values: image.planar(options.channels.unwrap_or(3), options.resolution),
            })
        })
        .collect::<Result<_>>()?;
    let any_color = converted.iter().any(|image| image.has_color);
    let channels = options.channels.unwrap_or(if any_color { 3 } else { 1 });
    let (height, width) = match options.resolution {
        Some(side) => (side, side),
        None => {
            let first = &converted[0];
            for (name, image) in listing.files.iter().zip(&converted) {
                if (image.width, image.height) != (first.width, first.height) {
                    return Err(DataError::at(
                        &dir.join(name),
                        format!(
                            "the image is {}×{} (width×height) but {} is {}×{}; pass --resolution N to resize \
                             every image to N×N",
                            image.width, image.height, listing.files[0], first.width, first.height
                        ),
                    ));
                }
            }
            (first.height, first.width)
        }
    };
    let mut kinds = BTreeMap::new();
    for image in &converted {
        *kinds
            .entry((image.width, image.height, image.mode.clone()))
            .or_insert(0) += 1;
    }
    let resized = converted
        .iter()
        .any(|image| (image.height, image.width) != (height, width));
    let kept = channels * height * width;
    let mut values = Vec::with_capacity(converted.len() * kept);
    for image in converted {
        values.extend_from_slice(&image.values[..kept]);
    }
    let (labels, source) = match labels_file(dir)? {
        Some(path) => (
            Some(read_labels(&path, &listing.files)?),
            LabelSource::File(path),
        ),
        None => match subfolder_classes(&listing.files) {
            Some((labels, names)) => (Some(labels), LabelSource::Subfolders(names)),
            None => (None, LabelSource::None),
        },
    };
    let num_classes = labels
        .as_ref()
        .and_then(|labels| labels.iter().max())
        .map_or(0, |&max| max as usize + 1);
    let summary = FolderSummary {
        dir: dir.to_path_buf(),
        kinds,
        skipped: listing.skipped,
        labels: source,
        num_classes,
        shape: (channels, height, width),
        resized,
    };
    Ok(ImageFolder {
        files: listing.files,
        channels,
        height,
        width,
        values,
        labels,
        summary,
    })
}

/// One image as converted, with what it was stored as.
struct Converted {
    width: usize,
    height: usize,
    mode: String,
    has_color: bool,
    values: Vec<f32>,
}

/// The image files found below a folder, and how many other files were passed over.
struct Listing {
    files: Vec<String>,
    skipped: usize,
}

/// The relative paths of the image files in `dir` and below, in the order [`read_image_folder`] stores the images;
/// an error if there are none.
pub fn image_file_names(dir: &Path) -> Result<Vec<String>> {
    Ok(list_images(dir)?.files)
}

/// The sorted relative paths of the image files in `dir` and below; an error if there are none.
fn list_images(dir: &Path) -> Result<Listing> {
    let mut listing = Listing {
        files: Vec::new(),
        skipped: 0,
    };
    walk(dir, "", &mut listing)?;
    if listing.files.is_empty() {
        return Err(DataError::at(
            dir,
            "the folder holds no images (.png, .jpg or .jpeg files, in it or in any folder below it)",
        ));
    }
    listing.files.sort();
    Ok(listing)
}

fn walk(dir: &Path, prefix: &str, listing: &mut Listing) -> Result<()> {
    let list_error = |e: std::io::Error| DataError::at(dir, format!("cannot list: {e}"));
    for entry in fs::read_dir(dir).map_err(list_error)? {
        let entry = entry.map_err(list_error)?;
        let path = entry.path();
        let name = entry
            .file_name()
            .into_string()
            .map_err(|raw| DataError::at(&path, format!("file name {raw:?} is not UTF-8")))?;
        if name.starts_with('.') {
            continue;
        }
        let relative = format!("{prefix}{name}");
        if path.is_dir() {
            walk(&path, &format!("{relative}/"), listing)?;
        } else if is_image_name(&name) {
            listing.files.push(relative);
        } else if !prefix.is_empty() || !LABEL_FILES.contains(&name.as_str()) {
            listing.skipped += 1;
        }
    }
    Ok(())
}

fn is_image_name(name: &str) -> bool {
    Path::new(name)
        .extension()
        .and_then(|ext| ext.to_str())
        .is_some_and(|ext| {
            IMAGE_EXTENSIONS
                .iter()
                .any(|known| ext.eq_ignore_ascii_case(known))
        })
}

/// The labels files a folder may hold.
const LABEL_FILES: [&str; 2] = ["labels.txt", "labels.csv"];

/// `labels.txt` or `labels.csv` inside `dir`, if exactly one exists.
fn labels_file(dir: &Path) -> Result<Option<PathBuf>> {
    let candidates: Vec<PathBuf> = LABEL_FILES
        .iter()
        .map(|name| dir.join(name))
        .filter(|path| path.is_file())
        .collect();
    match candidates.len() {
        0 => Ok(None),
        1 => Ok(candidates.into_iter().next()),
        _ => Err(DataError::at(
            dir,
            "both labels.txt and labels.csv exist; keep only one",
        )),
    }
}

/// Class labels from the first folder of each path, when every file lies in a sub-folder and there are two or more.
fn subfolder_classes(files: &[String]) -> Option<(Vec<u32>, Vec<String>)> {
    let folders: Vec<&str> = files
        .iter()
        .map(|file| file.split_once('/').map(|(folder, _)| folder))
        .collect::<Option<_>>()?;
    let names: Vec<String> = folders
        .iter()
        .copied()
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .map(String::from)
        .collect();
    if names.len() < 2 {
        return None;
    }
    let index: HashMap<&str, u32> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_str(), i as u32))
        .collect();
    Some((folders.iter().map(|f| index[f]).collect(), names))
}

/// Parses `path,label` lines and returns the labels in the order of `files`.
fn read_labels(path: &Path, files: &[String]) -> Result<Vec<u32>> {
    let text =
        fs::read_to_string(path).map_err(|e| DataError::at(path, format!("cannot read: {e}")))?;
    let known: HashSet<&str> = files.iter().map(String::as_str).collect();
    let mut by_name: HashMap<String, u32> = HashMap::new();
    for (index, raw_line) in text.lines().enumerate() {
        let line_number = index + 1;
        let line = raw_line.trim();
        if line.is_empty() || line.starts_with('#') || line.eq_ignore_ascii_case("filename,label") {
            continue;
        }
        let line_error =
            |message: String| DataError::at(path, format!("line {line_number}: {message}"));
        let (name, label) = line
            .rsplit_once(',')
            .ok_or_else(|| line_error(format!("expected `filename,label`, found {line:?}")))?;
        let name = name.trim();
        let label: u32 = label.trim().parse().map_err(|_| {
            line_error(format!(
                "label {:?} is not a non-negative integer",
                label.trim()
            ))
        })?;
        if !known.contains(name) {
            return Err(line_error(format!(
                "{name:?} is not an image file in the folder"
            )));
        }
        if by_name.insert(name.to_string(), label).is_some() {
            return Err(line_error(format!("{name:?} is labelled twice")));
        }
    }
    files
        .iter()
        .map(|name| {
            by_name
                .get(name)
                .copied()
                .ok_or_else(|| DataError::at(path, format!("image {name:?} has no label")))
        })
        .collect()
}
