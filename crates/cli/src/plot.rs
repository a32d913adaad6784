//! The loss curve as a small PNG: the raw loss in light grey, its moving average in dark blue, on a log-scaled loss
//! axis with tick labels at the top and bottom decades, and the first and last step under the step axis. Text is
//! drawn with a 3×5 pixel font (digits, '.', 'e', '-'), scaled 2×.

use std::path::Path;

pub(crate) const W: usize = 560;
pub(crate) const H: usize = 320;
pub(crate) const LEFT: usize = 70;
pub(crate) const RIGHT: usize = 16;
pub(crate) const TOP: usize = 16;
pub(crate) const BOTTOM: usize = 40;

/// Rows of 3-bit glyphs, top to bottom.
fn glyph(c: char) -> Option<[u8; 5]> {
    Some(match c {
        '0' => [7, 5, 5, 5, 7],
        '1' => [2, 6, 2, 2, 7],
        '2' => [7, 1, 7, 4, 7],
        '3' => [7, 1, 7, 1, 7],
        '4' => [5, 5, 7, 1, 1],
        '5' => [7, 4, 7, 1, 7],
        '6' => [7, 4, 7, 5, 7],
        '7' => [7, 1, 1, 1, 1],
        '8' => [7, 5, 7, 5, 7],
        '9' => [7, 5, 7, 1, 7],
        '.' => [0, 0, 0, 0, 2],
        '-' => [0, 0, 7, 0, 0],
        'e' => [0, 7, 7, 4, 7],
        _ => return None,
    })
}

pub(crate) struct Canvas {
    rgb: Vec<u8>,
}

impl Canvas {
    pub(crate) fn set(&mut self, x: usize, y: usize, color: [u8; 3]) {
        if x < W && y < H {
            let i = (y * W + x) * 3;
            self.rgb[i..i + 3].copy_from_slice(&color);
        }
    }

    /// A straight line (Bresenham).
    pub(crate) fn line(&mut self, (x0, y0): (i64, i64), (x1, y1): (i64, i64), color: [u8; 3]) {
        let (dx, dy) = ((x1 - x0).abs(), -(y1 - y0).abs());
        let (sx, sy) = (if x0 < x1 { 1 } else { -1 }, if y0 < y1 { 1 } else { -1 });
        let (mut x, mut y, mut err) = (x0, y0, dx + dy);
        loop {
            if x >= 0 && y >= 0 {
                self.set(x as usize, y as usize, color);
            }
            if x == x1 && y == y1 {
                break;
            }
            let e2 = 2 * err;
            if e2 >= dy {
                err += dy;
                x += sx;
            }
            if e2 <= dx {
                err += dx;
                y += sy;
            }
        }
    }

    /// A blank white canvas of W×H pixels.
    pub(crate) fn white() -> Canvas {
        Canvas {
            rgb: vec![255; W * H * 3],
        }
    }

    /// The canvas as PNG bytes (8-bit RGB).
    pub(crate) fn png(&self) -> Result<Vec<u8>, String> {
        let mut bytes = Vec::new();
        let mut encoder = png::Encoder::new(&mut bytes, W as u32, H as u32);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().map_err(|e| e.to_string())?;
        writer
            .write_image_data(&self.rgb)
            .map_err(|e| e.to_string())?;
        writer.finish().map_err(|e| e.to_string())?;
        Ok(bytes)
    }

    /// `text` with its top-left corner at (x, y), 2× scale.
    pub(crate) fn text(&mut self, x: usize, y: usize, text: &str) {
        for (k, c) in text.chars().enumerate() {
            let Some(rows) = glyph(c) else { continue };
            for (r, bits) in rows.iter().enumerate() {
                for col in 0..3 {
                    if bits >> (2 - col) & 1 == 1 {
                        for (ox, oy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
                            self.set(x + k * 8 + col * 2 + ox, y + r * 2 + oy, [0, 0, 0]);
                        }
                    }
                }
            }
        }
    }
}

/// Renders `(step, loss, smoothed)` points as PNG bytes. Non-positive or non-finite losses are left out.
pub fn loss_curve_png(points: &[(u64, f64, f64)]) -> Result<Vec<u8>, String> {
    let points: Vec<_> = points
        .iter()
        .filter(|(_, l, s)| l.is_finite() && *l > 0.0 && s.is_finite() && *s > 0.0)
        .copied()
        .collect();
    if points.is_empty() {
        return Err("no finite positive losses to plot".into());
    }
    let (first, last) = (points[0].0, points[points.len() - 1].0.max(points[0].0 + 1));
    let lo = points
        .iter()
        .map(|p| p.1.min(p.2))
        .fold(f64::INFINITY, f64::min);
    let hi = points.iter().map(|p| p.1.max(p.2)).fold(0.0, f64::max);
    let (lo_dec, hi_dec) = (
        lo.log10().floor(),
        hi.log10().ceil().max(lo.log10().floor() + 1.0),
    );
    let mut c = Canvas::white();
    let (pw, ph) = ((W - LEFT - RIGHT) as f64, (H - TOP - BOTTOM) as f64);
    let to_px = |step: u64, loss: f64| -> (i64, i64) {
        let fx = (step - first) as f64 / (last - first) as f64;
        let fy = (loss.log10() - lo_dec) / (hi_dec - lo_dec);
        (
            (LEFT as f64 + fx * pw).round() as i64,
            (TOP as f64 + (1.0 - fy) * ph).round() as i64,
        )
    };
    // Decade grid lines and labels.
    let mut decade = lo_dec;
    while decade <= hi_dec {
        let (_, y) = to_px(first, 10f64.powf(decade));
        c.line((LEFT as i64, y), ((W - RIGHT) as i64, y), [225, 225, 225]);
        c.text(4, (y - 5).max(0) as usize, &format!("1e{decade}"));
        decade += 1.0;
    }
    let axis = [0, 0, 0];
    c.line(
        (LEFT as i64, TOP as i64),
        (LEFT as i64, (H - BOTTOM) as i64),
        axis,
    );
    c.line(
        (LEFT as i64, (H - BOTTOM) as i64),
        ((W - RIGHT) as i64, (H - BOTTOM) as i64),
        axis,
    );
    c.text(LEFT, H - BOTTOM + 8, &first.to_string());
    let last_label = last.to_string();
    c.text(
        W - RIGHT - 8 * last_label.len(),
        H - BOTTOM + 8,
        &last_label,
    );
    for pair in points.windows(2) {
        c.line(
            to_px(pair[0].0, pair[0].1),
            to_px(pair[1].0, pair[1].1),
            [190, 190, 190],
        );
    }
    for pair in points.windows(2) {
        c.line(
            to_px(pair[0].0, pair[0].2),
            to_px(pair[1].0, pair[1].2),
            [20, 60, 170],
        );
    }
    c.png()
}

/// Writes the loss curve of `points` to `path` atomically.
pub fn save_loss_curve(points: &[(u64, f64, f64)], path: &Path) -> Result<(), String> {
    let bytes = loss_curve_png(points)?;
    crate::files::write_atomically(path, &bytes)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}
