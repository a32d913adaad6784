//! The look shared by every figure: one colour-blind-safe palette (Okabe & Ito's, in an order that keeps the first
//! colours far apart) and the text sizes.

use plotters::style::RGBColor;

/// Series colours in order of use, with their names (a command can say which line is which in words).
pub const PALETTE: [(RGBColor, &str); 7] = [
    (RGBColor(0, 114, 178), "blue"),
    (RGBColor(213, 94, 0), "vermillion"),
    (RGBColor(0, 158, 115), "green"),
    (RGBColor(204, 121, 167), "purple"),
    (RGBColor(230, 159, 0), "orange"),
    (RGBColor(86, 180, 233), "sky blue"),
    (RGBColor(90, 90, 90), "grey"),
];

/// The name of the `index`-th series colour (the palette repeats).
pub fn palette_name(index: usize) -> &'static str {
    PALETTE[index % PALETTE.len()].1
}

pub(crate) fn color(index: usize) -> RGBColor {
    PALETTE[index % PALETTE.len()].0
}

/// Faint series (raw values under their smoothed curve) and grid lines.
pub(crate) const FAINT: RGBColor = RGBColor(185, 185, 185);
pub(crate) const GRID_BOLD: RGBColor = RGBColor(215, 215, 215);
pub(crate) const GRID_LIGHT: RGBColor = RGBColor(238, 238, 238);

pub(crate) const TITLE_SIZE: f64 = 26.0;
pub(crate) const LABEL_SIZE: f64 = 20.0;
pub(crate) const TICK_SIZE: f64 = 17.0;
pub(crate) const LEGEND_SIZE: f64 = 17.0;
