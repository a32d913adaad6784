//! PNG bytes in and out: encoding the drawn buffer, writing it atomically, and reading a PNG back for the structural
//! checks of the tests (size, how much of a region is drawn on).

use crate::PlotError;
use std::io::Write;
use std::path::Path;

/// 8-bit RGB `rgb` (`width·height·3` bytes, rows top to bottom) as PNG bytes.
pub(crate) fn encode_png(rgb: &[u8], width: u32, height: u32) -> Result<Vec<u8>, PlotError> {
    let mut bytes = Vec::new();
    let mut encoder = png::Encoder::new(&mut bytes, width, height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let fail = |e: png::EncodingError| PlotError::new(format!("PNG encoding failed: {e}"));
    let mut writer = encoder.write_header().map_err(fail)?;
    writer.write_image_data(rgb).map_err(fail)?;
    writer.finish().map_err(fail)?;
    Ok(bytes)
}

/// Writes `bytes` to `path` through a temporary file in the same folder, synced and renamed into place, so a reader
/// sees the old file or the new one, never half of one.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), PlotError> {
    let fail = |e: std::io::Error| PlotError::new(format!("cannot write {}: {e}", path.display()));
    let name = path
        .file_name()
        .ok_or_else(|| PlotError::new(format!("{} is not a file name", path.display())))?;
    let tmp = path.with_file_name(format!(".{}.tmp", name.to_string_lossy()));
    let mut file = std::fs::File::create(&tmp).map_err(fail)?;
    file.write_all(bytes).map_err(fail)?;
    file.sync_all().map_err(fail)?;
    std::fs::rename(&tmp, path).map_err(fail)
}

/// A decoded PNG, for checking a drawn figure.
pub struct PngSummary {
    pub width: u32,
    pub height: u32,
    /// 8-bit RGB, rows top to bottom.
    pub rgb: Vec<u8>,
}

impl PngSummary {
    /// The fraction of pixels in columns `x0..x1` and rows `y0..y1` (clamped to the image) that are not white.
    pub fn ink(&self, (x0, x1): (u32, u32), (y0, y1): (u32, u32)) -> f64 {
        let (x1, y1) = (x1.min(self.width), y1.min(self.height));
        if x0 >= x1 || y0 >= y1 {
            return 0.0;
        }
        let mut inked = 0usize;
        for y in y0..y1 {
            for x in x0..x1 {
                let i = 3 * (y as usize * self.width as usize + x as usize);
                if self.rgb[i..i + 3] != [255, 255, 255] {
                    inked += 1;
                }
            }
        }
        inked as f64 / ((x1 - x0) as usize * (y1 - y0) as usize) as f64
    }

    /// How many pixels have exactly colour `rgb`.
    pub fn count(&self, rgb: [u8; 3]) -> usize {
        self.rgb.chunks_exact(3).filter(|p| *p == rgb).count()
    }
}

/// Decodes `bytes` as an 8-bit RGB PNG (the format [`crate::Figure::png`] writes).
pub fn check_png(bytes: &[u8]) -> Result<PngSummary, PlotError> {
    let fail = |e: png::DecodingError| PlotError::new(format!("not a readable PNG: {e}"));
    let mut reader = png::Decoder::new(bytes).read_info().map_err(fail)?;
    let mut rgb = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut rgb).map_err(fail)?;
    if (info.color_type, info.bit_depth) != (png::ColorType::Rgb, png::BitDepth::Eight) {
        return Err(PlotError::new(format!(
            "expected 8-bit RGB, found {:?} at {:?}",
            info.color_type, info.bit_depth
        )));
    }
    rgb.truncate(info.buffer_size());
    Ok(PngSummary {
        width: info.width,
        height: info.height,
        rgb,
    })
}
