//! A chart: series of (x, y) points on linear or logarithmic axes, with a title, titled axes, tick labels, a legend
//! of the labelled series and text annotations.
//!
//! Ranges come from the data unless an axis fixes them, padded by 5 % of the span on each side (of the logarithm's
//! span on a log axis). A log axis is drawn as a linear axis over log₁₀ of the values, with its ticks chosen here:
//! every 1, 2 and 5 × 10ᵏ inside the range (only the powers of ten when those are too many, every 1…9 × 10ᵏ when a
//! narrow range would leave fewer than three), labelled with the values themselves. Points that cannot be drawn (not
//! finite, or ≤ 0 on a log axis) are left out; a chart with no drawable point at all is an error.

use crate::dashed_mark::DashedMark;
use crate::font::FAMILY;
use crate::style::{
    self, FAINT, GRID_BOLD, GRID_LIGHT, LABEL_SIZE, LEGEND_SIZE, TICK_SIZE, TITLE_SIZE,
};
use crate::PlotError;
use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint, Ranged};
use plotters::coord::Shift;
use plotters::prelude::*;

/// How an axis maps values to pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scale {
    Linear,
    Log,
}

/// One axis: its title, its scale and, optionally, a fixed range.
#[derive(Clone, Debug)]
pub struct Axis {
    pub label: String,
    pub scale: Scale,
    pub range: Option<(f64, f64)>,
}

impl Axis {
    pub fn linear(label: impl Into<String>) -> Axis {
        Axis {
            label: label.into(),
            scale: Scale::Linear,
            range: None,
        }
    }

    pub fn log(label: impl Into<String>) -> Axis {
        Axis {
            label: label.into(),
            scale: Scale::Log,
            range: None,
        }
    }

    /// Fixes the range instead of taking it from the data.
    pub fn range(mut self, lo: f64, hi: f64) -> Axis {
        self.range = Some((lo, hi));
        self
    }

    fn drawable(&self, v: f64) -> bool {
        v.is_finite() && (self.scale == Scale::Linear || v > 0.0)
    }

    /// The range to draw: the fixed one, or the data's, padded as the module says.
    fn span(&self, values: impl Iterator<Item = f64>) -> Result<(f64, f64), PlotError> {
        if let Some((lo, hi)) = self.range {
            if !(lo < hi && self.drawable(lo) && self.drawable(hi)) {
                return Err(PlotError::new(format!(
                    "axis \"{}\": the range {lo}..{hi} is empty or not drawable on a {:?} scale",
                    self.label, self.scale
                )));
            }
            return Ok((lo, hi));
        }
        let (lo, hi) = values
            .map(|v| self.coordinate(v))
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
                (lo.min(v), hi.max(v))
            });
        let (lo, hi) = if lo < hi {
            let pad = 0.05 * (hi - lo);
            (lo - pad, hi + pad)
        } else if self.scale == Scale::Log {
            (lo - 0.5, hi + 0.5)
        } else {
            (lo - 1.0 - 0.1 * lo.abs(), hi + 1.0 + 0.1 * hi.abs())
        };
        Ok(match self.scale {
            Scale::Linear => (lo, hi),
            Scale::Log => (10f64.powf(lo), 10f64.powf(hi)),
        })
    }

    /// Where `v` sits along the axis: itself, or its logarithm on a log axis.
    fn coordinate(&self, v: f64) -> f64 {
        match self.scale {
            Scale::Linear => v,
            Scale::Log => v.log10(),
        }
    }

    /// The value at coordinate `c`.
    fn value(&self, c: f64) -> f64 {
        match self.scale {
            Scale::Linear => c,
            Scale::Log => 10f64.powf(c),
        }
    }

    /// The plotters coordinate of the range `lo..hi` (values), with the tick positions (coordinates) of this axis:
    /// labelled ones and the light grid lines between them.
    fn ranged(&self, (lo, hi): (f64, f64)) -> TickedRange {
        let (a, b) = (self.coordinate(lo), self.coordinate(hi));
        let (bold, light) = match self.scale {
            Scale::Linear => linear_ticks(a, b),
            Scale::Log => log_ticks(lo, hi),
        };
        TickedRange {
            lo: a,
            hi: b,
            bold: bold.into_iter().map(|v| self.coordinate(v)).collect(),
            light: light.into_iter().map(|v| self.coordinate(v)).collect(),
        }
    }
}

/// A linear plotters coordinate over `lo..hi` with the tick positions chosen here (plotters' own choice cannot be
/// told where a log axis's ticks go).
struct TickedRange {
    lo: f64,
    hi: f64,
    bold: Vec<f64>,
    light: Vec<f64>,
}

impl Ranged for TickedRange {
    type ValueType = f64;
    type FormatOption = DefaultFormatting;

    fn map(&self, value: &f64, (from, to): (i32, i32)) -> i32 {
        let fraction = (value - self.lo) / (self.hi - self.lo);
        from + (fraction * (to - from) as f64).round() as i32
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            self.light.clone()
        } else {
            self.bold.clone()
        }
    }

    fn range(&self) -> std::ops::Range<f64> {
        self.lo..self.hi
    }
}

/// Ticks of a linear axis over `lo..hi`: multiples of a step of 1, 2 or 5 × 10ᵏ giving four to ten labels, and light
/// lines at a fifth of it.
fn linear_ticks(lo: f64, hi: f64) -> (Vec<f64>, Vec<f64>) {
    let rough = (hi - lo) / 6.0;
    let decade = 10f64.powf(rough.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * decade)
        .find(|s| (hi - lo) / s <= 9.0)
        .unwrap_or(10.0 * decade);
    let multiples = |step: f64| -> Vec<f64> {
        let first = (lo / step).ceil() as i64;
        let last = (hi / step).floor() as i64;
        (first..=last).map(|k| k as f64 * step).collect()
    };
    (multiples(step), multiples(step / 5.0))
}

/// Ticks of a log axis over the values `lo..hi` (> 0), as the module says.
fn log_ticks(lo: f64, hi: f64) -> (Vec<f64>, Vec<f64>) {
    let (first, last) = (lo.log10().floor() as i32, hi.log10().ceil() as i32);
    let with = |mantissas: &[f64]| -> Vec<f64> {
        (first..=last)
            .flat_map(|k| mantissas.iter().map(move |m| m * 10f64.powi(k)))
            // A relative margin, so that a range ending exactly on a tick keeps it despite rounding in log10/powf.
            .filter(|&v| v >= lo * (1.0 - 1e-9) && v <= hi * (1.0 + 1e-9))
            .collect()
    };
    let every: Vec<f64> = with(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]);
    let one_two_five = with(&[1.0, 2.0, 5.0]);
    let bold = if one_two_five.len() > 10 {
        with(&[1.0])
    } else if one_two_five.len() < 3 {
        every.clone()
    } else {
        one_two_five
    };
    (bold, every)
}

/// How a series is drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeriesStyle {
    /// A solid line in the series' colour.
    Line,
    /// A thin light-grey line, for raw values under their smoothed curve.
    Faint,
    /// A dashed line (limits, references).
    Dashed,
    /// Dots only.
    Markers,
    /// Small light-grey dots, for a cloud of data under the series that matter.
    Dots,
    /// A line with a dot at every point.
    LineMarkers,
}

/// One series: points in drawing order, a legend label (none: not in the legend) and a palette colour.
#[derive(Clone, Debug)]
pub struct Series {
    pub label: Option<String>,
    pub points: Vec<(f64, f64)>,
    pub style: SeriesStyle,
    /// Index into [`crate::PALETTE`]; `None` takes the next colour (the k-th series that is not faint gets the
    /// k-th colour).
    pub color: Option<usize>,
}

impl Series {
    fn new(label: &str, points: Vec<(f64, f64)>, style: SeriesStyle) -> Series {
        Series {
            label: (!label.is_empty()).then(|| label.to_string()),
            points,
            style,
            color: None,
        }
    }

    /// A solid line; an empty label keeps it out of the legend (as for every constructor).
    pub fn line(label: &str, points: Vec<(f64, f64)>) -> Series {
        Series::new(label, points, SeriesStyle::Line)
    }

    pub fn faint(label: &str, points: Vec<(f64, f64)>) -> Series {
        Series::new(label, points, SeriesStyle::Faint)
    }

    pub fn dashed(label: &str, points: Vec<(f64, f64)>) -> Series {
        Series::new(label, points, SeriesStyle::Dashed)
    }

    pub fn markers(label: &str, points: Vec<(f64, f64)>) -> Series {
        Series::new(label, points, SeriesStyle::Markers)
    }

    pub fn dots(label: &str, points: Vec<(f64, f64)>) -> Series {
        Series::new(label, points, SeriesStyle::Dots)
    }

    pub fn line_markers(label: &str, points: Vec<(f64, f64)>) -> Series {
        Series::new(label, points, SeriesStyle::LineMarkers)
    }

    /// Draws the series in palette colour `index`.
    pub fn color(mut self, index: usize) -> Series {
        self.color = Some(index);
        self
    }
}

/// Text placed next to the data point `at` (a little to its right and above).
#[derive(Clone, Debug)]
pub struct Annotation {
    pub at: (f64, f64),
    pub text: String,
}

/// Where the legend goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Legend {
    UpperRight,
    UpperLeft,
    LowerRight,
    LowerLeft,
}

/// A titled chart of series on two axes.
#[derive(Clone, Debug)]
pub struct Chart {
    pub title: String,
    pub x: Axis,
    pub y: Axis,
    pub series: Vec<Series>,
    pub annotations: Vec<Annotation>,
    pub legend: Legend,
}

impl Chart {
    pub fn new(title: impl Into<String>, x: Axis, y: Axis) -> Chart {
        Chart {
            title: title.into(),
            x,
            y,
            series: Vec::new(),
            annotations: Vec::new(),
            legend: Legend::UpperRight,
        }
    }

    /// Adds a series.
    pub fn with(mut self, series: Series) -> Chart {
        self.series.push(series);
        self
    }

    /// Adds a text annotation.
    pub fn annotate(mut self, at: (f64, f64), text: impl Into<String>) -> Chart {
        self.annotations.push(Annotation {
            at,
            text: text.into(),
        });
        self
    }

    /// Moves the legend.
    pub fn legend(mut self, legend: Legend) -> Chart {
        self.legend = legend;
        self
    }

    /// The points of `series` that can be drawn on these axes.
    fn drawable<'a>(&'a self, series: &'a Series) -> impl Iterator<Item = (f64, f64)> + 'a {
        series
            .points
            .iter()
            .copied()
            .filter(|&(x, y)| self.x.drawable(x) && self.y.drawable(y))
    }

    pub(crate) fn draw(
        &self,
        area: &DrawingArea<BitMapBackend<'_>, Shift>,
    ) -> Result<(), PlotError> {
        let all = || self.series.iter().flat_map(|s| self.drawable(s));
        if all().next().is_none() {
            return Err(PlotError::new(format!(
                "chart \"{}\": no finite point to draw{}",
                self.title,
                if self.y.scale == Scale::Log || self.x.scale == Scale::Log {
                    " (a log axis draws positive values only)"
                } else {
                    ""
                }
            )));
        }
        let (x0, x1) = self.x.span(all().map(|p| p.0))?;
        let (y0, y1) = self.y.span(all().map(|p| p.1))?;
        let (x, y) = (self.x.ranged((x0, x1)), self.y.ranged((y0, y1)));
        let (xs, ys) = ((x.lo, x.hi), (y.lo, y.hi));
        let mut chart = ChartBuilder::on(area)
            .caption(&self.title, (FAMILY, TITLE_SIZE))
            .margin(14)
            .x_label_area_size(58)
            .y_label_area_size(86)
            .build_cartesian_2d(x, y)
            .map_err(PlotError::drawing)?;
        let x_tick = |c: &f64| tick_label(self.x.value(*c));
        let y_tick = |c: &f64| tick_label(self.y.value(*c));
        chart
            .configure_mesh()
            .x_desc(&self.x.label)
            .y_desc(&self.y.label)
            .x_labels(8)
            .y_labels(7)
            .x_label_formatter(&x_tick)
            .y_label_formatter(&y_tick)
            .label_style((FAMILY, TICK_SIZE))
            .axis_desc_style((FAMILY, LABEL_SIZE))
            .bold_line_style(GRID_BOLD)
            .light_line_style(GRID_LIGHT)
            .draw()
            .map_err(PlotError::drawing)?;

        let mut labelled = false;
        // Faint series are grey and take no palette colour: the k-th coloured series gets colour k.
        let mut next_color = 0;
        for series in &self.series {
            let color = style::color(series.color.unwrap_or(next_color));
            if !matches!(series.style, SeriesStyle::Faint | SeriesStyle::Dots)
                && series.color.is_none()
            {
                next_color += 1;
            }
            let points: Vec<(f64, f64)> = self
                .drawable(series)
                .map(|(x, y)| (self.x.coordinate(x), self.y.coordinate(y)))
                .collect();
            let (line, width) = match series.style {
                SeriesStyle::Faint | SeriesStyle::Dots => (FAINT, 1),
                _ => (color, 2),
            };
            let drawn = match series.style {
                SeriesStyle::Line | SeriesStyle::Faint | SeriesStyle::LineMarkers => chart
                    .draw_series(
                        clip(&points, &xs, &ys)
                            .into_iter()
                            .map(|piece| PathElement::new(piece, line.stroke_width(width))),
                    )
                    .map_err(PlotError::drawing)?,
                SeriesStyle::Dashed => {
                    let mut drawn = None;
                    for piece in clip(&points, &xs, &ys) {
                        drawn = Some(
                            chart
                                .draw_series(DashedLineSeries::new(
                                    piece,
                                    10,
                                    6,
                                    line.stroke_width(width),
                                ))
                                .map_err(PlotError::drawing)?,
                        );
                    }
                    match drawn {
                        Some(drawn) => drawn,
                        None => chart
                            .draw_series(std::iter::empty::<Circle<(f64, f64), i32>>())
                            .map_err(PlotError::drawing)?,
                    }
                }
                SeriesStyle::Markers => chart
                    .draw_series(
                        inside(&points, &xs, &ys).map(|p| Circle::new(p, 5, color.filled())),
                    )
                    .map_err(PlotError::drawing)?,
                SeriesStyle::Dots => chart
                    .draw_series(
                        inside(&points, &xs, &ys).map(|p| Circle::new(p, 2, FAINT.filled())),
                    )
                    .map_err(PlotError::drawing)?,
            };
            if let Some(label) = &series.label {
                labelled = true;
                let style = series.style;
                drawn
                    .label(label)
                    .legend(move |(x, y)| legend_mark(style, line, width, x, y));
            }
            if series.style == SeriesStyle::LineMarkers {
                chart
                    .draw_series(
                        inside(&points, &xs, &ys).map(|p| Circle::new(p, 4, color.filled())),
                    )
                    .map_err(PlotError::drawing)?;
            }
        }
        chart
            .draw_series(
                self.annotations
                    .iter()
                    .filter(|a| self.x.drawable(a.at.0) && self.y.drawable(a.at.1))
                    .map(|a| {
                        EmptyElement::at((self.x.coordinate(a.at.0), self.y.coordinate(a.at.1)))
                            + Text::new(a.text.clone(), (7, -22), (FAMILY, LEGEND_SIZE).into_font())
                    }),
            )
            .map_err(PlotError::drawing)?;
        if labelled {
            chart
                .configure_series_labels()
                .position(match self.legend {
                    Legend::UpperRight => SeriesLabelPosition::UpperRight,
                    Legend::UpperLeft => SeriesLabelPosition::UpperLeft,
                    Legend::LowerRight => SeriesLabelPosition::LowerRight,
                    Legend::LowerLeft => SeriesLabelPosition::LowerLeft,
                })
                .label_font((FAMILY, LEGEND_SIZE))
                .background_style(WHITE.mix(0.85))
                .border_style(GRID_BOLD)
                .margin(12)
                .draw()
                .map_err(PlotError::drawing)?;
        }
        Ok(())
    }
}

/// The points (coordinates) inside the ranges `x` and `y`: plotters draws outside its plotting area otherwise.
fn inside<'p>(
    points: &'p [(f64, f64)],
    x: &'p (f64, f64),
    y: &'p (f64, f64),
) -> impl Iterator<Item = (f64, f64)> + 'p {
    points
        .iter()
        .copied()
        .filter(|&(a, b)| a >= x.0 && a <= x.1 && b >= y.0 && b <= y.1)
}

/// The polyline `points` cut to the rectangle `x × y` (Liang–Barsky on each segment), as the pieces that lie inside.
fn clip(points: &[(f64, f64)], x: &(f64, f64), y: &(f64, f64)) -> Vec<Vec<(f64, f64)>> {
    let mut pieces: Vec<Vec<(f64, f64)>> = Vec::new();
    let mut open = false;
    for pair in points.windows(2) {
        let ((x0, y0), (x1, y1)) = (pair[0], pair[1]);
        let (dx, dy) = (x1 - x0, y1 - y0);
        let (mut enter, mut leave) = (0.0f64, 1.0f64);
        let mut visible = true;
        for (p, q) in [
            (-dx, x0 - x.0),
            (dx, x.1 - x0),
            (-dy, y0 - y.0),
            (dy, y.1 - y0),
        ] {
            if p == 0.0 {
                visible &= q >= 0.0;
            } else if p < 0.0 {
                enter = enter.max(q / p);
            } else {
                leave = leave.min(q / p);
            }
        }
        if !visible || enter > leave {
            open = false;
            continue;
        }
        let at = |s: f64| (x0 + s * dx, y0 + s * dy);
        if !(open && enter == 0.0) {
            pieces.push(vec![at(enter)]);
        }
        if let Some(piece) = pieces.last_mut() {
            piece.push(at(leave));
        }
        open = leave == 1.0;
    }
    pieces
}

/// Length in pixels of a line's sample in the legend.
const LEGEND_MARK_LENGTH: i32 = 20;

/// The legend's sample of a series: a short line, a dashed line (three dashes) or a dot.
fn legend_mark<'b>(
    style: SeriesStyle,
    color: RGBColor,
    width: u32,
    x: i32,
    y: i32,
) -> DynElement<'static, BitMapBackend<'b>, (i32, i32)> {
    match style {
        SeriesStyle::Markers => Circle::new((x + 10, y), 5, color.filled()).into_dyn(),
        SeriesStyle::Dots => Circle::new((x + 10, y), 3, FAINT.filled()).into_dyn(),
        SeriesStyle::Dashed => {
            DashedMark::new((x, y), LEGEND_MARK_LENGTH, 6, 4, color.stroke_width(width)).into_dyn()
        }
        _ => PathElement::new(
            vec![(x, y), (x + LEGEND_MARK_LENGTH, y)],
            color.stroke_width(width),
        )
        .into_dyn(),
    }
}

/// A tick label with at most four significant digits: plain from 10⁻⁴ to below 10⁵, else in exponent form (`1e-5`,
/// `2.5e6`).
pub fn tick_label(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 {
        return "0".into();
    }
    if !(1e-4..1e5).contains(&a) {
        let text = format!("{v:.3e}");
        let (mantissa, exponent) = text.split_once('e').unwrap_or((&text, "0"));
        return format!("{}e{exponent}", trim_zeros(mantissa));
    }
    let decimals = (3 - a.log10().floor() as i32).clamp(0, 7) as usize;
    trim_zeros(&format!("{v:.decimals$}")).to_string()
}

fn trim_zeros(text: &str) -> &str {
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.')
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::{legend_mark, tick_label, SeriesStyle, LEGEND_MARK_LENGTH};
    use plotters::prelude::*;

    /// The pixels of row `y` from `x` on, `LEGEND_MARK_LENGTH` of them, after drawing `style`'s legend mark there in
    /// black on white: true where ink is.
    fn legend_row(style: SeriesStyle) -> Vec<bool> {
        let (w, h) = (40u32, 9u32);
        let mut buffer = vec![255u8; (w * h * 3) as usize];
        {
            let area = BitMapBackend::with_buffer(&mut buffer, (w, h)).into_drawing_area();
            area.draw(&legend_mark(style, BLACK, 1, 5, 4)).unwrap();
            area.present().unwrap();
        }
        (5..5 + LEGEND_MARK_LENGTH as u32)
            .map(|x| buffer[((4 * w + x) * 3) as usize] < 128)
            .collect()
    }

    #[test]
    fn a_dashed_series_has_a_dashed_legend_mark_and_a_solid_one_a_solid_mark() {
        let dashed = legend_row(SeriesStyle::Dashed);
        let gaps = dashed.windows(2).filter(|w| w[0] && !w[1]).count();
        assert!(
            gaps >= 2,
            "three dashes with two gaps between them: {dashed:?}"
        );
        assert!(dashed[0], "the mark starts with a dash");
        assert!(legend_row(SeriesStyle::Line).iter().all(|&ink| ink));
    }

    #[test]
    fn tick_labels_are_short_and_exact_to_four_digits() {
        let cases = [
            (0.0, "0"),
            (0.001, "0.001"),
            (0.04536, "0.04536"),
            (0.2, "0.2"),
            (1.0, "1"),
            (12.5, "12.5"),
            (1234.0, "1234"),
            (-0.5, "-0.5"),
            (1e-4, "0.0001"),
            (2e-5, "2e-5"),
            (2.5e6, "2.5e6"),
            (1e5, "1e5"),
        ];
        for (v, want) in cases {
            assert_eq!(tick_label(v), want, "{v}");
        }
    }
}
