//! FD against sampling steps, one line per sampler: the chart `diffuse eval --sweep-steps` draws and
//! `diffuse-figures sweep` redraws from the sweep's JSON.

use crate::{Axis, Chart, Series, PALETTE};

/// One sampler's sweep: its name and (steps, FD) points.
pub struct Curve {
    pub name: String,
    pub points: Vec<(usize, f64)>,
}

/// FD against sampling steps on a log axis, one line per curve, named in the legend. Past the palette's seven
/// colours the lines turn dashed, so twelve samplers stay apart.
pub fn fd_sweep_chart(curves: &[Curve]) -> Chart {
    let mut chart = Chart::new(
        "Fréchet distance against sampling steps",
        Axis::log("sampling steps"),
        Axis::linear("FD (classifier features)"),
    );
    for (i, curve) in curves.iter().enumerate() {
        let points = curve.points.iter().map(|&(s, fd)| (s as f64, fd)).collect();
        let series = if i < PALETTE.len() {
            Series::line_markers(&curve.name, points)
        } else {
            Series::dashed(&curve.name, points)
        };
        chart = chart.with(series.color(i));
    }
    chart
}
