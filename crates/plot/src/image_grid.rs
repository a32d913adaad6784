//! Images in rows and columns, enlarged by a whole factor (nearest neighbour, so pixels stay pixels), with a label
//! left of each row and above each column.

use crate::font::FAMILY;
use crate::style::{LABEL_SIZE, TICK_SIZE, TITLE_SIZE};
use crate::PlotError;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// An 8-bit RGB image.
#[derive(Clone, Debug)]
pub struct RgbImage {
    pub width: u32,
    pub height: u32,
    /// `width·height·3` bytes, rows top to bottom.
    pub rgb: Vec<u8>,
}

impl RgbImage {
    /// A channel-first image (`channels` 1 or 3, `height`, `width`) with values in [−1, 1] (clamped), as diffuse
    /// keeps images, mapped to 0..255.
    pub fn from_signed_unit(
        channels: usize,
        height: usize,
        width: usize,
        values: &[f32],
    ) -> Result<RgbImage, PlotError> {
        if !(channels == 1 || channels == 3) || values.len() != channels * height * width {
            return Err(PlotError::new(format!(
                "an image of {channels}×{height}×{width} needs 1 or 3 channels and that many values, got {}",
                values.len()
            )));
        }
        let plane = height * width;
        let level = |v: f32| ((v.clamp(-1.0, 1.0) + 1.0) * 127.5).round() as u8;
        let rgb = (0..plane)
            .flat_map(|i| {
                let channel =
                    |c: usize| level(values[if channels == 1 { i } else { c * plane + i }]);
                [channel(0), channel(1), channel(2)]
            })
            .collect();
        Ok(RgbImage {
            width: width as u32,
            height: height as u32,
            rgb,
        })
    }

    /// The image enlarged `factor` times in each direction.
    fn enlarged(&self, factor: u32) -> Vec<u8> {
        let (w, f) = (self.width as usize, factor as usize);
        let mut out = Vec::with_capacity(self.rgb.len() * f * f);
        for row in self.rgb.chunks_exact(3 * w) {
            let wide: Vec<u8> = row
                .chunks_exact(3)
                .flat_map(|p| std::iter::repeat_n(p, f).flatten().copied())
                .collect();
            for _ in 0..f {
                out.extend_from_slice(&wide);
            }
        }
        out
    }
}

/// Images in `columns` columns, row by row, all of one size.
#[derive(Clone, Debug)]
pub struct ImageGrid {
    pub title: String,
    pub images: Vec<RgbImage>,
    pub columns: usize,
    /// One label per row (or none at all).
    pub row_labels: Vec<String>,
    /// One label per column (or none at all).
    pub column_labels: Vec<String>,
}

/// Pixels between images.
const GAP: u32 = 4;

impl ImageGrid {
    pub(crate) fn draw(
        &self,
        area: &DrawingArea<BitMapBackend<'_>, Shift>,
    ) -> Result<(), PlotError> {
        let Some(first) = self.images.first() else {
            return Err(PlotError::new(format!(
                "image grid \"{}\" has no images",
                self.title
            )));
        };
        let (w, h) = (first.width, first.height);
        if self.columns == 0 || self.images.iter().any(|i| (i.width, i.height) != (w, h)) {
            return Err(PlotError::new(format!(
                "image grid \"{}\": needs at least one column and images of one size",
                self.title
            )));
        }
        let rows = self.images.len().div_ceil(self.columns);
        if !(self.row_labels.is_empty() || self.row_labels.len() == rows)
            || !(self.column_labels.is_empty() || self.column_labels.len() == self.columns)
        {
            return Err(PlotError::new(format!(
                "image grid \"{}\": {} row labels for {rows} rows, {} column labels for {} columns",
                self.title,
                self.row_labels.len(),
                self.column_labels.len(),
                self.columns
            )));
        }
        let (width, height) = area.dim_in_pixel();
        let title_h = if self.title.is_empty() { 8 } else { 44 };
        // The row labels' column is as wide as the widest label (right-aligned, 10 pixels before the images, 10
        // after the edge), at most half the figure.
        let label_w = if self.row_labels.is_empty() {
            8
        } else {
            let font = (FAMILY, LABEL_SIZE).into_font();
            let mut widest = 0;
            for label in &self.row_labels {
                let (label_width, _) = font.box_size(label).map_err(PlotError::drawing)?;
                widest = widest.max(label_width);
            }
            (widest + 20).min(width / 2)
        };
        let column_h = if self.column_labels.is_empty() { 0 } else { 30 };
        let cols = self.columns as u32;
        let free_w = width.saturating_sub(label_w + 12 + GAP * cols);
        let free_h = height.saturating_sub(title_h + column_h + 8 + GAP * rows as u32);
        let factor = (free_w / (w * cols)).min(free_h / (h * rows as u32));
        if factor == 0 {
            return Err(PlotError::new(format!(
                "image grid \"{}\": {rows}×{cols} images of {w}×{h} do not fit in {width}×{height} pixels",
                self.title
            )));
        }
        let (cell_w, cell_h) = (w * factor + GAP, h * factor + GAP);
        let left = label_w + (free_w - w * factor * cols) / 2;
        let top = title_h + column_h;
        let text = |size: f64, h: HPos, v: VPos| {
            TextStyle::from((FAMILY, size).into_font()).pos(Pos::new(h, v))
        };
        if !self.title.is_empty() {
            area.draw_text(
                &self.title,
                &text(TITLE_SIZE, HPos::Center, VPos::Top),
                ((width / 2) as i32, 8),
            )
            .map_err(PlotError::drawing)?;
        }
        for (c, label) in self.column_labels.iter().enumerate() {
            let x = left + c as u32 * cell_w + w * factor / 2;
            area.draw_text(
                label,
                &text(TICK_SIZE, HPos::Center, VPos::Bottom),
                (x as i32, top as i32 - 6),
            )
            .map_err(PlotError::drawing)?;
        }
        for (r, label) in self.row_labels.iter().enumerate() {
            let y = top + r as u32 * cell_h + h * factor / 2;
            area.draw_text(
                label,
                &text(LABEL_SIZE, HPos::Right, VPos::Center),
                (left as i32 - 10, y as i32),
            )
            .map_err(PlotError::drawing)?;
        }
        for (k, image) in self.images.iter().enumerate() {
            let (r, c) = ((k / self.columns) as u32, (k % self.columns) as u32);
            let at = ((left + c * cell_w) as i32, (top + r * cell_h) as i32);
            let element = BitMapElement::with_owned_buffer(
                at,
                (w * factor, h * factor),
                image.enlarged(factor),
            )
            .ok_or_else(|| PlotError::new("an image buffer has the wrong length"))?;
            area.draw(&element).map_err(PlotError::drawing)?;
        }
        Ok(())
    }
}
