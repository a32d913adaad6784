//! A grid of images as one PNG: images in [−1, 1] (N, C, H, W) laid out row-major in `columns` columns with a
//! 2-pixel border, quantised to 8 bits as (x + 1)·127.5 rounded and clamped.

use std::path::Path;

pub struct Grid<'a> {
    /// N·C·H·W values in [−1, 1].
    pub pixels: &'a [f32],
    pub count: usize,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub columns: usize,
}

const PAD: usize = 2;

impl Grid<'_> {
    /// Encodes the grid as PNG bytes (grey for one channel, RGB for three).
    pub fn to_png(&self) -> Result<Vec<u8>, String> {
        let (c, h, w) = (self.channels, self.height, self.width);
        if c != 1 && c != 3 {
            return Err(format!("a grid needs 1 or 3 channels, got {c}"));
        }
        if self.pixels.len() != self.count * c * h * w {
            return Err(format!(
                "{} values do not make {} images of {c}×{h}×{w}",
                self.pixels.len(),
                self.count
            ));
        }
        let columns = self.columns.clamp(1, self.count.max(1));
        let rows = self.count.div_ceil(columns).max(1);
        let (gw, gh) = (columns * (w + PAD) + PAD, rows * (h + PAD) + PAD);
        let mut canvas = vec![255u8; gw * gh * c];
        for n in 0..self.count {
            let (oy, ox) = (
                PAD + (n / columns) * (h + PAD),
                PAD + (n % columns) * (w + PAD),
            );
            for ch in 0..c {
                for y in 0..h {
                    for x in 0..w {
                        let v = self.pixels[((n * c + ch) * h + y) * w + x];
                        canvas[((oy + y) * gw + ox + x) * c + ch] =
                            ((v + 1.0) * 127.5).round().clamp(0.0, 255.0) as u8;
                    }
                }
            }
        }
        let mut bytes = Vec::new();
        let mut encoder = png::Encoder::new(&mut bytes, gw as u32, gh as u32);
        encoder.set_color(if c == 1 {
            png::ColorType::Grayscale
        } else {
            png::ColorType::Rgb
        });
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().map_err(|e| e.to_string())?;
        writer
            .write_image_data(&canvas)
            .map_err(|e| e.to_string())?;
        writer.finish().map_err(|e| e.to_string())?;
        Ok(bytes)
    }

    pub fn save(&self, path: &Path) -> Result<(), String> {
        let bytes = self.to_png()?;
        crate::files::write_atomically(path, &bytes)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))
    }
}
