//! The figures of diffuse, one look for all of them: the training run's `loss.png` and `eval.png`, `diffuse eval`'s
//! sweep plot and the teaching reference's figures (`diffuse-figures`).
//!
//! A [`Figure`] is a stack of panels, each a [`Chart`] (series of points on linear or log axes, with titled axes, a
//! legend and optional text annotations) or an [`ImageGrid`] (images in rows and columns with row and column
//! labels). [`Figure::png`] draws it with plotters' bitmap backend into PNG bytes; [`Figure::save`] writes them
//! atomically. Text uses DejaVu Sans, compiled into the binary (`fonts/`, Bitstream Vera licence), so drawing never
//! looks for a font on the system.
//!
//! ```no_run
//! use diffuse_plot::{Axis, Chart, Figure, Series};
//! let chart = Chart::new("Loss", Axis::linear("step"), Axis::log("loss"))
//!     .with(Series::line("per step", vec![(0.0, 0.9), (1.0, 0.5), (2.0, 0.3)]));
//! Figure::single(chart).save("loss.png".as_ref())?;
//! # Ok::<(), diffuse_plot::PlotError>(())
//! ```

mod chart;
mod dashed_mark;
mod error;
mod font;
mod image_grid;
mod output;
mod style;
mod sweep;

pub use chart::{tick_label, Annotation, Axis, Chart, Legend, Scale, Series, SeriesStyle};
pub use error::PlotError;
pub use image_grid::{ImageGrid, RgbImage};
pub use output::{check_png, PngSummary};
pub use style::{palette_name, PALETTE};
pub use sweep::{fd_sweep_chart, Curve};

use plotters::prelude::*;
use std::path::Path;

/// One panel of a figure: a chart, an image grid, or charts side by side.
pub enum Panel {
    Chart(Chart),
    Images(ImageGrid),
    Row(Vec<Chart>),
}

/// Panels stacked from top to bottom, each with a share of the height.
pub struct Figure {
    pub width: u32,
    pub height: u32,
    /// Each panel with its relative height.
    pub panels: Vec<(Panel, f64)>,
}

/// The size of a one-chart figure: wide enough for a legend beside four decades of ticks, readable when a page
/// shows it at half size.
pub const CHART_SIZE: (u32, u32) = (900, 560);

impl Figure {
    /// One chart at [`CHART_SIZE`].
    pub fn single(chart: Chart) -> Figure {
        Figure {
            width: CHART_SIZE.0,
            height: CHART_SIZE.1,
            panels: vec![(Panel::Chart(chart), 1.0)],
        }
    }

    /// The figure as 8-bit RGB PNG bytes.
    pub fn png(&self) -> Result<Vec<u8>, PlotError> {
        if self.width == 0 || self.height == 0 || self.panels.is_empty() {
            return Err(PlotError::new(format!(
                "a figure needs a size and at least one panel (got {}×{} with {} panels)",
                self.width,
                self.height,
                self.panels.len()
            )));
        }
        if let Some((_, share)) = self
            .panels
            .iter()
            .find(|(_, s)| !(*s > 0.0 && s.is_finite()))
        {
            return Err(PlotError::new(format!(
                "a panel's share of the height must be positive, not {share}"
            )));
        }
        font::register()?;
        let mut rgb = vec![255u8; self.width as usize * self.height as usize * 3];
        {
            let root =
                BitMapBackend::with_buffer(&mut rgb, (self.width, self.height)).into_drawing_area();
            root.fill(&WHITE).map_err(PlotError::drawing)?;
            let total: f64 = self.panels.iter().map(|(_, s)| s).sum();
            let mut rest = root;
            let mut left = total;
            for (k, (panel, share)) in self.panels.iter().enumerate() {
                let (area, below) = if k + 1 == self.panels.len() {
                    (rest.clone(), None)
                } else {
                    let height = rest.dim_in_pixel().1 as f64 * share / left;
                    let (a, b) = rest.split_vertically(height.round() as u32);
                    (a, Some(b))
                };
                match panel {
                    Panel::Chart(chart) => chart.draw(&area)?,
                    Panel::Images(grid) => grid.draw(&area)?,
                    Panel::Row(charts) => {
                        for (chart, cell) in charts
                            .iter()
                            .zip(area.split_evenly((1, charts.len().max(1))))
                        {
                            chart.draw(&cell)?;
                        }
                    }
                }
                left -= share;
                if let Some(below) = below {
                    rest = below;
                }
            }
            rest.present().map_err(PlotError::drawing)?;
        }
        output::encode_png(&rgb, self.width, self.height)
    }

    /// Draws the figure and writes it to `path` atomically (a temporary file beside it, renamed into place).
    pub fn save(&self, path: &Path) -> Result<(), PlotError> {
        output::write_atomically(path, &self.png()?)
    }
}
