//! One image file (PNG of 8 or 16 bits, or JPEG; grey or colour) decoded through the `image` crate and turned into
//! planar values in `[-1, 1]` of a chosen channel count and, optionally, a square size.
//!
//! ```text
//! decode:   bytes → format sniffed from the content → header checked against MAX_DECODED_BYTES → pixels
//! channels: 1 = luma (Rec. 709 weights), 3 = RGB (grey repeated); an alpha channel is dropped
//! size:     --resolution N: resize so the short side is N (CatmullRom, which low-passes when it shrinks),
//!           then keep the centred N×N square; an image already N×N is left untouched
//! values:   8-bit sample b ↦ b / 127.5 − 1, 16-bit sample v ↦ v / 32767.5 − 1 (0 ↦ −1, full scale ↦ +1 exactly);
//!           a resized image is filtered in f32 on [0, 1] and mapped by 2x − 1
//! ```

use std::io::Cursor;
use std::path::Path;

use image::imageops::{self, FilterType};
use image::{ColorType, DynamicImage, ImageDecoder, ImageFormat, ImageReader};

use super::error::{DataError, Result};

/// The most bytes one decoded image may take (256 MiB: an 8192 × 8192 RGBA image of 8-bit samples).
pub const MAX_DECODED_BYTES: u64 = 256 << 20;

/// A decoded image and what it was stored as.
#[derive(Debug, Clone)]
pub struct DecodedImage {
    pub image: DynamicImage,
    /// `PNG` or `JPEG`.
    pub format: &'static str,
}

impl DecodedImage {
    pub fn width(&self) -> usize {
        self.image.width() as usize
    }

    pub fn height(&self) -> usize {
        self.image.height() as usize
    }

    /// Whether the image holds colour (as opposed to grey, with or without alpha).
    pub fn has_color(&self) -> bool {
        self.image.color().has_color()
    }

    /// How it was stored, e.g. `RGB 8-bit PNG`.
    pub fn mode(&self) -> String {
        let color = self.image.color();
        let layout = match (color.has_color(), color.has_alpha()) {
            (false, false) => "grey",
            (false, true) => "grey+alpha",
            (true, false) => "RGB",
            (true, true) => "RGBA",
        };
        let bits = color.bits_per_pixel() / u16::from(color.channel_count());
        format!("{layout} {bits}-bit {}", self.format)
    }

    /// The planar `channels × side × side` values (or `channels × height × width` without `resolution`) in
    /// `[-1, 1]`, as the module documentation describes.
    pub fn planar(&self, channels: usize, resolution: Option<usize>) -> Vec<f32> {
        let (width, height) = (self.image.width(), self.image.height());
        match resolution {
            Some(side) if (width as usize, height as usize) != (side, side) => {
                let side = side as u32;
                let (new_width, new_height) = short_side_to(width, height, side);
                let (left, top) = ((new_width - side) / 2, (new_height - side) / 2);
                let to_signed = |v: &f32| v * 2.0 - 1.0;
                if channels == 1 {
                    let luma = self.image.to_luma32f();
                    let resized =
                        imageops::resize(&luma, new_width, new_height, FilterType::CatmullRom);
                    let cropped = imageops::crop_imm(&resized, left, top, side, side).to_image();
                    cropped.as_raw().iter().map(to_signed).collect()
                } else {
                    let rgb = self.image.to_rgb32f();
                    let resized =
                        imageops::resize(&rgb, new_width, new_height, FilterType::CatmullRom);
                    let cropped = imageops::crop_imm(&resized, left, top, side, side).to_image();
                    planar_from_interleaved(cropped.as_raw(), 3, to_signed)
                }
            }
            _ => self.planar_unresized(channels),
        }
    }

    fn planar_unresized(&self, channels: usize) -> Vec<f32> {
        let sixteen_bit = matches!(
            self.image.color(),
            ColorType::L16 | ColorType::La16 | ColorType::Rgb16 | ColorType::Rgba16
        );
        let from_u8 = |b: &u8| f32::from(*b) / 127.5 - 1.0;
        let from_u16 = |v: &u16| f32::from(*v) / 32767.5 - 1.0;
        match (channels, sixteen_bit) {
            (1, false) => self.image.to_luma8().as_raw().iter().map(from_u8).collect(),
            (1, true) => self
                .image
                .to_luma16()
                .as_raw()
                .iter()
                .map(from_u16)
                .collect(),
            (_, false) => planar_from_interleaved(self.image.to_rgb8().as_raw(), 3, from_u8),
            (_, true) => planar_from_interleaved(self.image.to_rgb16().as_raw(), 3, from_u16),
        }
    }
}

/// The size after scaling `width × height` so that its short side is `side` (the long side rounded, at least `side`).
fn short_side_to(width: u32, height: u32, side: u32) -> (u32, u32) {
    let scale = |long: u32, short: u32| {
        let scaled = (f64::from(long) * f64::from(side) / f64::from(short)).round() as u32;
        scaled.max(side)
    };
    if width <= height {
        (side, scale(height, width))
    } else {
        (scale(width, height), side)
    }
}

/// Interleaved `H×W×C` samples to planar `C×H×W` values through `map`.
fn planar_from_interleaved<T>(samples: &[T], channels: usize, map: impl Fn(&T) -> f32) -> Vec<f32> {
    let plane = samples.len() / channels;
    let mut planar = vec![0.0; samples.len()];
    for (i, pixel) in samples.chunks_exact(channels).enumerate() {
        for (c, sample) in pixel.iter().enumerate() {
            planar[c * plane + i] = map(sample);
        }
    }
    planar
}

/// Decodes the bytes of one PNG or JPEG file; errors name `path`. The format is read from the content, not the name.
pub fn decode_image(bytes: &[u8], path: &Path) -> Result<DecodedImage> {
    let reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| DataError::at(path, format!("cannot read: {e}")))?;
    let format = match reader.format() {
        Some(ImageFormat::Png) => "PNG",
        Some(ImageFormat::Jpeg) => "JPEG",
        _ => return Err(DataError::at(path, "not a PNG or JPEG image")),
    };
    let invalid = |e: image::ImageError| DataError::at(path, format!("not a valid {format}: {e}"));
    let decoder = reader.into_decoder().map_err(invalid)?;
    // The header alone decides the buffer size: a 60-byte file may claim 28 × 4 294 967 044 pixels. Refuse anything
    // beyond the limit before the decoder allocates.
    let (width, height) = decoder.dimensions();
    let decoded_bytes = decoder.total_bytes();
    if decoded_bytes > MAX_DECODED_BYTES {
        return Err(DataError::at(
            path,
            format!(
                "the header declares {width}×{height} pixels ({decoded_bytes} bytes decoded), more than the \
                 {MAX_DECODED_BYTES} bytes allowed per image"
            ),
        ));
    }
    if width == 0 || height == 0 {
        return Err(DataError::at(
            path,
            format!("the image is {width}×{height} pixels: empty"),
        ));
    }
    let image = DynamicImage::from_decoder(decoder).map_err(invalid)?;
    Ok(DecodedImage { image, format })
}

/// Reads and decodes the image file at `path`.
pub fn read_image(path: &Path) -> Result<DecodedImage> {
    let bytes =
        std::fs::read(path).map_err(|e| DataError::at(path, format!("cannot read: {e}")))?;
    decode_image(&bytes, path)
}
