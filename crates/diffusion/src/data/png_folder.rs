//! A folder of PNG images as a dataset: every `*.png` directly inside the folder, in file-name order, with optional labels.
//!
//! Images must be 8-bit (palette and low-bit-depth images are expanded to 8 bits) and all share one size and one channel
//! count. Grey images give 1 channel, colour images 3; an alpha channel is dropped, since diffusion models here are trained
//! on opaque images. Pixels are returned planar, `N×C×H×W`, the layout the models consume.
//!
//! Labels, if wanted, live in `labels.txt` or `labels.csv` beside the images, one `filename,label` line per image
//! (blank lines, `#` comments and a `filename,label` header line are skipped). With a labels file every image needs
//! exactly one label.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use super::error::{DataError, Result};

/// The most bytes one decoded image may take (64 MiB, the `png` decoder's own default limit): 4096 × 4096 RGBA.
pub const MAX_DECODED_BYTES: usize = 64 << 20;

/// The decoded contents of a PNG folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PngFolder {
    /// File names (without folder), in the order the images are stored.
    pub files: Vec<String>,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    /// `files.len() × channels × height × width` bytes, planar per image.
    pub pixels: Vec<u8>,
    /// One label per file when the folder has a labels file.
    pub labels: Option<Vec<u32>>,
}

/// Reads every PNG directly inside `dir`, plus its labels file if there is one.
pub fn read_png_folder(dir: &Path) -> Result<PngFolder> {
    let files = png_file_names(dir)?;
    let mut channels = 0;
    let mut height = 0;
    let mut width = 0;
    let mut pixels = Vec::new();
    for (index, name) in files.iter().enumerate() {
        let path = dir.join(name);
        let image = decode_png(&path)?;
        if index == 0 {
            (channels, height, width) = (image.channels, image.height, image.width);
        } else if (image.channels, image.height, image.width) != (channels, height, width) {
            return Err(DataError::at(
                &path,
                format!(
                    "image is {}×{}×{} (channels×height×width) but {} is {channels}×{height}×{width}",
                    image.channels, image.height, image.width, files[0]
                ),
            ));
        }
        pixels.extend_from_slice(&image.planar);
    }
    let labels = match labels_file(dir)? {
        Some(path) => Some(read_labels(&path, &files)?),
        None => None,
    };
    Ok(PngFolder {
        files,
        channels,
        height,
        width,
        pixels,
        labels,
    })
}

/// The sorted names of the `.png` files (any letter case) directly inside `dir`; an error if there are none.
pub(crate) fn png_file_names(dir: &Path) -> Result<Vec<String>> {
    let entries = fs::read_dir(dir).map_err(|e| DataError::at(dir, format!("cannot list: {e}")))?;
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| DataError::at(dir, format!("cannot list: {e}")))?;
        let path = entry.path();
        let is_png = path
            .extension()
            .is_some_and(|ext| ext.eq_ignore_ascii_case("png"));
        if !is_png || !path.is_file() {
            continue;
        }
        let name = entry
            .file_name()
            .into_string()
            .map_err(|raw| DataError::at(&path, format!("file name {raw:?} is not UTF-8")))?;
        names.push(name);
    }
    if names.is_empty() {
        return Err(DataError::at(dir, "the folder holds no .png files"));
    }
    names.sort();
    Ok(names)
}

/// One decoded image: 1 (grey) or 3 (colour) channels of 8-bit samples, planar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PngImage {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    /// `channels × height × width` bytes.
    pub planar: Vec<u8>,
}

fn decode_png(path: &Path) -> Result<PngImage> {
    let file = File::open(path).map_err(|e| DataError::at(path, format!("cannot open: {e}")))?;
    decode_png_image(BufReader::new(file), path)
}

/// Decodes the bytes of one PNG file from `reader` under the rules of the folder reader; errors name `path`.
pub fn decode_png_image(reader: impl Read, path: &Path) -> Result<PngImage> {
    let mut decoder = png::Decoder::new(reader);
    decoder.set_transformations(png::Transformations::EXPAND);
    let mut reader = decoder
        .read_info()
        .map_err(|e| DataError::at(path, format!("not a valid PNG: {e}")))?;
    // The header alone decides the buffer size: a 60-byte file may claim 28 × 4 294 967 044 pixels. Refuse anything
    // beyond the limit the decoder applies to its own allocations before allocating.
    let decoded_bytes = reader.output_buffer_size();
    if decoded_bytes > MAX_DECODED_BYTES {
        let info = reader.info();
        return Err(DataError::at(
            path,
            format!(
                "the header declares {}×{} pixels ({decoded_bytes} bytes decoded), more than the {MAX_DECODED_BYTES} \
                 bytes allowed per image",
                info.width, info.height
            ),
        ));
    }
    let mut buffer = vec![0u8; decoded_bytes];
    let frame = reader
        .next_frame(&mut buffer)
        .map_err(|e| DataError::at(path, format!("not a valid PNG: {e}")))?;
    if frame.bit_depth != png::BitDepth::Eight {
        return Err(DataError::at(
            path,
            format!(
                "{}-bit samples are not supported; save the image with 8 bits per channel",
                frame.bit_depth as u8
            ),
        ));
    }
    // Samples per pixel as stored, and how many of them we keep (alpha is dropped).
    let (stored, kept) = match frame.color_type {
        png::ColorType::Grayscale => (1, 1),
        png::ColorType::GrayscaleAlpha => (2, 1),
        png::ColorType::Rgb => (3, 3),
        png::ColorType::Rgba => (4, 3),
        png::ColorType::Indexed => {
            return Err(DataError::at(path, "palette image was not expanded to RGB"));
        }
    };
    let height =
        usize::try_from(frame.height).map_err(|_| DataError::at(path, "height overflows usize"))?;
    let width =
        usize::try_from(frame.width).map_err(|_| DataError::at(path, "width overflows usize"))?;
    let plane = height
        .checked_mul(width)
        .ok_or_else(|| DataError::at(path, format!("{height}×{width} pixels overflow usize")))?;
    let row_bytes = width
        .checked_mul(stored)
        .filter(|&bytes| bytes > 0 && bytes <= frame.line_size)
        .ok_or_else(|| DataError::at(path, "decoded rows are shorter than the image width"))?;
    // `plane * kept` cannot overflow: the decoder already holds `plane * stored >= plane * kept` bytes.
    let mut planar = vec![0u8; plane * kept];
    for (y, row) in buffer.chunks(frame.line_size).take(height).enumerate() {
        let row = row
            .get(..row_bytes)
            .ok_or_else(|| DataError::at(path, "decoded image data is shorter than its size"))?;
        for (x, pixel) in row.chunks_exact(stored).enumerate() {
            for (c, &sample) in pixel[..kept].iter().enumerate() {
                planar[c * plane + y * width + x] = sample;
            }
        }
    }
    Ok(PngImage {
        channels: kept,
        height,
        width,
        planar,
    })
}

/// `labels.txt` or `labels.csv` inside `dir`, if exactly one exists.
fn labels_file(dir: &Path) -> Result<Option<PathBuf>> {
    let candidates: Vec<PathBuf> = ["labels.txt", "labels.csv"]
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

/// Parses `filename,label` lines and returns the labels in the order of `files`.
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
                "{name:?} is not a .png file in the folder"
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
